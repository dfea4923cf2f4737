#include "worker/engine/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "worker/engine/adamw.h"
#include "worker/engine/trainer_internal.h"
#include "worker/text/sampler.h"

namespace bitfleet::engine {

using common::TaskType;
using internal::compute_stream;
using internal::labelled_tokens;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Trainer::Trainer(BitFitModel& model, comm::Communicator& comm, int32_t pad_id, TrainerOptions options)
    : model_(model),
      comm_(comm),
      options_(options),
      builder_(model.backbone().config(), model.backbone().device(), pad_id),
      slots_(model.slots()) {
  adam_m_ = at::zeros_like(model_.params());
  adam_v_ = at::zeros_like(model_.params());
  mask_ = at::zeros_like(model_.params());
  best_params_ = at::zeros_like(model_.params());
}

Status Trainer::check(const common::JobRequest& r) const {
  const auto& layout = model_.layout();
  const auto& config = model_.backbone().config();
  if (r.task.num_outputs() > layout.max_labels()) {
    return invalid_argument("task.labels: " + std::to_string(r.task.num_outputs()) + " labels, but this worker's heads hold at most " +
                                std::to_string(layout.max_labels()) + " (--max-labels)",
                            "task.labels");
  }
  BITFLEET_RETURN_IF_ERROR(model_.supports(r.task.type));
  if (r.hyperparameters.max_seq_len > config.max_sequence_length()) {
    return invalid_argument("hyperparameters.max_seq_len: " + std::to_string(r.hyperparameters.max_seq_len) +
                                " is longer than the backbone's " + std::to_string(config.max_sequence_length()) +
                                " positions",
                            "hyperparameters.max_seq_len");
  }
  if (const auto& d = r.hyperparameters.dtype; d && *d != model_.backbone().precision()) {
    return invalid_argument("hyperparameters.dtype: the job requires " + std::string(common::dtype_name(*d)) +
                                ", but this worker computes in " +
                                std::string(common::dtype_name(model_.backbone().precision())) + " (--dtype)",
                            "hyperparameters.dtype");
  }
  if ((r.hyperparameters.bias_terms & ~layout.table_kinds()).any()) {
    return invalid_argument("hyperparameters.bias_terms: this worker keeps per-task rows only for " +
                                common::bias_terms_name(layout.table_kinds()),
                            "hyperparameters.bias_terms");
  }
  return Status::ok();
}

std::vector<int> Trainer::free_slots() const {
  std::vector<int> free;
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (!slots_[s].active) free.push_back(static_cast<int>(s));
  }
  return free;
}

int Trainer::active_count() const {
  return static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.active; }));
}

void Trainer::start_epoch(Slot& s) {
  const auto& h = s.job.request.hyperparameters;
  std::vector<int32_t> lengths;
  if (options_.group_by_length) lengths = s.job.train->lengths();
  s.order = text::epoch_order(static_cast<int64_t>(s.job.train->examples.size()), h.seed, s.progress.epoch, h.batch_size,
                              lengths);
}

void Trainer::build_mask(int slot) {
  at::NoGradGuard no_grad;
  const auto& layout = model_.layout();
  const auto& task = slots_[slot].job.request.task;
  const auto kinds = slots_[slot].job.request.hyperparameters.bias_terms;
  at::Tensor row = at::zeros({layout.row_size()}, at::kFloat);
  for (const auto& seg : layout.segments()) {
    if (seg.bias_kind) {
      if (kinds.test(static_cast<int>(*seg.bias_kind)) && layout.task_uses(task.type, *seg.bias_kind)) {
        row.narrow(0, seg.offset, seg.numel()).fill_(1.0f);
      }
    } else if (layout.task_uses(task.type, *seg.head_part)) {
      int64_t numel = 1;
      for (auto d : layout.task_shape(seg, task.num_outputs())) numel *= d;
      row.narrow(0, seg.offset, numel).fill_(1.0f);
    }
  }
  mask_[slot].copy_(row);
}

std::vector<std::pair<std::string, at::Tensor>> Trainer::trained_tensors(int slot, const at::Tensor& source) const {
  const auto& r = slots_[slot].job.request;
  return model_.export_slot(source, slot, r.task.type, r.task.num_outputs(), r.hyperparameters.bias_terms);
}

Status Trainer::admit(int slot, TrainJob job, const std::string* checkpoint) {
  if (slot < 0 || slot >= static_cast<int>(slots_.size()) || slots_[slot].active) {
    return internal_error("slot " + std::to_string(slot) + " is not free");
  }
  BITFLEET_RETURN_IF_ERROR(check(job.request));
  if (!job.train || job.train->examples.empty()) return invalid_argument("train_file: has no examples", "train_file");
  Slot& s = slots_[slot];
  const auto& h = job.request.hyperparameters;
  s.job = std::move(job);
  s.steps_per_epoch = text::batches_per_epoch(static_cast<int64_t>(s.job.train->examples.size()), h.batch_size);
  s.progress = {};
  s.best.reset();
  s.best_score = 0.0;
  s.since_best = 0;
  s.progress.total_steps = s.steps_per_epoch * h.epochs;
  if (h.max_steps > 0) s.progress.total_steps = std::min(s.progress.total_steps, h.max_steps);
  const auto& task = s.job.request.task;
  at::NoGradGuard no_grad;
  model_.reset_slot(slot, task.type, task.num_outputs(), h.seed);
  adam_m_[slot].zero_();
  adam_v_[slot].zero_();
  build_mask(slot);
  if (checkpoint != nullptr) BITFLEET_RETURN_IF_ERROR(restore(slot, *checkpoint));
  start_epoch(s);
  s.active = true;
  return Status::ok();
}

void Trainer::release(int slot) {
  Slot& s = slots_[slot];
  s.active = false;
  s.job = {};
  s.order.clear();
  at::NoGradGuard no_grad;
  mask_[slot].zero_();
}

// Hugging Face's linear schedule: warm-up from 0 over ceil(ratio * total) steps, then linear decay
// to 0; update k (1-based) uses the value at k - 1.
double Trainer::learning_rate(const Slot& s) const {
  const auto& h = s.job.request.hyperparameters;
  const int64_t total = s.progress.total_steps, t = s.progress.step;
  const int64_t warmup = static_cast<int64_t>(std::ceil(h.warmup_ratio * static_cast<double>(total)));
  double factor;
  if (t < warmup) {
    factor = static_cast<double>(t) / static_cast<double>(std::max<int64_t>(1, warmup));
  } else {
    factor = std::max(0.0, static_cast<double>(total - t) / static_cast<double>(std::max<int64_t>(1, total - warmup)));
  }
  return h.learning_rate * factor;
}

int64_t Trainer::allreduce_bytes_per_step() const {
  int64_t highest = -1;
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (slots_[s].active) highest = static_cast<int64_t>(s);
  }
  return (highest + 1) * model_.layout().row_size() * 4;
}

// The step, llm.c-style: this rank's share of the batch → forward/backward → one all-reduce →
// AdamW over the flat buffer → positions advance.
Result<StepReport> Trainer::step() {
  const auto start = std::chrono::steady_clock::now();
  StepReport report;
  std::vector<int> active;
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (slots_[s].active) active.push_back(static_cast<int>(s));
  }
  if (active.empty()) return report;
  // 1. This rank's share of every active job's next global batch.
  std::vector<SegmentInput> inputs = rank_share(active, report);
  // 2. Forward and backward, each pass's losses into their rows' reserved floats.
  model_.grads().zero_();
  forward_backward(std::move(inputs));
  // 3. ONE all-reduce of rows [0, highest active slot] of the flat gradient buffer.
  at::NoGradGuard no_grad;
  const int64_t prefix_rows = active.back() + 1, row = model_.layout().row_size();
  const auto reduce_start = std::chrono::steady_clock::now();
  BITFLEET_RETURN_IF_ERROR(comm_.all_reduce_sum(model_.grads().data_ptr<float>(), static_cast<size_t>(prefix_rows * row),
                                                compute_stream(model_.grads())));
  report.allreduce_seconds = seconds_since(reduce_start);
  report.allreduce_bytes = prefix_rows * row * 4;
  // 4. AdamW for the slots whose loss and gradient are finite; the others fail alone.
  update(active, report);
  advance(report);
  report.seconds = seconds_since(start);
  return report;
}

std::vector<SegmentInput> Trainer::rank_share(const std::vector<int>& active, StepReport& report) const {
  const int rank = comm_.rank(), ranks = comm_.size();
  std::vector<SegmentInput> inputs;
  for (int slot : active) {
    const Slot& s = slots_[slot];
    const auto& data = s.job.train->examples;
    const auto& task = s.job.request.task;
    auto batch = text::batch_of(s.order, s.progress.batch_index, s.job.request.hyperparameters.batch_size);
    const int64_t len = static_cast<int64_t>(batch.size());
    // Per-example losses are scaled by 1 / the global batch (1 / its labelled tokens for token
    // tasks), so that the SUM all-reduce gives the global mean.
    double scale = 1.0 / static_cast<double>(len);
    if (task.type == TaskType::kTokenClassification) {
      int64_t labelled = 0;
      for (int32_t i : batch) labelled += labelled_tokens(data[i]);
      scale = 1.0 / static_cast<double>(std::max<int64_t>(1, labelled));
    }
    report.examples += len;
    for (int32_t i : batch) report.tokens += static_cast<int64_t>(data[i].ids.size());
    const int64_t begin = len * rank / ranks, end = len * (rank + 1) / ranks;
    if (end == begin) continue;
    SegmentInput in{.slot = slot, .task = task.type, .num_outputs = task.num_outputs(), .loss_scale = scale};
    for (int64_t k = begin; k < end; ++k) {
      const auto& e = data[batch[k]];
      in.examples.push_back({e.ids, e.type_ids, e.label, e.target, e.token_labels});
    }
    inputs.push_back(std::move(in));
  }
  return inputs;
}

void Trainer::forward_backward(std::vector<SegmentInput> inputs) {
  std::vector<int64_t> segment_rows;
  for (const auto& in : inputs) {
    int64_t longest = 0;
    for (const auto& e : in.examples) longest = std::max<int64_t>(longest, static_cast<int64_t>(e.ids.size()));
    segment_rows.push_back(longest * static_cast<int64_t>(in.examples.size()));
  }
  at::Tensor loss_floats = model_.grads().select(1, model_.layout().loss_offset());
  for (size_t first = 0; first < inputs.size();) {
    // The next pass: whole segments while they fit in max_rows_per_pass (at least one).
    size_t last = first + 1;
    int64_t rows = segment_rows[first];
    while (last < inputs.size() &&
           (options_.max_rows_per_pass == 0 || rows + segment_rows[last] <= options_.max_rows_per_pass)) {
      rows += segment_rows[last++];
    }
    std::vector<SegmentInput> pass(std::make_move_iterator(inputs.begin() + static_cast<std::ptrdiff_t>(first)),
                                   std::make_move_iterator(inputs.begin() + static_cast<std::ptrdiff_t>(last)));
    const Batch batch = builder_.build(pass);
    ForwardOutput out = model_.forward(batch);
    model_.backward(out);
    at::NoGradGuard no_grad;  // the pass's losses into their rows' loss floats, in one copy
    std::vector<at::Tensor> losses;
    std::vector<int64_t> loss_rows;
    for (size_t i = 0; i < pass.size(); ++i) {
      losses.push_back(out.losses[i].detach().to(at::kFloat));
      loss_rows.push_back(pass[i].slot);
    }
    loss_floats.index_copy_(0, upload(loss_rows, loss_floats.device()), at::stack(losses));
    first = last;
  }
}

void Trainer::update(const std::vector<int>& active, StepReport& report) {
  const auto& layout = model_.layout();
  at::Tensor grads = model_.grads();
  at::Tensor idx = upload(std::vector<int64_t>(active.begin(), active.end()), grads.device());
  at::Tensor g = grads.index_select(0, idx) * mask_.index_select(0, idx);
  at::Tensor summary = at::stack({g.norm(2, {1}), grads.index_select(0, idx).select(1, layout.loss_offset())}, 1).to(at::kCPU);
  AdamWRows rows;
  std::vector<int64_t> rows_in_active;
  for (size_t a = 0; a < active.size(); ++a) {
    Slot& s = slots_[active[a]];
    const double norm = summary[a][0].item<double>(), loss = summary[a][1].item<double>();
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      report.failed.emplace_back(active[a], std::string("non-finite ") + (std::isfinite(loss) ? "gradient" : "loss") +
                                                " at step " + std::to_string(s.progress.step + 1));
      continue;
    }
    const auto& h = s.job.request.hyperparameters;
    const double rate = learning_rate(s);
    rows.add(active[a], rate, h.weight_decay, s.progress.step + 1, clip_scale(norm, h.max_grad_norm));
    rows_in_active.push_back(static_cast<int64_t>(a));
    report.slots.push_back({active[a], s.job.id, s.progress, loss, rate});
  }
  if (rows.empty()) return;
  at::Tensor updating = g.index_select(0, upload(rows_in_active, g.device()));
  adamw_update(rows, updating, mask_, model_.params(), adam_m_, adam_v_);
}

void Trainer::advance(StepReport& report) {
  for (auto& r : report.slots) {
    Slot& s = slots_[r.slot];
    ++s.progress.step;
    if (++s.progress.batch_index == s.steps_per_epoch) {
      ++s.progress.epoch;
      s.progress.batch_index = 0;
      if (s.progress.step < s.progress.total_steps) start_epoch(s);
    }
    r.progress = s.progress;
    const bool last = s.progress.step >= s.progress.total_steps;
    const int64_t every = s.job.request.hyperparameters.eval_every_steps;
    const bool due = last || (every > 0 ? s.progress.step % every == 0 : s.progress.batch_index == 0);
    if (s.job.validation && due) report.evaluate.push_back(r.slot);
    if (last) report.finished.push_back(r.slot);
  }
}

}  // namespace bitfleet::engine
