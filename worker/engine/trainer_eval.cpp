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
  const auto device = model_.params().device();
  at::Tensor predictions = at::zeros({std::max<int64_t>(1, offset[n])}, at::TensorOptions().dtype(at::kFloat).device(device));
  for (int64_t chunk = begin; chunk < end; chunk += options_.eval_batch_size) {
    const int64_t stop = std::min(end, chunk + options_.eval_batch_size);
    SegmentInput in;
    in.slot = slot;
    in.task = task.type;
    in.num_outputs = task.num_outputs();
    in.with_labels = false;
    std::vector<int64_t> targets, sources;  // prediction index <- flattened output index
    for (int64_t k = chunk; k < stop; ++k) {
      const auto& e = examples[order[k]];
      in.examples.push_back({e.ids, e.type_ids});
    }
    Batch batch = builder_.build({in});
    at::Tensor logits = model_.forward(batch).logits[0];
    at::Tensor values;
    if (task.type == TaskType::kRegression) {
      values = logits.to(at::kFloat);
      for (int64_t k = chunk; k < stop; ++k) {
        sources.push_back(k - chunk);
        targets.push_back(offset[order[k]]);
      }
    } else if (task.type == TaskType::kClassification) {
      values = logits.argmax(-1).to(at::kFloat);
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
    if (sources.empty()) continue;
    predictions.index_copy_(0, upload(targets, device), values.index_select(0, upload(sources, device)));
  }
  BITFLEET_RETURN_IF_ERROR(comm_.all_reduce_sum(predictions.data_ptr<float>(), static_cast<size_t>(predictions.numel()),
                                                compute_stream(predictions)));
  at::Tensor host = predictions.to(at::kCPU);
  const float* p = host.data_ptr<float>();
  if (task.type == TaskType::kRegression) {
    std::vector<double> pred(p, p + n), gold;
    for (const auto& e : examples) gold.push_back(e.target);
    return regression_metrics(pred, gold);
  }
  std::vector<int64_t> pred, gold;
  for (int64_t i = 0; i < offset[n]; ++i) pred.push_back(static_cast<int64_t>(std::lround(p[i])));
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

}  // namespace bitfleet::engine
