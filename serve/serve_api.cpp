#include "serve/serve_api.h"

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/json_fields.h"
#include "common/net/bearer.h"
#include "common/net/json_body.h"
#include "common/net/problem.h"
#include "serve/openapi_document.h"

namespace bitfleet::serve {
namespace {

using common::TaskType;
using nlohmann::json;

// A status from resolving, loading or running as the problem to answer with. A task that cannot be
// served (no artifact yet: `refused` 409; made for another backbone or unreadable: 422) names the
// task field — never a 5xx; every slot pinned is a moment's wait (503 with Retry-After).
net::Response status_problem(const Status& s, int retry_after, int refused) {
  int code = net::http_status(s.code(), 422);
  std::string field = s.field();
  if (s.code() == StatusCode::kFailedPrecondition || s.code() == StatusCode::kDataLoss) {
    code = refused;
    field = "task";
  } else if (s.code() == StatusCode::kResourceExhausted) {
    code = 503;
  }
  net::Response r = net::problem(code, "", s.message(), field, "/v1/predict");
  if (code == 429 || code == 503) r.headers["Retry-After"] = std::to_string(retry_after);
  return r;
}

// A tagging input given as text: its whitespace-separated words.
std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream split(text);
  for (std::string w; split >> w;) words.push_back(w);
  return words;
}

// An input's encoding for its task, or the field that does not fit it.
Result<text::Encoding> encode(const PredictInput& in, const TaskInfo& info, const text::Tokenizer& tokenizer,
                              const std::string& path) {
  const auto& task = info.task;
  if (task.type == TaskType::kTokenClassification) {
    if (in.has_tokens) return tokenizer.encode_words(in.tokens, info.max_seq_len);
    const std::vector<std::string> words = split_words(in.text);
    if (words.empty()) return invalid_argument(path + ".tokens: a tagging task needs words", path + ".tokens");
    return tokenizer.encode_words(words, info.max_seq_len);
  }
  if (in.has_tokens) {
    return invalid_argument(path + ".tokens: task " + info.name + " is a " +
                                std::string(common::task_type_name(task.type)) + " task: give \"text\"",
                            path + ".tokens");
  }
  const bool pair_task = task.text_fields.size() == 2;
  if (pair_task && !in.has_pair) {
    return invalid_argument(path + ".text_pair: task " + info.name + " reads pairs (" + task.text_fields[0] +
                                ", " + task.text_fields[1] + "): give \"text\" and \"text_pair\"",
                            path + ".text_pair");
  }
  if (!pair_task && in.has_pair) {
    return invalid_argument(path + ".text_pair: task " + info.name + " reads one text (" + task.text_fields[0] + ")",
                            path + ".text_pair");
  }
  return pair_task ? tokenizer.encode_pair(in.text, in.text_pair, info.max_seq_len)
                   : tokenizer.encode(in.text, info.max_seq_len);
}

json prediction(const TaskInfo& info, const text::Encoding& enc, const std::vector<float>& out, size_t words) {
  const auto& labels = info.task.labels;
  switch (info.task.type) {
    case TaskType::kRegression: return {{"score", out[0]}};
    case TaskType::kClassification: {
      json p = json::object();
      size_t best = 0;
      for (size_t i = 0; i < labels.size(); ++i) {
        p[labels[i]] = out[i];
        if (out[i] > out[best]) best = i;
      }
      return {{"label", labels[best]}, {"probabilities", std::move(p)}};
    }
    case TaskType::kTokenClassification: {
      // One tag per word: the label at the word's first token (null for words truncated away).
      json tags = json::array();
      for (size_t w = 0; w < words; ++w) tags.push_back(nullptr);
      for (size_t t = 0; t < enc.word_ids.size() && t < out.size(); ++t) {
        const int32_t w = enc.word_ids[t];
        if (w < 0 || static_cast<size_t>(w) >= words || !tags[w].is_null()) continue;
        tags[w] = labels[static_cast<size_t>(std::lround(out[t]))];
      }
      return {{"tags", std::move(tags)}};
    }
  }
  return json();
}

}  // namespace

net::Response ServeApi::handle(net::Request& r) {
  const Engine* engine = engine_.load();
  if (r.path == "/v1/predict") {
    if (r.method != "POST") return net::problem(405, "", "POST /v1/predict", "", r.path);
    if (engine == nullptr) {
      net::Response p = net::problem(503, "", "the backbone is still loading", "", r.path);
      p.headers["Retry-After"] = std::to_string(options_.retry_after_seconds);
      return p;
    }
    return predict(r, *engine);
  }
  if (r.method != "GET") return net::problem(405, "", r.method + " " + r.path + " is not served", "", r.path);
  if (r.path == "/healthz") return net::json_response(200, {{"status", "ok"}});
  if (r.path == "/readyz") {
    if (engine == nullptr) return net::problem(503, "", "the backbone is still loading", "", r.path);
    return net::json_response(200, {{"status", "ready"}, {"tasks_resident", engine->table->resident()}});
  }
  if (r.path == "/metrics") {
    net::Response m;
    m.content_type = "text/plain; version=0.0.4";
    m.body = metrics_.scrape();
    return m;
  }
  if (r.path == "/v1/openapi.json") {
    net::Response doc;
    doc.body = std::string(openapi_document());
    return doc;
  }
  return net::problem(404, "", "no route " + r.path + " (bitfleet-serve serves POST /v1/predict)", "", r.path);
}

net::Response ServeApi::predict(const net::Request& r, const Engine& engine) {
  const auto start = Work::Clock::now();
  const std::string authorization = r.header("authorization");
  const auto bearer = net::bearer_token(authorization);
  if (!bearer) return net::problem(401, "", "an Authorization: Bearer token is required", "Authorization", r.path);
  const std::string token(*bearer);
  int invalid = 400;
  auto body = net::json_body(r, &invalid);
  if (!body.is_ok()) return net::problem(body.status(), r.path, invalid);
  auto request = parse_predict_request(*body, options_.limits);
  if (!request.is_ok()) return net::problem(request.status(), r.path, 422);
  const auto deadline =
      start + (request->timeout_ms > 0 ? std::chrono::milliseconds(request->timeout_ms) : options_.deadline);

  auto key = engine.source->resolve(token, request->task);
  if (!key.is_ok()) return status_problem(key.status(), options_.retry_after_seconds, 409);
  auto lease = engine.table->acquire(*key, deadline);
  if (!lease.is_ok()) return status_problem(lease.status(), options_.retry_after_seconds, 422);
  const TaskInfo& info = lease->info();

  auto work = std::make_shared<Work>();
  work->slot = lease->slot();
  work->task = info.task.type;
  work->num_outputs = info.task.num_outputs();
  work->inputs.reserve(request->inputs.size());
  for (size_t i = 0; i < request->inputs.size(); ++i) {
    auto enc = encode(request->inputs[i], info, *engine.tokenizer, "inputs[" + std::to_string(i) + "]");
    if (!enc.is_ok()) return net::problem(enc.status(), r.path, 422);
    work->inputs.push_back(std::move(enc).value());
  }
  work->enqueued = Work::Clock::now();
  work->deadline = deadline;
  std::future<void> done = work->done.get_future();
  if (Status s = engine.batcher->submit(work); !s.is_ok()) {
    if (s.code() != StatusCode::kResourceExhausted) return status_problem(s, options_.retry_after_seconds, 409);
    metrics_.rejected("queue_full");
    net::Response p = net::problem(429, "", s.message() + "; retry after a moment", "", r.path);
    p.headers["Retry-After"] = std::to_string(options_.retry_after_seconds);
    return p;
  }
  if (done.wait_until(deadline) != std::future_status::ready) {
    metrics_.rejected("deadline");
    return net::problem(504, "", "the request's deadline passed before its batch ran", "timeout_ms", r.path);
  }
  if (!work->status.is_ok()) return status_problem(work->status, options_.retry_after_seconds, 409);

  json predictions = json::array();
  for (size_t i = 0; i < work->inputs.size(); ++i) {
    const auto& in = request->inputs[i];
    const size_t words = in.has_tokens || info.task.type != TaskType::kTokenClassification
                             ? in.tokens.size() : split_words(in.text).size();
    predictions.push_back(prediction(info, work->inputs[i], work->outputs[i], words));
  }
  json out = {{"task", request->task}, {"predictions", std::move(predictions)}};
  if (!info.job_id.empty()) out["job"] = info.job_id;
  return net::json_response(200, out);
}

}  // namespace bitfleet::serve
