// Trainer::evaluate: a slot's validation metrics, a collective over the group's ranks.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "worker/engine/trainer.h"
#include "worker/engine/trainer_internal.h"

namespace bitfleet::engine {

using common::TaskType;
using internal::compute_stream;
using internal::labelled_tokens;

namespace {

// The metrics of the gathered predictions (one per example, or per labelled token) against gold.
Metrics score(const common::TaskSpec& task, const std::vector<text::Example>& examples, const float* p, int64_t count) {
  if (task.type == TaskType::kRegression) {
    std::vector<double> pred(p, p + count), gold;
    for (const auto& e : examples) gold.push_back(e.target);
    return regression_metrics(pred, gold);
  }
  std::vector<int64_t> pred, gold;
  for (int64_t i = 0; i < count; ++i) pred.push_back(static_cast<int64_t>(std::lround(p[i])));
  if (task.type == TaskType::kClassification) {
    for (const auto& e : examples) gold.push_back(e.label);
    return classification_metrics(pred, gold, task.num_outputs());
  }
  for (const auto& e : examples) {
    for (int32_t l : e.token_labels) {
      if (l != -100) gold.push_back(l);
    }
  }
  return token_metrics(pred, gold);
}

}  // namespace

// A validation chunk's predictions into their places: examples order[chunk, stop) were run; their
// predictions go to `offset` (one per example, or one per labelled token).
void Trainer::predict_chunk(int slot, const std::vector<int32_t>& order, int64_t chunk, int64_t stop,
                            const std::vector<int64_t>& offset, at::Tensor& predictions) {
  const Slot& s = slots_[slot];
  const auto& examples = s.job.validation->examples;
  const auto& task = s.job.request.task;
  SegmentInput in{.slot = slot, .task = task.type, .num_outputs = task.num_outputs(), .with_labels = false};
  for (int64_t k = chunk; k < stop; ++k) in.examples.push_back({examples[order[k]].ids, examples[order[k]].type_ids});
  const Batch batch = builder_.build({in});
  at::Tensor logits = model_.forward(batch).logits[0];
  std::vector<int64_t> targets, sources;  // prediction index <- flattened output index
  at::Tensor values;
  if (task.type != TaskType::kTokenClassification) {
    values = task.type == TaskType::kRegression ? logits.to(at::kFloat) : logits.argmax(-1).to(at::kFloat);
    for (int64_t k = chunk; k < stop; ++k) {
      sources.push_back(k - chunk);
      targets.push_back(offset[order[k]]);
    }
  } else {
    values = logits.argmax(-1).to(at::kFloat).reshape(-1);  // [examples * seq_len]
    const int64_t seq_len = batch.segments[0].seq_len;
    for (int64_t k = chunk; k < stop; ++k) {
      const auto& e = examples[order[k]];
      int64_t next = offset[order[k]];
      for (size_t t = 0; t < e.token_labels.size(); ++t) {
        if (e.token_labels[t] == -100) continue;
        sources.push_back((k - chunk) * seq_len + static_cast<int64_t>(t));
        targets.push_back(next++);
      }
    }
  }
  if (sources.empty()) return;
  const auto device = predictions.device();
  predictions.index_copy_(0, upload(targets, device), values.index_select(0, upload(sources, device)));
}

Result<Metrics> Trainer::evaluate(int slot) {
  const Slot& s = slots_[slot];
  if (!s.job.validation) return Metrics{};
  const auto& examples = s.job.validation->examples;
  const auto& task = s.job.request.task;
  const int64_t n = static_cast<int64_t>(examples.size());
  // Prediction slots: one per example, or one per labelled token.
  std::vector<int64_t> offset(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    offset[i + 1] = offset[i] + (task.type == TaskType::kTokenClassification ? labelled_tokens(examples[i]) : 1);
  }
  // Longest first, so evaluation batches pad little; this rank takes a contiguous share.
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return examples[a].ids.size() > examples[b].ids.size(); });
  const int64_t begin = n * comm_.rank() / comm_.size(), end = n * (comm_.rank() + 1) / comm_.size();

  at::NoGradGuard no_grad;
  at::Tensor predictions = at::zeros({std::max<int64_t>(1, offset[n])},
                                     at::TensorOptions().dtype(at::kFloat).device(model_.params().device()));
  for (int64_t chunk = begin; chunk < end; chunk += options_.eval_batch_size) {
    predict_chunk(slot, order, chunk, std::min(end, chunk + options_.eval_batch_size), offset, predictions);
  }
  // Each rank filled its share and left zeros elsewhere: the sum is every prediction.
  BITFLEET_RETURN_IF_ERROR(comm_.all_reduce_sum(predictions.data_ptr<float>(), static_cast<size_t>(predictions.numel()),
                                                compute_stream(predictions)));
  at::Tensor host = predictions.to(at::kCPU);
  return score(task, examples, host.data_ptr<float>(), offset[n]);
}

}  // namespace bitfleet::engine
