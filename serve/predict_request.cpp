#include "serve/predict_request.h"

#include "common/json_fields.h"

namespace bitfleet::serve {

bool is_task_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {

PredictInput parse_input(const nlohmann::json& item, const std::string& path, const RequestLimits& limits,
                         Status& error) {
  PredictInput in;
  if (!item.is_object()) {
    error = invalid_argument(path + ": must be an object with \"text\" (and \"text_pair\") or \"tokens\"", path);
    return in;
  }
  common::JsonFields f(item, path);
  const auto max_text = static_cast<size_t>(limits.max_text_bytes);
  if (f.has("tokens")) {
    in.has_tokens = true;
    in.tokens = f.string_list("tokens", 1, static_cast<size_t>(limits.max_words), max_text, false);
    if (f.ok() && (f.has("text") || f.has("text_pair"))) f.fail("tokens", "give either \"tokens\" or \"text\", not both");
  } else if (f.has("text")) {
    in.text = f.string("text", std::nullopt, max_text, true);
    in.has_pair = f.has("text_pair");
    if (in.has_pair) in.text_pair = f.string("text_pair", std::nullopt, max_text, true);
  } else {
    f.fail("text", "required: \"text\" (and \"text_pair\" for a pair task) or \"tokens\" (a tagging task's words)");
  }
  if (Status s = f.finish(); !s.is_ok()) error = s;
  return in;
}

}  // namespace

Result<PredictRequest> parse_predict_request(const nlohmann::json& body, const RequestLimits& limits) {
  if (!body.is_object()) return invalid_argument("the request body must be a JSON object", "body");
  common::JsonFields f(body, "");
  PredictRequest r;
  r.task = f.string("task", std::nullopt, 128);
  if (f.ok() && !is_task_name(r.task)) {
    f.fail("task", "must be a job id (job-…), a sweep id (sweep-…) or an artifact name of [A-Za-z0-9._-], got \"" +
                       r.task.substr(0, 64) + "\"");
  }
  r.timeout_ms = f.integer("timeout_ms", 1, limits.max_timeout_ms, 0);
  const nlohmann::json& inputs = f.raw("inputs");
  if (f.ok()) {
    if (!inputs.is_array() || inputs.empty() || static_cast<int64_t>(inputs.size()) > limits.max_inputs) {
      f.fail("inputs", "must be an array of 1 to " + std::to_string(limits.max_inputs) + " inputs");
    } else {
      Status error;
      for (size_t i = 0; i < inputs.size() && error.is_ok(); ++i) {
        r.inputs.push_back(parse_input(inputs[i], "inputs[" + std::to_string(i) + "]", limits, error));
      }
      if (!error.is_ok()) return error;
    }
  }
  BITFLEET_RETURN_IF_ERROR(f.finish());
  return r;
}

}  // namespace bitfleet::serve
