#include "serve/batcher.h"

#include <map>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "common/log.h"
#include "serve/serve_metrics.h"

namespace bitfleet::serve {

using common::TaskType;

Batcher::Batcher(engine::BitFitModel& model, int32_t pad_id, BatcherOptions options, ServeMetrics* metrics)
    : model_(model),
      builder_(model.backbone().config(), model.params().device(), pad_id),
      options_(options),
      metrics_(metrics),
      thread_([this] { run(); }) {}

Batcher::~Batcher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  for (auto& w : queue_) {
    w->status = unavailable("the server is shutting down");
    w->done.set_value();
  }
}

Status Batcher::submit(std::shared_ptr<Work> work) {
  const auto rows = static_cast<int64_t>(work->inputs.size());
  {
    std::lock_guard lock(mu_);
    if (stop_) return unavailable("the server is shutting down");
    if (queued_rows_ + rows > options_.max_queue_rows) {
      return Status(StatusCode::kResourceExhausted, "the queue holds " + std::to_string(queued_rows_) +
                                                        " inputs, its limit is " +
                                                        std::to_string(options_.max_queue_rows));
    }
    queued_rows_ += rows;
    queue_.push_back(std::move(work));
    if (metrics_) metrics_->queue_rows(queued_rows_);
  }
  wake_.notify_one();
  return Status::ok();
}

void Batcher::install(int slot, std::vector<float> row) {
  {
    std::lock_guard lock(mu_);
    installs_.emplace_back(slot, std::move(row));
  }
  wake_.notify_one();
}

std::vector<float> Batcher::pristine_row() const {
  const auto& layout = model_.layout();
  std::vector<float> row(static_cast<size_t>(layout.row_size()), 0.0f);
  for (const auto& seg : layout.segments()) {
    if (!seg.bias_kind) continue;
    at::Tensor b = model_.backbone().pretrained_bias(*seg.bias_kind, seg.layer).contiguous();
    std::copy_n(b.data_ptr<float>(), b.numel(), row.begin() + seg.offset);
  }
  return row;
}

void Batcher::apply_installs(std::vector<std::pair<int, std::vector<float>>>& installs) {
  at::NoGradGuard no_grad;
  for (auto& [slot, row] : installs) {
    at::Tensor host = at::from_blob(row.data(), {static_cast<int64_t>(row.size())}, at::kFloat);
    model_.params()[slot].copy_(host);
  }
  installs.clear();
}

void Batcher::run() {
  std::vector<std::pair<int, std::vector<float>>> installs;
  std::vector<std::shared_ptr<Work>> batch;
  while (true) {
    {
      std::unique_lock lock(mu_);
      // Wait for work (or installs), then until the batch is full or its oldest request is due.
      wake_.wait(lock, [&] { return stop_ || !queue_.empty() || !installs_.empty(); });
      while (!stop_ && !queue_.empty() && queued_rows_ < options_.max_batch_rows) {
        const auto due = queue_.front()->enqueued + options_.max_wait;
        if (Work::Clock::now() >= due) break;
        wake_.wait_until(lock, due);
      }
      if (stop_) return;
      installs.swap(installs_);
      int64_t rows = 0;
      while (!queue_.empty() && (batch.empty() || rows + static_cast<int64_t>(queue_.front()->inputs.size()) <=
                                                      options_.max_batch_rows)) {
        rows += static_cast<int64_t>(queue_.front()->inputs.size());
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      queued_rows_ -= rows;
      if (metrics_) metrics_->queue_rows(queued_rows_);
    }
    apply_installs(installs);
    if (!batch.empty()) run_batch(batch);
    batch.clear();
  }
}

// One forward pass over the batch: a segment per task (requests of one task merged, in order).
void Batcher::run_batch(std::vector<std::shared_ptr<Work>>& batch) {
  const auto start = Work::Clock::now();
  std::vector<engine::SegmentInput> segments;
  std::map<int, size_t> segment_of_slot;
  // Where each work's inputs are: its segment and first example there.
  std::vector<std::pair<size_t, size_t>> place(batch.size());
  int64_t rows = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    Work& w = *batch[i];
    if (start >= w.deadline) {
      w.status = Status(StatusCode::kDeadlineExceeded, "the request's deadline passed while it was queued");
      if (metrics_) metrics_->rejected("deadline");
      continue;
    }
    auto [it, fresh] = segment_of_slot.emplace(w.slot, segments.size());
    if (fresh) {
      segments.push_back({.slot = w.slot, .task = w.task, .num_outputs = w.num_outputs, .with_labels = false});
    }
    engine::SegmentInput& seg = segments[it->second];
    place[i] = {it->second, seg.examples.size()};
    for (const auto& e : w.inputs) seg.examples.push_back({.ids = e.ids, .type_ids = e.type_ids});
    rows += static_cast<int64_t>(w.inputs.size());
  }
  try {
    if (!segments.empty()) {
      at::NoGradGuard no_grad;
      const engine::Batch b = builder_.build(segments);
      std::vector<at::Tensor> logits = model_.forward(b).logits;
      std::vector<at::Tensor> host(segments.size());
      for (size_t s = 0; s < segments.size(); ++s) {
        at::Tensor l = logits[s].to(at::kFloat);
        if (segments[s].task == TaskType::kClassification) l = at::softmax(l, -1);
        if (segments[s].task == TaskType::kTokenClassification) l = l.argmax(-1).to(at::kFloat);
        host[s] = l.to(at::kCPU).contiguous();
      }
      for (size_t i = 0; i < batch.size(); ++i) {
        Work& w = *batch[i];
        if (!w.status.is_ok()) continue;
        const auto [s, first] = place[i];
        const at::Tensor& out = host[s];
        const int64_t width = out.dim() == 1 ? 1 : out.size(1);  // labels, or the segment's seq_len
        const float* data = out.data_ptr<float>();
        w.outputs.resize(w.inputs.size());
        for (size_t k = 0; k < w.inputs.size(); ++k) {
          const float* row = data + static_cast<int64_t>(first + k) * width;
          const int64_t n = w.task == TaskType::kTokenClassification
                                ? static_cast<int64_t>(w.inputs[k].ids.size()) : width;
          w.outputs[k].assign(row, row + n);
        }
      }
    }
  } catch (const std::exception& e) {
    BITFLEET_LOG(kError) << "a forward pass of " << rows << " inputs failed: " << e.what();
    for (auto& w : batch) {
      if (w->status.is_ok()) w->status = internal_error(std::string("the forward pass failed: ") + e.what());
    }
  }
  if (metrics_ && rows > 0) {
    metrics_->batch(rows, static_cast<int64_t>(segments.size()),
                    std::chrono::duration<double>(Work::Clock::now() - start).count());
  }
  for (auto& w : batch) w->done.set_value();
}

}  // namespace bitfleet::serve
