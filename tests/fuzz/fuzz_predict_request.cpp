// bitfleet-serve's POST /v1/predict body as a client sends it: the JSON parser and the request's
// validation. Every refusal must name its field and say why; what is accepted must be within the
// limits the server relies on (inputs, text bytes, words) and have a task name that is safe as a
// file name.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/json_fields.h"
#include "serve/predict_request.h"

using namespace bitfleet;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto body = common::parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "the request body");
  if (!body.is_ok()) return 0;
  const serve::RequestLimits limits{.max_inputs = 8, .max_text_bytes = 64, .max_words = 8};
  auto r = serve::parse_predict_request(*body, limits);
  if (!r.is_ok()) {
    if (r.status().message().empty() || r.status().field().empty()) __builtin_trap();
    return 0;
  }
  if (!serve::is_task_name(r->task) || r->task.find('/') != std::string::npos) __builtin_trap();
  if (r->inputs.empty() || static_cast<int64_t>(r->inputs.size()) > limits.max_inputs) __builtin_trap();
  for (const auto& in : r->inputs) {
    if (in.has_tokens && (!in.text.empty() || in.has_pair)) __builtin_trap();  // words never come with text
    if (static_cast<int64_t>(in.text.size()) > limits.max_text_bytes) __builtin_trap();
    if (static_cast<int64_t>(in.tokens.size()) > limits.max_words) __builtin_trap();
  }
  return 0;
}
