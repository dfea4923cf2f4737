#include "common/table_reader.h"

#include <algorithm>
#include <set>

namespace bitfleet::common {
namespace {

Status bad_record(const std::string& name, int64_t line, const std::string& what) {
  return invalid_argument(name + ":" + std::to_string(line) + ": " + what);
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Splits content into lines (without "\n" or a trailing "\r"), numbering from 1.
template <typename F>
void for_each_line(std::string_view content, F&& f) {
  int64_t number = 0;
  size_t start = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    if (end == std::string_view::npos) end = content.size();
    std::string_view line = content.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!f(++number, line)) return;
    start = end + 1;
  }
}

Status check_header(const std::vector<std::string>& columns, const std::string& name) {
  std::set<std::string> seen;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i].empty()) return bad_record(name, 1, "header column " + std::to_string(i) + " has no name");
    if (!seen.insert(columns[i]).second) return bad_record(name, 1, "header names column \"" + columns[i] + "\" twice");
  }
  return Status::ok();
}

Result<Table> read_tsv(std::string_view content, const std::string& name) {
  Table t{name, TableFormat::kTsv, {}, {}};
  Status error;
  bool header_done = false;
  for_each_line(content, [&](int64_t number, std::string_view line) {
    if (line.empty()) return true;
    std::vector<std::string> fields;
    size_t start = 0;
    while (true) {
      size_t tab = line.find('\t', start);
      fields.emplace_back(line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start));
      if (tab == std::string_view::npos) break;
      start = tab + 1;
    }
    if (!header_done) {
      t.columns = std::move(fields);
      header_done = true;
      error = check_header(t.columns, name);
      return error.is_ok();
    }
    if (fields.size() != t.columns.size()) {
      error = bad_record(name, number, "expected " + std::to_string(t.columns.size()) + " tab-separated fields (" +
                                           "as the header has), got " + std::to_string(fields.size()));
      return false;
    }
    TableRecord r{number, nlohmann::json::object()};
    for (size_t i = 0; i < fields.size(); ++i) r.values[t.columns[i]] = std::move(fields[i]);
    t.records.push_back(std::move(r));
    return true;
  });
  BITFLEET_RETURN_IF_ERROR(error);
  if (!header_done) return invalid_argument(name + ": empty file (a TSV needs a header line)");
  return t;
}

Result<Table> read_csv(std::string_view content, const std::string& name) {
  Table t{name, TableFormat::kCsv, {}, {}};
  int64_t line = 1;
  size_t i = 0;
  bool header_done = false;
  while (i < content.size()) {
    // One record: fields separated by ',', ended by a newline outside quotes.
    const int64_t record_line = line;
    std::vector<std::string> fields;
    std::string field;
    bool quoted_field = false;
    bool at_field_start = true;
    bool ended = false;
    while (i < content.size() && !ended) {
      char c = content[i];
      if (at_field_start && c == '"') {
        quoted_field = true;
        at_field_start = false;
        ++i;
        while (true) {
          if (i >= content.size()) {
            return bad_record(name, record_line, "a quoted field is never closed");
          }
          if (content[i] == '"') {
            if (i + 1 < content.size() && content[i + 1] == '"') {
              field.push_back('"');
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (content[i] == '\n') ++line;
          field.push_back(content[i++]);
        }
        if (i < content.size() && content[i] != ',' && content[i] != '\n' && content[i] != '\r') {
          return bad_record(name, line, "a quoted field is followed by '" + std::string(1, content[i]) +
                                            "' instead of ',' or the end of the line");
        }
        continue;
      }
      at_field_start = false;
      if (c == ',') {
        fields.push_back(std::move(field));
        field.clear();
        quoted_field = false;
        at_field_start = true;
        ++i;
      } else if (c == '\n' || c == '\r') {
        if (c == '\r' && i + 1 < content.size() && content[i + 1] == '\n') ++i;
        ++i;
        ++line;
        ended = true;
      } else if (c == '"' && !quoted_field) {
        return bad_record(name, line, "a quote inside an unquoted field (RFC 4180 needs the field quoted)");
      } else {
        field.push_back(c);
        ++i;
      }
    }
    fields.push_back(std::move(field));
    if (fields.size() == 1 && fields[0].empty() && !quoted_field) continue;  // blank line
    if (!header_done) {
      t.columns = std::move(fields);
      header_done = true;
      BITFLEET_RETURN_IF_ERROR(check_header(t.columns, name));
      continue;
    }
    if (fields.size() != t.columns.size()) {
      return bad_record(name, record_line, "expected " + std::to_string(t.columns.size()) +
                                               " comma-separated fields (as the header has), got " +
                                               std::to_string(fields.size()));
    }
    TableRecord r{record_line, nlohmann::json::object()};
    for (size_t k = 0; k < fields.size(); ++k) r.values[t.columns[k]] = std::move(fields[k]);
    t.records.push_back(std::move(r));
  }
  if (!header_done) return invalid_argument(name + ": empty file (a CSV needs a header line)");
  return t;
}

Result<Table> read_jsonl(std::string_view content, const std::string& name) {
  Table t{name, TableFormat::kJsonl, {}, {}};
  std::set<std::string> known;
  Status error;
  for_each_line(content, [&](int64_t number, std::string_view line) {
    if (line.find_first_not_of(" \t") == std::string_view::npos) return true;
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(line.begin(), line.end());
    } catch (const nlohmann::json::parse_error& e) {
      error = bad_record(name, number, "not valid JSON (byte " + std::to_string(e.byte) + " of the line)");
      return false;
    }
    if (!value.is_object()) {
      error = bad_record(name, number, "a JSONL record must be a JSON object");
      return false;
    }
    for (const auto& [key, v] : value.items()) {
      if (known.insert(key).second) t.columns.push_back(key);
    }
    t.records.push_back({number, std::move(value)});
    return true;
  });
  BITFLEET_RETURN_IF_ERROR(error);
  return t;
}

// The byte offset of the first malformed UTF-8 sequence, or npos.
size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    int extra = (b & 0xE0) == 0xC0 ? 1 : (b & 0xF0) == 0xE0 ? 2 : (b & 0xF8) == 0xF0 ? 3 : -1;
    if (extra < 0 || i + extra >= s.size()) return i;  // not a lead byte, or cut short
    uint32_t c = b & (0x3F >> extra);
    for (int k = 1; k <= extra; ++k) {
      const auto n = static_cast<unsigned char>(s[i + k]);
      if ((n & 0xC0) != 0x80) return i;
      c = (c << 6) | (n & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (c < kMin[extra] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return i;
    i += extra + 1;
  }
  return std::string_view::npos;
}

}  // namespace

Result<TableFormat> table_format_from_name(std::string_view filename) {
  if (ends_with(filename, ".tsv")) return TableFormat::kTsv;
  if (ends_with(filename, ".csv")) return TableFormat::kCsv;
  if (ends_with(filename, ".jsonl") || ends_with(filename, ".json") || ends_with(filename, ".ndjson")) {
    return TableFormat::kJsonl;
  }
  return invalid_argument("file name \"" + std::string(filename) +
                          "\" must end in .tsv, .csv or .jsonl (the format is read from it)");
}

std::string_view table_format_name(TableFormat format) {
  switch (format) {
    case TableFormat::kTsv: return "tsv";
    case TableFormat::kCsv: return "csv";
    case TableFormat::kJsonl: return "jsonl";
  }
  return "tsv";
}

Result<Table> read_table(std::string_view content, TableFormat format, const std::string& name) {
  if (content.size() >= 3 && content.substr(0, 3) == "\xEF\xBB\xBF") content.remove_prefix(3);  // a BOM
  if (size_t bad = first_invalid_utf8(content); bad != std::string_view::npos) {
    const int64_t line = 1 + std::count(content.begin(), content.begin() + static_cast<std::ptrdiff_t>(bad), '\n');
    return invalid_argument(name + ":" + std::to_string(line) + ": not valid UTF-8 (byte " + std::to_string(bad) + ")");
  }
  switch (format) {
    case TableFormat::kTsv: return read_tsv(content, name);
    case TableFormat::kCsv: return read_csv(content, name);
    case TableFormat::kJsonl: return read_jsonl(content, name);
  }
  return invalid_argument(name + ": unknown format");
}

Result<std::string> resolve_column(const Table& table, const std::string& reference, const std::string& field) {
  if (std::find(table.columns.begin(), table.columns.end(), reference) != table.columns.end()) return reference;
  bool digits = !reference.empty() && reference.size() < 6 &&
                std::all_of(reference.begin(), reference.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits && table.format != TableFormat::kJsonl) {
    size_t index = std::stoul(reference);
    if (index < table.columns.size()) return table.columns[index];
  }
  std::string names;
  for (const auto& c : table.columns) names += (names.empty() ? "" : ", ") + c;
  return invalid_argument(field + ": column \"" + reference + "\" is not in " + table.name + " (columns: " + names + ")",
                          field);
}

}  // namespace bitfleet::common
