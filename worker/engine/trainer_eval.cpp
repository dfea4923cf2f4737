// Trainer::evaluate: a slot's validation (or test) metrics, a collective over the group's ranks;
// evaluation during training and the best evaluation's parameters.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
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
void Trainer::predict_chunk(int slot, const text::Dataset& data, const std::vector<int32_t>& order, int64_t chunk,
                            int64_t stop, const std::vector<int64_t>& offset, at::Tensor& predictions) {
  const Slot& s = slots_[slot];
  const auto& examples = data.examples;
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

Result<Metrics> Trainer::evaluate(int slot, Split split) {
  const Slot& s = slots_[slot];
  const auto& data = split == Split::kValidation ? s.job.validation : s.job.test;
  if (!data) return Metrics{};
  const auto& examples = data->examples;
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
    predict_chunk(slot, *data, order, chunk, std::min(end, chunk + options_.eval_batch_size), offset, predictions);
  }
  // Each rank filled its share and left zeros elsewhere: the sum is every prediction.
  BITFLEET_RETURN_IF_ERROR(comm_.all_reduce_sum(predictions.data_ptr<float>(), static_cast<size_t>(predictions.numel()),
                                                compute_stream(predictions)));
  at::Tensor host = predictions.to(at::kCPU);
  return score(task, examples, host.data_ptr<float>(), offset[n]);
}

Result<Evaluation> Trainer::evaluate_for_best(int slot) {
  const auto start = std::chrono::steady_clock::now();
  Slot& s = slots_[slot];
  const auto& h = s.job.request.hyperparameters;
  Evaluation e{.step = s.progress.step, .epoch = s.progress.epoch};
  BITFLEET_ASSIGN_OR_RETURN(e.metrics, evaluate(slot));
  // The score: metric_for_best, higher is better; a metric that is not a number (a constant
  // prediction's correlation) never wins. Ties keep the earlier evaluation.
  const std::string metric = h.metric_for_best.empty() ? common::default_metric_for_best(s.job.request.task.type)
                                                        : h.metric_for_best;
  double score = -std::numeric_limits<double>::infinity();
  for (const auto& [name, value] : e.metrics) {
    if (name == metric && std::isfinite(value)) score = common::metric_minimised(name) ? -value : value;
  }
  e.improved = !s.best || score > s.best_score;
  if (e.improved) {
    s.best = BestEvaluation{e.step, e.epoch, e.metrics};
    s.best_score = score;
    s.since_best = 0;
    at::NoGradGuard no_grad;
    best_params_[slot].copy_(model_.params()[slot]);
  } else {
    ++s.since_best;
  }
  e.stop = h.early_stopping_patience > 0 && s.since_best >= h.early_stopping_patience;
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return e;
}

void Trainer::use_best(int slot) {
  if (!slots_[slot].best) return;
  at::NoGradGuard no_grad;
  model_.params()[slot].copy_(best_params_[slot]);
}

}  // namespace bitfleet::engine
