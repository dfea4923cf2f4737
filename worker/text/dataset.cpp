#include "worker/text/dataset.h"

#include <cmath>
#include <cstdlib>

#include "common/file_util.h"
#include "worker/text/unicode.h"

namespace bitfleet::text {
namespace {

using common::TaskType;
using nlohmann::json;

Status bad(const common::Table& t, int64_t line, const std::string& column, const std::string& what) {
  return invalid_argument(t.name + ":" + std::to_string(line) + ": field \"" + column + "\": " + what);
}

Result<std::string> text_value(const common::Table& t, const common::TableRecord& r, const std::string& column) {
  auto it = r.values.find(column);
  if (it == r.values.end() || it->is_null()) return bad(t, r.line, column, "is missing");
  if (!it->is_string()) return bad(t, r.line, column, "must be text, got " + it->dump().substr(0, 40));
  const std::string& s = it->get_ref<const std::string&>();
  std::u32string ignored;
  if (!unicode::decode_utf8(s, ignored)) return bad(t, r.line, column, "is not valid UTF-8");
  return s;
}

// A list of words/tags: a JSON array of strings, or text split on whitespace.
Result<std::vector<std::string>> list_value(const common::Table& t, const common::TableRecord& r,
                                            const std::string& column) {
  auto it = r.values.find(column);
  if (it == r.values.end() || it->is_null()) return bad(t, r.line, column, "is missing");
  std::vector<std::string> out;
  if (it->is_array()) {
    for (const auto& item : *it) {
      if (!item.is_string() && !item.is_number_integer()) {
        return bad(t, r.line, column, "must be a list of strings, got " + item.dump().substr(0, 40));
      }
      out.push_back(item.is_string() ? item.get<std::string>() : std::to_string(item.get<int64_t>()));
    }
  } else if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
      size_t j = i;
      while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
      if (j > i) out.push_back(s.substr(i, j - i));
      i = j;
    }
  } else {
    return bad(t, r.line, column, "must be a list of words or space-separated text");
  }
  if (out.empty()) return bad(t, r.line, column, "has no words");
  std::u32string ignored;
  for (const auto& w : out) {
    if (!unicode::decode_utf8(w, ignored)) return bad(t, r.line, column, "is not valid UTF-8");
  }
  return out;
}

Result<int64_t> label_id(const common::Table& t, int64_t line, const std::string& column, const std::string& value,
                         const std::vector<std::string>& labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] == value) return static_cast<int64_t>(i);
  }
  std::string names;
  for (const auto& l : labels) names += (names.empty() ? "" : ", ") + l;
  return bad(t, line, column, "\"" + value.substr(0, 60) + "\" is not one of the task's labels (" + names + ")");
}

Result<std::string> label_text(const common::Table& t, const common::TableRecord& r, const std::string& column) {
  auto it = r.values.find(column);
  if (it == r.values.end() || it->is_null()) return bad(t, r.line, column, "is missing");
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  if (it->is_boolean()) return std::string(it->get<bool>() ? "true" : "false");
  return bad(t, r.line, column, "must be a label name, got " + it->dump().substr(0, 40));
}

Result<float> target_value(const common::Table& t, const common::TableRecord& r, const std::string& column) {
  auto it = r.values.find(column);
  if (it == r.values.end() || it->is_null()) return bad(t, r.line, column, "is missing");
  double v;
  if (it->is_number()) {
    v = it->get<double>();
  } else if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    char* end = nullptr;
    v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size()) return bad(t, r.line, column, "\"" + s.substr(0, 40) + "\" is not a number");
  } else {
    return bad(t, r.line, column, "must be a number");
  }
  if (!std::isfinite(v) || std::fabs(v) > 3.4e38) return bad(t, r.line, column, "must be a finite number");
  return static_cast<float>(v);
}

}  // namespace

std::vector<int32_t> Dataset::lengths() const {
  std::vector<int32_t> out;
  out.reserve(examples.size());
  for (const auto& e : examples) out.push_back(static_cast<int32_t>(e.ids.size()));
  return out;
}

Result<Dataset> make_dataset(const common::Table& table, const common::TaskSpec& task, const Tokenizer& tokenizer,
                             int max_seq_len) {
  std::vector<std::string> text_columns;
  for (size_t i = 0; i < task.text_fields.size(); ++i) {
    BITFLEET_ASSIGN_OR_RETURN(std::string c, common::resolve_column(table, task.text_fields[i],
                                                                    "task.text_fields[" + std::to_string(i) + "]"));
    text_columns.push_back(c);
  }
  BITFLEET_ASSIGN_OR_RETURN(std::string label_column, common::resolve_column(table, task.label_field, "task.label_field"));
  if (table.records.empty()) return invalid_argument(table.name + ": has no records");

  Dataset d;
  d.name = table.name;
  d.task = task.type;
  d.examples.reserve(table.records.size());
  for (const auto& r : table.records) {
    Example e;
    e.line = r.line;
    if (task.type == TaskType::kTokenClassification) {
      BITFLEET_ASSIGN_OR_RETURN(auto words, list_value(table, r, text_columns[0]));
      BITFLEET_ASSIGN_OR_RETURN(auto tags, list_value(table, r, label_column));
      if (tags.size() != words.size()) {
        return bad(table, r.line, label_column, "has " + std::to_string(tags.size()) + " tags for " +
                                                    std::to_string(words.size()) + " words");
      }
      std::vector<int64_t> tag_ids;
      for (const auto& tag : tags) {
        BITFLEET_ASSIGN_OR_RETURN(int64_t id, label_id(table, r.line, label_column, tag, task.labels));
        tag_ids.push_back(id);
      }
      Encoding enc = tokenizer.encode_words(words, max_seq_len);
      e.token_labels.assign(enc.ids.size(), -100);
      for (size_t t = 0; t < enc.ids.size(); ++t) {
        int32_t w = enc.word_ids[t];
        if (w >= 0 && (t == 0 || enc.word_ids[t - 1] != w)) e.token_labels[t] = static_cast<int32_t>(tag_ids[w]);
      }
      e.ids = std::move(enc.ids);
      e.type_ids = std::move(enc.type_ids);
    } else {
      BITFLEET_ASSIGN_OR_RETURN(std::string a, text_value(table, r, text_columns[0]));
      Encoding enc;
      if (text_columns.size() == 2) {
        BITFLEET_ASSIGN_OR_RETURN(std::string b, text_value(table, r, text_columns[1]));
        enc = tokenizer.encode_pair(a, b, max_seq_len);
      } else {
        enc = tokenizer.encode(a, max_seq_len);
      }
      e.ids = std::move(enc.ids);
      e.type_ids = std::move(enc.type_ids);
      if (task.type == TaskType::kClassification) {
        BITFLEET_ASSIGN_OR_RETURN(std::string value, label_text(table, r, label_column));
        BITFLEET_ASSIGN_OR_RETURN(e.label, label_id(table, r.line, label_column, value, task.labels));
      } else {
        BITFLEET_ASSIGN_OR_RETURN(e.target, target_value(table, r, label_column));
      }
    }
    d.examples.push_back(std::move(e));
  }
  return d;
}

Result<Dataset> load_dataset(const std::string& path, const std::string& format_name, const common::TaskSpec& task,
                             const Tokenizer& tokenizer, int max_seq_len) {
  BITFLEET_ASSIGN_OR_RETURN(common::TableFormat format, common::table_format_from_name(format_name));
  BITFLEET_ASSIGN_OR_RETURN(std::string content, common::read_file(path));
  BITFLEET_ASSIGN_OR_RETURN(common::Table table, common::read_table(content, format, format_name));
  return make_dataset(table, task, tokenizer, max_seq_len);
}

}  // namespace bitfleet::text
