// ServeApi: bitfleet-serve's HTTP API — POST /v1/predict, GET /healthz, /readyz, /metrics and
// /v1/openapi.json — as one function from a request to a response (ARCHITECTURE.md "Serve API").
//
// A predict request is checked (problem+json naming the field), its bearer token and task
// resolved through the TaskSource, its task made resident (TaskTable), its inputs tokenized on the
// handler's thread as the task's training data was (its max_seq_len), and queued for the batcher;
// the handler then waits for its rows until the request's deadline.
// Thread-safety: handle() from any handler thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "common/net/http_types.h"
#include "serve/batcher.h"
#include "serve/predict_request.h"
#include "serve/serve_metrics.h"
#include "serve/task_source.h"
#include "serve/task_table.h"
#include "worker/text/tokenizer.h"

namespace bitfleet::serve {

struct ServeApiOptions {
  RequestLimits limits;
  std::chrono::milliseconds deadline{10'000};  // a request's, unless it asks for less
  int retry_after_seconds = 1;                 // in 429 and 503 answers
};

// What a predict request needs, ready once the backbone is loaded.
struct Engine {
  TaskSource* source = nullptr;
  TaskTable* table = nullptr;
  Batcher* batcher = nullptr;
  const text::Tokenizer* tokenizer = nullptr;
};

class ServeApi {
 public:
  ServeApi(ServeMetrics& metrics, ServeApiOptions options) : metrics_(metrics), options_(options) {}

  // From then on /readyz answers 200 and predict requests are served. `engine` outlives the API's use.
  void set_ready(const Engine* engine) { engine_.store(engine); metrics_.ready(engine != nullptr); }

  net::Response handle(net::Request& r);

 private:
  net::Response predict(const net::Request& r, const Engine& engine);

  ServeMetrics& metrics_;
  ServeApiOptions options_;
  std::atomic<const Engine*> engine_{nullptr};
};

}  // namespace bitfleet::serve
