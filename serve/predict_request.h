// PredictRequest: the body of POST /v1/predict, validated before anything is looked up.
//
//   {"task": "job-…" | "sweep-…" | NAME, "inputs": [{"text", "text_pair"?} | {"tokens": [...]}],
//    "timeout_ms"?: N}
//
// Checks what needs no task: the shapes, sizes and types of every field, each error naming it
// ("inputs[3].text_pair"). Whether an input fits its task (a pair for a pair task, words for a
// tagger) is checked once the task is known (serve_api.cpp). No LibTorch. Thread-safety: values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace bitfleet::serve {

struct PredictInput {
  std::string text;
  std::string text_pair;
  bool has_pair = false;
  std::vector<std::string> tokens;  // pre-split words (token classification)
  bool has_tokens = false;
};

struct PredictRequest {
  std::string task;
  std::vector<PredictInput> inputs;
  int64_t timeout_ms = 0;  // 0: the server's --deadline-ms
};

struct RequestLimits {
  int64_t max_inputs = 256;
  int64_t max_text_bytes = 64 * 1024;
  int64_t max_words = 512;
  int64_t max_timeout_ms = 600'000;
};

// A task name: a job or sweep id, or (serving from --artifact-dir) an artifact's file name without
// ".safetensors": 1 to 128 of [A-Za-z0-9._-], not starting with '.'.
bool is_task_name(const std::string& name);

Result<PredictRequest> parse_predict_request(const nlohmann::json& body, const RequestLimits& limits);

}  // namespace bitfleet::serve
