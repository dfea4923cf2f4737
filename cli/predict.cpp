// bitfleet predict: predictions from a bitfleet-serve for one input, or a whole dataset file.
//
//   bitfleet predict TASK --text "…" [--text-pair "…"]      one input (TASK: a job or sweep id)
//   bitfleet predict TASK --tokens "w1 w2 …"                one tagging input
//   bitfleet predict TASK --file F [-o out.jsonl] [--batch N] [--fields A[,B]]
//
// For a file, the task's text fields (and whether it tags words) come from the job on the
// coordinator, or from --fields; each record becomes one input, sent in requests of --batch inputs,
// and each prediction one JSON line {"line": N, …} in order, with progress on stderr.
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/api.h"
#include "cli/commands.h"
#include "cli/job_view.h"
#include "common/file_util.h"
#include "common/table_reader.h"

namespace bitfleet::cli {
namespace {

using nlohmann::json;

// What a file's records are read as: the columns, and whether they are a tagging task's words.
struct InputShape {
  std::vector<std::string> fields;
  bool words = false;
};

Result<InputShape> input_shape(Context& ctx, const std::string& task, const std::optional<std::string>& fields) {
  InputShape shape;
  if (fields) {
    size_t start = 0;
    while (start <= fields->size()) {
      const size_t comma = fields->find(',', start);
      shape.fields.push_back(fields->substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  std::string job = task;
  if (task.rfind("sweep-", 0) == 0) {
    auto sweep = ctx.api.get("/v1/sweeps/" + url_encode(task));
    if (!sweep.is_ok()) return fields ? Result<InputShape>(shape) : Result<InputShape>(sweep.status());
    if (!(*sweep)["best"].is_object()) return Status(StatusCode::kFailedPrecondition, task + " has no best variant yet");
    job = (*sweep)["best"]["job"].get<std::string>();
  }
  auto j = ctx.api.get("/v1/jobs/" + url_encode(job));
  if (!j.is_ok()) {
    if (fields) return shape;
    return Status(j.status().code(), "the task's text fields: " + j.status().message() + " (or give --fields)");
  }
  const json& spec = (*j)["task"];
  shape.words = spec.value("type", std::string()) == "token_classification";
  if (!fields) {
    for (const auto& f : spec["text_fields"]) shape.fields.push_back(f.get<std::string>());
  }
  return shape;
}

// A record's input; the error names the file, line and field.
Result<json> record_input(const common::Table& table, const common::TableRecord& record, const InputShape& shape) {
  const std::string where = table.name + " line " + std::to_string(record.line);
  json in = json::object();
  for (size_t i = 0; i < shape.fields.size() && i < 2; ++i) {
    BITFLEET_ASSIGN_OR_RETURN(std::string column, common::resolve_column(table, shape.fields[i], "--fields"));
    const json& v = record.values.contains(column) ? record.values[column] : json();
    if (shape.words && v.is_array()) {
      in["tokens"] = v;
      continue;
    }
    if (!v.is_string()) return invalid_argument(where + ": field " + column + " must be text");
    in[shape.words ? "text" : i == 0 ? "text" : "text_pair"] = v;
  }
  return in;
}

int predict_file(Context& ctx, Api& serve, const std::string& task, const std::string& path, const InputShape& shape,
                 const std::string& out_path, int64_t batch) {
  auto format = common::table_format_from_name(path);
  if (!format.is_ok()) return fail(ctx, invalid_argument("--file: " + format.status().message()));
  auto content = common::read_file(path);
  if (!content.is_ok()) return fail(ctx, invalid_argument("--file: " + content.status().message()));
  auto table = common::read_table(*content, *format, path);
  if (!table.is_ok()) return fail(ctx, invalid_argument(table.status().message()));
  std::ofstream file;
  if (!out_path.empty()) {
    file.open(out_path);
    if (!file) return fail(ctx, invalid_argument("-o: cannot write " + out_path));
  }
  std::ostream& out = out_path.empty() ? ctx.out : file;
  const auto& records = table->records;
  for (size_t begin = 0; begin < records.size(); begin += static_cast<size_t>(batch)) {
    if (ctx.interrupted) return kExitInterrupted;
    const size_t end = std::min(records.size(), begin + static_cast<size_t>(batch));
    json inputs = json::array();
    for (size_t i = begin; i < end; ++i) {
      auto in = record_input(*table, records[i], shape);
      if (!in.is_ok()) return fail(ctx, in.status());
      inputs.push_back(std::move(*in));
    }
    auto answer = serve.post("/v1/predict", {{"task", task}, {"inputs", std::move(inputs)}}, "");
    if (!answer.is_ok()) {
      return fail(ctx, Status(answer.status().code(), path + " lines " + std::to_string(records[begin].line) + "–" +
                                                          std::to_string(records[end - 1].line) + ": " +
                                                          answer.status().message(), answer.status().field()));
    }
    const json& predictions = (*answer)["predictions"];
    for (size_t i = begin; i < end; ++i) {
      json line = {{"line", records[i].line}};
      line.update(predictions[i - begin]);
      out << line.dump() << "\n";
    }
    ctx.err << "\rpredicted " << end << "/" << records.size() << std::flush;
  }
  ctx.err << "\n";
  out.flush();
  return out ? kExitOk : fail(ctx, io_error("writing " + (out_path.empty() ? std::string("stdout") : out_path)));
}

}  // namespace

int predict_command(Context& ctx, common::Flags& flags, const Args& args) {
  const char* env = std::getenv("BITFLEET_SERVE_URL");
  const std::string url = flags.string("serve", env && *env ? env : "http://127.0.0.1:8090");
  const auto text = flags.optional_string("text");
  const auto pair = flags.optional_string("text-pair");
  const auto tokens = flags.optional_string("tokens");
  const auto file = flags.optional_string("file");
  const auto fields = flags.optional_string("fields");
  const std::string out_path = flags.string("out", "");
  const int64_t batch = flags.integer("batch", 1, 256, 64);
  if (Status s = flags.finish(); !s.is_ok()) return fail(ctx, s);
  if (args.size() != 1 || (!text && !tokens && !file)) {
    return fail(ctx, invalid_argument("usage: bitfleet predict TASK --text T [--text-pair P] | --tokens \"W …\" | "
                                      "--file F [-o out.jsonl]"));
  }
  auto serve = Api::connect({.url = url, .token = ctx.token, .timeout = ctx.timeout});
  if (!serve.is_ok()) return fail(ctx, invalid_argument("--serve: " + serve.status().message()));
  const std::string& task = args[0];
  if (file) {
    auto shape = input_shape(ctx, task, fields);
    if (!shape.is_ok()) return fail(ctx, shape.status());
    return predict_file(ctx, **serve, task, *file, *shape, out_path, batch);
  }
  json in = json::object();
  if (tokens) {
    json words = json::array();
    std::istringstream split(*tokens);
    for (std::string w; split >> w;) words.push_back(w);
    in["tokens"] = std::move(words);
  } else {
    in["text"] = *text;
    if (pair) in["text_pair"] = *pair;
  }
  auto answer = (*serve)->post("/v1/predict", {{"task", task}, {"inputs", json::array({in})}}, "");
  if (!answer.is_ok()) return fail(ctx, answer.status());
  const json& p = (*answer)["predictions"][0];
  if (ctx.json) {
    ctx.out << answer->dump(2) << "\n";
  } else if (p.contains("label")) {
    TextTable table({"LABEL", "PROBABILITY"});
    for (const auto& [label, prob] : p["probabilities"].items()) table.add({label, format_number(prob.get<double>())});
    ctx.out << p["label"].get<std::string>() << "\n";
    table.print(ctx.out);
  } else if (p.contains("score")) {
    ctx.out << format_number(p["score"].get<double>()) << "\n";
  } else {
    std::string line;
    for (const auto& t : p["tags"]) line += (line.empty() ? "" : " ") + (t.is_string() ? t.get<std::string>() : "-");
    ctx.out << line << "\n";
  }
  return kExitOk;
}

}  // namespace bitfleet::cli
