#include "common/table_reader.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <functional>
#include <set>

#include "common/json_fields.h"

namespace bitfleet::common {
namespace {

Status bad_record(const std::string& name, int64_t line, const std::string& what) {
  return invalid_argument(name + ":" + std::to_string(line) + ": " + what);
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Lines of a dataset, numbered from 1, without "\n" or a trailing "\r"; a leading UTF-8 BOM is
// dropped and every line is checked to be UTF-8 (no sequence spans a '\n', so per line is exact).
class LineSource {
 public:
  explicit LineSource(std::string name) : name_(std::move(name)) {}
  virtual ~LineSource() = default;
  // The next line, or false at the end or on an error (then status() says which).
  bool next(std::string_view& line) {
    if (!status_.is_ok() || !raw_next(line)) return false;
    ++number_;
    const uint64_t line_offset = offset_;
    offset_ += line.size() + 1;
    if (line.size() > kMaxRecordBytes) {
      status_ = bad_record(name_, number_, "a line longer than " + std::to_string(kMaxRecordBytes) + " bytes");
      return false;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (number_ == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
    if (size_t bad = first_invalid_utf8(line); bad != std::string_view::npos) {
      status_ = bad_record(name_, number_, "not valid UTF-8 (byte " + std::to_string(line_offset + bad) + ")");
      return false;
    }
    return true;
  }
  int64_t number() const { return number_; }
  const Status& status() const { return status_; }

 protected:
  // The next raw line without its '\n'; false at the end or after setting status_.
  virtual bool raw_next(std::string_view& line) = 0;
  std::string name_;
  Status status_;

 private:
  int64_t number_ = 0;
  uint64_t offset_ = 0;
};

class StringLines : public LineSource {
 public:
  StringLines(std::string_view content, std::string name) : LineSource(std::move(name)), content_(content) {}

 private:
  bool raw_next(std::string_view& line) override {
    if (start_ >= content_.size()) return false;
    size_t end = content_.find('\n', start_);
    if (end == std::string_view::npos) end = content_.size();
    line = content_.substr(start_, end - start_);
    start_ = end + 1;
    return true;
  }
  std::string_view content_;
  size_t start_ = 0;
};

// Reads a file in 1 MiB chunks, buffering no more than one line past kMaxRecordBytes (which
// next() then refuses).
class FileLines : public LineSource {
 public:
  FileLines(const std::string& path, std::string name) : LineSource(std::move(name)), in_(path, std::ios::binary) {
    if (!in_) status_ = io_error("cannot open " + path);
  }

 private:
  bool raw_next(std::string_view& line) override {
    while (true) {
      size_t end = buffer_.find('\n', start_);
      if (end != std::string::npos) {
        line = std::string_view(buffer_).substr(start_, end - start_);
        start_ = end + 1;
        return true;
      }
      if (in_.eof() || buffer_.size() - start_ > kMaxRecordBytes) {
        if (start_ >= buffer_.size()) return false;
        line = std::string_view(buffer_).substr(start_);
        start_ = buffer_.size();
        return true;
      }
      buffer_.erase(0, start_);
      start_ = 0;
      const size_t kept = buffer_.size();
      buffer_.resize(kept + kChunk);
      in_.read(buffer_.data() + kept, static_cast<std::streamsize>(kChunk));
      buffer_.resize(kept + static_cast<size_t>(in_.gcount()));
      if (in_.bad()) {
        status_ = io_error(name_ + ": read error");
        return false;
      }
    }
  }
  static constexpr size_t kChunk = 1u << 20;
  std::ifstream in_;
  std::string buffer_;
  size_t start_ = 0;
};

using RecordSink = std::function<void(TableRecord&&)>;

Status check_header(const std::vector<std::string>& columns, const std::string& name) {
  if (columns.size() > kMaxColumns) {
    return bad_record(name, 1, "the header has " + std::to_string(columns.size()) + " columns; at most " +
                                   std::to_string(kMaxColumns) + " are allowed");
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i].empty()) return bad_record(name, 1, "header column " + std::to_string(i) + " has no name");
    if (!seen.insert(columns[i]).second) return bad_record(name, 1, "header names column \"" + columns[i] + "\" twice");
  }
  return Status::ok();
}

// One delimited record's fields: the header's (the first record) become the columns; every later
// record must have as many fields and goes to the sink by column name.
Status take_record(std::vector<std::string> fields, int64_t line, const char* separated, const std::string& name,
                   bool& header_done, std::vector<std::string>& columns, const RecordSink& sink) {
  if (!header_done) {
    columns = std::move(fields);
    header_done = true;
    return check_header(columns, name);
  }
  if (fields.size() != columns.size()) {
    return bad_record(name, line, "expected " + std::to_string(columns.size()) + " " + separated +
                                      " fields (as the header has), got " + std::to_string(fields.size()));
  }
  TableRecord r{line, nlohmann::json::object()};
  for (size_t i = 0; i < fields.size(); ++i) r.values[columns[i]] = std::move(fields[i]);
  sink(std::move(r));
  return Status::ok();
}

Status scan_tsv(LineSource& lines, const std::string& name, std::vector<std::string>& columns, const RecordSink& sink) {
  bool header_done = false;
  std::string_view line;
  while (lines.next(line)) {
    if (line.empty()) continue;
    std::vector<std::string> fields;
    size_t start = 0;
    while (true) {
      size_t tab = line.find('\t', start);
      fields.emplace_back(line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start));
      if (tab == std::string_view::npos) break;
      start = tab + 1;
    }
    BITFLEET_RETURN_IF_ERROR(take_record(std::move(fields), lines.number(), "tab-separated", name, header_done, columns, sink));
  }
  BITFLEET_RETURN_IF_ERROR(lines.status());
  if (!header_done) return invalid_argument(name + ": empty file (a TSV needs a header line)");
  return Status::ok();
}

// The records in `text`, whose first line is `line`: RFC 4180 fields separated by ',', records
// ended by a newline outside quotes. `text` holds whole records only (see scan_csv).
Status parse_csv_text(std::string_view text, int64_t line, const std::string& name, bool& header_done,
                      std::vector<std::string>& columns, const RecordSink& sink) {
  size_t i = 0;
  while (i < text.size()) {
    const int64_t record_line = line;
    std::vector<std::string> fields;
    std::string field;
    bool quoted_field = false;
    bool at_field_start = true;
    bool ended = false;
    while (i < text.size() && !ended) {
      char c = text[i];
      if (at_field_start && c == '"') {
        quoted_field = true;
        at_field_start = false;
        ++i;
        while (true) {
          if (i >= text.size()) return bad_record(name, record_line, "a quoted field is never closed");
          if (text[i] == '"') {
            if (i + 1 < text.size() && text[i + 1] == '"') {
              field.push_back('"');
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          field.push_back(text[i++]);
        }
        if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          return bad_record(name, line, "a quoted field is followed by '" + std::string(1, text[i]) +
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
        if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
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
    BITFLEET_RETURN_IF_ERROR(take_record(std::move(fields), record_line, "comma-separated", name, header_done, columns, sink));
  }
  return Status::ok();
}

// Lines are gathered until their quotes balance (RFC 4180 doubles a quote inside a quoted field,
// so an odd count means a quoted newline is still open), then parsed as whole records.
Status scan_csv(LineSource& lines, const std::string& name, std::vector<std::string>& columns, const RecordSink& sink) {
  bool header_done = false;
  std::string pending;
  int64_t pending_line = 0;
  size_t quotes = 0;
  std::string_view line;
  while (lines.next(line)) {
    if (pending.empty() && quotes == 0) {
      pending_line = lines.number();
    } else {
      pending.push_back('\n');
    }
    pending.append(line);
    quotes += static_cast<size_t>(std::count(line.begin(), line.end(), '"'));
    if (quotes % 2 == 1 && pending.size() <= kMaxRecordBytes) continue;
    BITFLEET_RETURN_IF_ERROR(parse_csv_text(pending, pending_line, name, header_done, columns, sink));
    if (quotes % 2 == 1) {
      return bad_record(name, pending_line, "a record longer than " + std::to_string(kMaxRecordBytes) +
                                                " bytes (is a quoted field never closed?)");
    }
    pending.clear();
    quotes = 0;
  }
  BITFLEET_RETURN_IF_ERROR(lines.status());
  if (!pending.empty() || quotes > 0) {
    BITFLEET_RETURN_IF_ERROR(parse_csv_text(pending, pending_line, name, header_done, columns, sink));
  }
  if (!header_done) return invalid_argument(name + ": empty file (a CSV needs a header line)");
  return Status::ok();
}

Status scan_jsonl(LineSource& lines, const std::string& name, std::vector<std::string>& columns,
                  const RecordSink& sink) {
  std::set<std::string, std::less<>> known;
  std::string_view line;
  while (lines.next(line)) {
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    auto value = parse_json(line, "the line");
    if (!value.is_ok()) return bad_record(name, lines.number(), value.status().message());
    if (!value->is_object()) return bad_record(name, lines.number(), "a JSONL record must be a JSON object");
    for (const auto& [key, v] : value->items()) {
      if (known.contains(key)) continue;
      if (known.size() == kMaxColumns) {
        return bad_record(name, lines.number(), "the records name more than " + std::to_string(kMaxColumns) +
                                                    " different fields");
      }
      known.insert(key);
      columns.push_back(key);
    }
    sink({lines.number(), std::move(value).value()});
  }
  return lines.status();
}

Status scan(LineSource& lines, TableFormat format, const std::string& name, std::vector<std::string>& columns,
            const RecordSink& sink) {
  switch (format) {
    case TableFormat::kTsv: return scan_tsv(lines, name, columns, sink);
    case TableFormat::kCsv: return scan_csv(lines, name, columns, sink);
    case TableFormat::kJsonl: return scan_jsonl(lines, name, columns, sink);
  }
  return invalid_argument(name + ": unknown format");
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
  Table t{name, format, {}, {}};
  StringLines lines(content, name);
  BITFLEET_RETURN_IF_ERROR(scan(lines, format, name, t.columns, [&t](TableRecord&& r) { t.records.push_back(std::move(r)); }));
  return t;
}

Result<TableSummary> scan_table_file(const std::string& path, TableFormat format, const std::string& name) {
  TableSummary summary;
  FileLines lines(path, name);
  BITFLEET_RETURN_IF_ERROR(lines.status());
  BITFLEET_RETURN_IF_ERROR(scan(lines, format, name, summary.columns, [&summary](TableRecord&&) { ++summary.records; }));
  return summary;
}

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

Result<std::string> resolve_column(const Table& table, const std::string& reference, const std::string& field) {
  if (std::find(table.columns.begin(), table.columns.end(), reference) != table.columns.end()) return reference;
  bool digits = !reference.empty() && reference.size() < 6 &&
                std::all_of(reference.begin(), reference.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits && table.format != TableFormat::kJsonl) {
    size_t index = 0;
    std::from_chars(reference.data(), reference.data() + reference.size(), index);  // <= 5 digits
    if (index < table.columns.size()) return table.columns[index];
  }
  std::string names;
  for (const auto& c : table.columns) names += (names.empty() ? "" : ", ") + c;
  return invalid_argument(field + ": column \"" + reference + "\" is not in " + table.name + " (columns: " + names + ")",
                          field);
}

}  // namespace bitfleet::common
