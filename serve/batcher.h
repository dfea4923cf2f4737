// Batcher: continuous batching across tasks. Requests of any resident tasks join one queue; one
// thread forms a mixed batch — each request's inputs a segment of its task's slot, so one forward
// pass runs many tasks' bias rows (ARCHITECTURE.md "The core idea") — when --max-batch-rows inputs
// are waiting or the oldest has waited --max-wait-ms, runs it without gradients, and answers every
// request with its rows. The queue is bounded in inputs (submit refuses past it: the API's 429);
// a request whose deadline passed before its batch is answered kDeadlineExceeded, not run.
//
// The batcher thread owns the model: slot rows (TaskTable's installs) are written by it between
// batches, in the order they were asked for, so a request queued after an install sees its row.
// Exceptions from LibTorch stop at the batch: its requests get an internal error, the thread goes on.
// Thread-safety: submit/install/queued_rows from any thread; the model only on the batcher thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "common/job_spec.h"
#include "common/status.h"
#include "worker/engine/batch_builder.h"
#include "worker/engine/bitfit_model.h"
#include "worker/text/tokenizer.h"

namespace bitfleet::serve {

class ServeMetrics;

struct BatcherOptions {
  int64_t max_batch_rows = 64;            // inputs per forward pass
  std::chrono::microseconds max_wait{5000};  // the oldest request's wait before a partial batch runs
  int64_t max_queue_rows = 4096;          // inputs queued at most
};

// One request's inputs for one task, and, once run, its outputs.
struct Work {
  using Clock = std::chrono::steady_clock;
  int slot = 0;
  common::TaskType task = common::TaskType::kClassification;
  int64_t num_outputs = 2;
  std::vector<text::Encoding> inputs;
  Clock::time_point enqueued, deadline;
  // Per input: classification the label probabilities; regression {score}; token classification
  // the arg-max label of each token.
  std::vector<std::vector<float>> outputs;
  Status status;
  std::promise<void> done;
};

class Batcher {
 public:
  Batcher(engine::BitFitModel& model, int32_t pad_id, BatcherOptions options, ServeMetrics* metrics);
  ~Batcher();  // answers what is queued with kUnavailable and joins the thread
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues a request; kResourceExhausted when its inputs would pass max_queue_rows.
  Status submit(std::shared_ptr<Work> work);
  // The slot's parameter row becomes `row` before the next batch runs.
  void install(int slot, std::vector<float> row);
  // Every bias at its pretrained value and a zero head: what a slot's row starts from.
  std::vector<float> pristine_row() const;

 private:
  void run();
  void run_batch(std::vector<std::shared_ptr<Work>>& batch);
  void apply_installs(std::vector<std::pair<int, std::vector<float>>>& installs);

  engine::BitFitModel& model_;
  engine::BatchBuilder builder_;
  BatcherOptions options_;
  ServeMetrics* metrics_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Work>> queue_;
  int64_t queued_rows_ = 0;
  std::vector<std::pair<int, std::vector<float>>> installs_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace bitfleet::serve
