#include "cli/manifest.h"

#include <charconv>
#include <functional>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/sweep_spec.h"
#include "common/table_reader.h"

namespace bitfleet::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

enum class Kind { kString, kInteger, kNumber, kList, kBiasTerms, kPath };

struct Column {
  const char* name;
  const char* pointer;  // where the value goes in the job request
  Kind kind;
};

constexpr Column kColumns[] = {
    {"name", "/metadata/name", Kind::kString},
    {"backbone", "/backbone", Kind::kString},
    {"train_file", "/train_file", Kind::kPath},
    {"validation_file", "/validation_file", Kind::kPath},
    {"test_file", "/test_file", Kind::kPath},
    {"task_type", "/task/type", Kind::kString},
    {"text_fields", "/task/text_fields", Kind::kList},
    {"label_field", "/task/label_field", Kind::kString},
    {"labels", "/task/labels", Kind::kList},
    {"epochs", "/hyperparameters/epochs", Kind::kInteger},
    {"batch_size", "/hyperparameters/batch_size", Kind::kInteger},
    {"learning_rate", "/hyperparameters/learning_rate", Kind::kNumber},
    {"warmup_ratio", "/hyperparameters/warmup_ratio", Kind::kNumber},
    {"weight_decay", "/hyperparameters/weight_decay", Kind::kNumber},
    {"max_seq_len", "/hyperparameters/max_seq_len", Kind::kInteger},
    {"seed", "/hyperparameters/seed", Kind::kInteger},
    {"bias_terms", "/hyperparameters/bias_terms", Kind::kBiasTerms},
    {"max_grad_norm", "/hyperparameters/max_grad_norm", Kind::kNumber},
    {"max_steps", "/hyperparameters/max_steps", Kind::kInteger},
    {"eval_every_steps", "/hyperparameters/eval_every_steps", Kind::kInteger},
    {"metric_for_best", "/hyperparameters/metric_for_best", Kind::kString},
    {"early_stopping_patience", "/hyperparameters/early_stopping_patience", Kind::kInteger},
    {"priority", "/priority", Kind::kInteger},
};
constexpr std::string_view kMetadataPrefix = "metadata.";
// A sweep row is checked against the coordinator's default limit; a coordinator started with a
// lower --max-sweep-variants refuses it with the row named.
constexpr int64_t kMaxSweepVariants = 64;

const Column* find_column(std::string_view name) {
  for (const Column& c : kColumns) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

std::string known_columns() {
  std::string names;
  for (const Column& c : kColumns) names += std::string(names.empty() ? "" : ", ") + c.name;
  return names + ", metadata.KEY";
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (true) {
    size_t bar = text.find('|', start);
    std::string item = text.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
    const size_t first = item.find_first_not_of(' '), last = item.find_last_not_of(' ');
    items.push_back(first == std::string::npos ? "" : item.substr(first, last - first + 1));
    if (bar == std::string::npos) return items;
    start = bar + 1;
  }
}

// A cell's value as the request field wants it; cells of CSV/TSV manifests are strings, JSONL's
// may already be typed.
Result<json> convert(const json& cell, Kind kind, const fs::path& base_dir) {
  const bool text = cell.is_string();
  const std::string s = text ? cell.get<std::string>() : cell.dump();
  switch (kind) {
    case Kind::kString:
      if (!cell.is_string() && !cell.is_number_integer()) return invalid_argument("must be text, got " + s);
      return json(s);
    case Kind::kInteger: {
      if (cell.is_number_integer()) return cell;
      int64_t v = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (!text || ec != std::errc() || end != s.data() + s.size()) {
        return invalid_argument("must be a whole number, got \"" + s + "\"");
      }
      return json(v);
    }
    case Kind::kNumber: {
      if (cell.is_number()) return cell;
      char* end = nullptr;
      const double v = text ? std::strtod(s.c_str(), &end) : NAN;
      if (!text || s.empty() || end != s.c_str() + s.size() || !std::isfinite(v)) {
        return invalid_argument("must be a number, got \"" + s + "\"");
      }
      return json(v);
    }
    case Kind::kList:
      if (cell.is_array()) return cell;
      if (!text) return invalid_argument("must be names separated by '|', got " + s);
      return json(split_list(s));
    case Kind::kBiasTerms:
      if (cell.is_array() || !text || s.find('|') == std::string::npos) return cell;
      return json(split_list(s));
    case Kind::kPath: {
      if (!text) return invalid_argument("must be a file path, got " + s);
      fs::path p = fs::path(s).is_absolute() ? fs::path(s) : base_dir / s;
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) return invalid_argument("no such file: " + p.string());
      return json(fs::weakly_canonical(p, ec).string());
    }
  }
  return cell;
}

// The data files' headers, read once each, to check a task's column references before upload.
class DataFiles {
 public:
  Result<const common::Table*> get(const std::string& path) {
    auto found = tables_.find(path);
    if (found != tables_.end()) return found->second.get();
    BITFLEET_ASSIGN_OR_RETURN(auto format, common::table_format_from_name(path));
    BITFLEET_ASSIGN_OR_RETURN(std::string content, common::read_file(path));
    BITFLEET_ASSIGN_OR_RETURN(common::Table table, common::read_table(content, format, path));
    table.records.clear();  // only the header matters here
    auto& slot = tables_[path] = std::make_unique<common::Table>(std::move(table));
    return slot.get();
  }

 private:
  std::map<std::string, std::unique_ptr<common::Table>> tables_;
};

// A field error from parse_job_request/resolve_column without its "field: " prefix.
std::string bare_message(const Status& s) {
  const std::string prefix = s.field() + ": ";
  return s.message().rfind(prefix, 0) == 0 ? s.message().substr(prefix.size()) : s.message();
}

Status check_columns(const json& request, DataFiles& files) {
  const json& task = request.value("task", json::object());
  for (const char* which : common::kFileFields) {
    if (!request.contains(which)) continue;
    auto table = files.get(request[which].get<std::string>());
    if (!table.is_ok()) return Status(table.status().code(), table.status().message(), which);
    const auto& fields = task.value("text_fields", json::array());
    for (size_t i = 0; i < fields.size(); ++i) {
      BITFLEET_RETURN_IF_ERROR(
          common::resolve_column(**table, fields[i].get<std::string>(), "task.text_fields[" + std::to_string(i) + "]").status());
    }
    BITFLEET_RETURN_IF_ERROR(common::resolve_column(**table, task.value("label_field", ""), "task.label_field").status());
  }
  return Status::ok();
}

// A row's cells into its task's request (and grid, for '|' cells of hyperparameters); false after
// reporting each bad cell through `fail`.
bool read_cells(const common::TableRecord& record, const fs::path& base_dir, ManifestTask& task,
                const std::function<void(const std::string&, const std::string&)>& fail) {
  bool row_ok = true;
  for (const auto& [name, cell] : record.values.items()) {
    if (cell.is_null() || (cell.is_string() && cell.get<std::string>().empty())) continue;
    const Column* column = find_column(name);
    std::string pointer = column ? column->pointer : "/metadata/" + name.substr(kMetadataPrefix.size());
    const bool swept = column && pointer.rfind("/hyperparameters/", 0) == 0 && column->kind != Kind::kBiasTerms &&
                       cell.is_string() && cell.get<std::string>().find('|') != std::string::npos;
    if (swept) {  // one grid entry, each value converted as the column's
      json values = json::array();
      for (const auto& item : split_list(cell.get<std::string>())) {
        auto value = convert(json(item), column->kind, base_dir);
        if (!value.is_ok()) {
          fail(name, value.status().message());
          row_ok = false;
          break;
        }
        values.push_back(std::move(value).value());
      }
      task.grid[name] = std::move(values);
      continue;
    }
    auto value = convert(cell, column ? column->kind : Kind::kString, base_dir);
    if (!value.is_ok()) {
      fail(name, value.status().message());
      row_ok = false;
      continue;
    }
    task.request[json::json_pointer(pointer)] = std::move(value).value();
  }
  return row_ok;
}

}  // namespace

std::string manifest_column(const std::string& field) {
  std::string pointer = "/";
  for (char c : field.substr(0, field.find('['))) pointer += c == '.' ? '/' : c;
  for (const Column& c : kColumns) {
    if (pointer == c.pointer) return c.name;
  }
  return "";
}

Result<std::vector<ManifestTask>> read_manifest(const std::string& path, const json& base) {
  BITFLEET_ASSIGN_OR_RETURN(auto format, common::table_format_from_name(path));
  BITFLEET_ASSIGN_OR_RETURN(std::string content, common::read_file(path));
  BITFLEET_ASSIGN_OR_RETURN(common::Table table, common::read_table(content, format, path));
  if (table.records.empty()) return invalid_argument(path + ": the manifest has no tasks");
  for (const std::string& name : table.columns) {
    if (!find_column(name) && (name.rfind(kMetadataPrefix, 0) != 0 || name.size() == kMetadataPrefix.size())) {
      return invalid_argument(path + ":1: column \"" + name + "\" is not a manifest column (known: " + known_columns() + ")",
                              name);
    }
  }
  const fs::path base_dir = fs::absolute(path).parent_path();
  DataFiles files;
  std::vector<ManifestTask> tasks;
  std::vector<std::string> errors;
  for (size_t i = 0; i < table.records.size(); ++i) {
    const common::TableRecord& record = table.records[i];
    ManifestTask task{static_cast<int64_t>(i + 1), record.line, "", base.is_object() ? base : json::object()};
    const std::string where = path + ":" + std::to_string(record.line) + ": row " + std::to_string(task.row);
    auto fail = [&](const std::string& column, const std::string& message) {
      errors.push_back(where + (column.empty() ? "" : ", column \"" + column + "\"") + ": " + message);
    };
    if (!read_cells(record, base_dir, task, fail)) continue;
    Status valid = task.grid.empty()
                       ? common::parse_job_request(task.request, common::FileRefs::kLocalPaths).status()
                       : common::parse_sweep_request({{"base", task.request}, {"grid", task.grid}},
                                                     common::FileRefs::kLocalPaths, kMaxSweepVariants)
                             .status();
    if (valid.is_ok()) valid = check_columns(task.request, files);
    if (!valid.is_ok()) {
      std::string field = valid.field();
      if (field.rfind("base.", 0) == 0) field = field.substr(5);
      if (field.rfind("grid.", 0) == 0) field = "hyperparameters." + field.substr(5);  // the swept column
      const std::string column = manifest_column(field);
      fail(column, column.empty() && !valid.field().empty() ? valid.message() : bare_message(valid));
      continue;
    }
    task.name = task.request.value(json::json_pointer("/metadata/name"), "");
    tasks.push_back(std::move(task));
  }
  if (!errors.empty()) {
    std::string message = std::to_string(errors.size()) + " of " + std::to_string(table.records.size()) +
                          " rows of " + path + " are not valid tasks (nothing was uploaded or submitted):";
    for (size_t i = 0; i < errors.size() && i < 20; ++i) message += "\n  " + errors[i];
    if (errors.size() > 20) message += "\n  … and " + std::to_string(errors.size() - 20) + " more";
    return invalid_argument(message);
  }
  return tasks;
}

}  // namespace bitfleet::cli
