#include "worker/engine/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/grad_mode.h>
#if BITFLEET_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include "common/json_fields.h"
#include "common/safetensors.h"
#include "worker/text/sampler.h"

namespace bitfleet::engine {

using common::TaskType;

namespace {

constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEpsilon = 1e-8;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void* compute_stream(const at::Tensor& on) {
#if BITFLEET_WITH_CUDA
  if (on.is_cuda()) return c10::cuda::getCurrentCUDAStream(on.device().index()).stream();
#endif
  (void)on;
  return nullptr;
}

// A host vector of doubles as a [n, 1] float tensor on `like`'s device: per-row scalars.
at::Tensor column(const std::vector<double>& values, const at::Tensor& like) {
  const std::vector<float> floats(values.begin(), values.end());
  return upload(floats, like.device()).view({-1, 1});
}

int64_t labelled_tokens(const text::Example& e) {
  return std::count_if(e.token_labels.begin(), e.token_labels.end(), [](int32_t l) { return l != -100; });
}

void add_tensor(safetensors::Writer& w, const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU).to(at::kFloat).contiguous();
  w.add(name, safetensors::DType::kF32, c.sizes().vec(),
        {reinterpret_cast<const std::byte*>(c.data_ptr<float>()), static_cast<size_t>(c.numel()) * 4});
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
  if ((r.hyperparameters.bias_terms & ~layout.table_kinds()).any()) {
    return invalid_argument("hyperparameters.bias_terms: this worker keeps per-task rows only for " +
                                common::bias_terms_name(layout.table_kinds()),
                            "hyperparameters.bias_terms");
  }
  return Status::ok();
}

std::optional<int> Trainer::free_slot() const {
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (!slots_[s].active) return static_cast<int>(s);
  }
  return std::nullopt;
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
  s.progress.total_steps = s.steps_per_epoch * h.epochs;
  if (h.max_steps > 0) s.progress.total_steps = std::min(s.progress.total_steps, h.max_steps);
  const auto& task = s.job.request.task;
  at::NoGradGuard no_grad;
  model_.reset_slot(slot, task.type, task.num_outputs(), h.seed);
  adam_m_[slot].zero_();
  adam_v_[slot].zero_();
  build_mask(slot);
  if (checkpoint != nullptr) {
    auto file = safetensors::File::from_bytes(*checkpoint, "checkpoint of " + s.job.id);
    if (!file.is_ok()) return file.status();
    const auto& meta = file->metadata();
    auto number = [&](const char* key) -> Result<int64_t> {
      auto it = meta.find(key);
      if (it == meta.end()) return data_loss("checkpoint of " + s.job.id + " has no " + key);
      auto value = common::parse_int64(it->second, "checkpoint of " + s.job.id + ": " + key);
      if (!value.is_ok()) return data_loss(value.status().message());
      return value;
    };
    if (meta.count("request")) {
      auto stored = common::parse_json(meta.at("request"), "checkpoint of " + s.job.id + ": request");
      if (!stored.is_ok() || *stored != common::to_json(s.job.request)) {
        return invalid_argument("checkpoint of " + s.job.id + " was made for a different job request");
      }
    }
    BITFLEET_ASSIGN_OR_RETURN(s.progress.step, number("step"));
    BITFLEET_ASSIGN_OR_RETURN(s.progress.epoch, number("epoch"));
    BITFLEET_ASSIGN_OR_RETURN(s.progress.batch_index, number("batch_index"));
    std::map<std::string, std::vector<std::pair<std::string, at::Tensor>>> groups;
    for (const auto& t : file->tensors()) {
      auto slash = t.name.find('/');
      if (slash == std::string::npos || t.dtype != safetensors::DType::kF32) continue;
      at::Tensor value = at::from_blob(const_cast<std::byte*>(t.data.data()), t.shape, at::kFloat).clone();
      groups[t.name.substr(0, slash)].emplace_back(t.name.substr(slash + 1), value);
    }
    const int64_t n = task.num_outputs();
    for (auto [prefix, buffer] : {std::pair{"param", model_.params()}, {"adam_m", adam_m_}, {"adam_v", adam_v_}}) {
      BITFLEET_ASSIGN_OR_RETURN(int copied, model_.import_slot(buffer, slot, task.type, n, groups[prefix]));
      if (copied != static_cast<int>(trained_tensors(slot, buffer).size())) {
        return data_loss("checkpoint of " + s.job.id + " lacks some of the job's " + prefix + " tensors");
      }
    }
  }
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

Result<StepReport> Trainer::step() {
  const auto start = std::chrono::steady_clock::now();
  StepReport report;
  std::vector<int> active;
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (slots_[s].active) active.push_back(static_cast<int>(s));
  }
  if (active.empty()) return report;
  const int rank = comm_.rank(), ranks = comm_.size();

  // 1. This rank's share of every active job's next global batch.
  std::vector<SegmentInput> inputs;
  std::vector<int> forward_slots;
  for (int slot : active) {
    const Slot& s = slots_[slot];
    const auto& data = s.job.train->examples;
    const auto& task = s.job.request.task;
    auto batch = text::batch_of(s.order, s.progress.batch_index, s.job.request.hyperparameters.batch_size);
    const int64_t len = static_cast<int64_t>(batch.size());
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
    SegmentInput in;
    in.slot = slot;
    in.task = task.type;
    in.num_outputs = task.num_outputs();
    in.loss_scale = scale;
    for (int64_t k = begin; k < end; ++k) {
      const auto& e = data[batch[k]];
      in.examples.push_back({e.ids, e.type_ids, e.label, e.target, e.token_labels});
    }
    inputs.push_back(std::move(in));
    forward_slots.push_back(slot);
  }

  // 2. Forward and backward; 3. losses into the rows' reserved floats, and one all-reduce.
  const auto& layout = model_.layout();
  at::Tensor grads = model_.grads();
  grads.zero_();
  std::vector<int64_t> segment_rows;
  for (const auto& in : inputs) {
    int64_t longest = 0;
    for (const auto& e : in.examples) longest = std::max<int64_t>(longest, static_cast<int64_t>(e.ids.size()));
    segment_rows.push_back(longest * static_cast<int64_t>(in.examples.size()));
  }
  for (size_t first = 0; first < inputs.size();) {
    // The next pass: whole segments while they fit in max_rows_per_pass (at least one).
    size_t last = first + 1;
    int64_t rows = segment_rows[first];
    while (last < inputs.size() &&
           (options_.max_rows_per_pass == 0 || rows + segment_rows[last] <= options_.max_rows_per_pass)) {
      rows += segment_rows[last++];
    }
    std::vector<SegmentInput> pass(std::make_move_iterator(inputs.begin() + first),
                                   std::make_move_iterator(inputs.begin() + last));
    Batch batch = builder_.build(pass);
    ForwardOutput out = model_.forward(batch);
    model_.backward(out);
    at::NoGradGuard no_grad;  // the pass's losses into their rows' loss floats, in one copy
    std::vector<at::Tensor> losses;
    for (const auto& loss : out.losses) losses.push_back(loss.detach().to(at::kFloat));
    const std::vector<int64_t> loss_rows(forward_slots.begin() + static_cast<std::ptrdiff_t>(first),
                                         forward_slots.begin() + static_cast<std::ptrdiff_t>(last));
    grads.select(1, layout.loss_offset()).index_copy_(0, upload(loss_rows, grads.device()), at::stack(losses));
    first = last;
  }
  at::NoGradGuard no_grad;
  const int64_t prefix_rows = active.back() + 1;
  const auto reduce_start = std::chrono::steady_clock::now();
  BITFLEET_RETURN_IF_ERROR(comm_.all_reduce_sum(grads.data_ptr<float>(), static_cast<size_t>(prefix_rows * layout.row_size()),
                                                compute_stream(grads)));
  report.allreduce_seconds = seconds_since(reduce_start);
  report.allreduce_bytes = prefix_rows * layout.row_size() * 4;

  // 4. Per slot: mask, norm, finiteness; then clipping and AdamW for the slots that may update.
  at::Tensor idx = upload(std::vector<int64_t>(active.begin(), active.end()), grads.device());
  at::Tensor g = grads.index_select(0, idx) * mask_.index_select(0, idx);
  at::Tensor summary = at::stack({g.norm(2, {1}), grads.index_select(0, idx).select(1, layout.loss_offset())}, 1).to(at::kCPU);
  std::vector<int64_t> update_rows;
  std::vector<double> lr, decay, step_size, bc2_sqrt, clip;
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
    const int64_t t = s.progress.step + 1;
    update_rows.push_back(static_cast<int64_t>(a));
    lr.push_back(rate);
    decay.push_back(1.0 - rate * h.weight_decay);
    step_size.push_back(rate / (1.0 - std::pow(kBeta1, static_cast<double>(t))));
    bc2_sqrt.push_back(std::sqrt(1.0 - std::pow(kBeta2, static_cast<double>(t))));
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6), never up.
    clip.push_back(h.max_grad_norm > 0 ? std::min(1.0, h.max_grad_norm / (norm + 1e-6)) : 1.0);
    report.slots.push_back({active[a], s.job.id, s.progress, loss, rate});
  }
  if (!update_rows.empty()) {
    // AdamW as torch.optim.AdamW computes it, for all updating slots at once; rows that a job
    // does not train have zero gradient and mask 0, so they never move.
    at::Tensor rows_in_active = upload(update_rows, grads.device());
    at::Tensor slots_idx = idx.index_select(0, rows_in_active);
    at::Tensor mask = mask_.index_select(0, slots_idx);
    at::Tensor grad = g.index_select(0, rows_in_active).mul_(column(clip, g));
    at::Tensor p = model_.params().index_select(0, slots_idx);
    at::Tensor m = adam_m_.index_select(0, slots_idx);
    at::Tensor v = adam_v_.index_select(0, slots_idx);
    at::Tensor keep = at::ones_like(mask).sub_(mask).add_(mask.mul(column(decay, mask)));  // 1 - lr*wd where trained
    p.mul_(keep);
    m.lerp_(grad, 1.0 - kBeta1);
    v.mul_(kBeta2).addcmul_(grad, grad, 1.0 - kBeta2);
    at::Tensor denom = v.sqrt().div_(column(bc2_sqrt, v)).add_(kEpsilon);
    p.add_(m.mul(column(step_size, m).neg_()).div_(denom));  // addcdiv's (value * m) / denom
    model_.params().index_copy_(0, slots_idx, p);
    adam_m_.index_copy_(0, slots_idx, m);
    adam_v_.index_copy_(0, slots_idx, v);
  }
  for (auto& r : report.slots) {
    Slot& s = slots_[r.slot];
    ++s.progress.step;
    if (++s.progress.batch_index == s.steps_per_epoch) {
      ++s.progress.epoch;
      s.progress.batch_index = 0;
      if (s.progress.step < s.progress.total_steps) start_epoch(s);
    }
    r.progress = s.progress;
    if (s.progress.step >= s.progress.total_steps) report.finished.push_back(r.slot);
  }
  report.seconds = seconds_since(start);
  return report;
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

std::string Trainer::checkpoint(int slot) const {
  const Slot& s = slots_[slot];
  safetensors::Writer w;
  for (auto [prefix, buffer] : {std::pair{"param", model_.params()}, {"adam_m", adam_m_}, {"adam_v", adam_v_}}) {
    for (const auto& [name, t] : trained_tensors(slot, buffer)) add_tensor(w, std::string(prefix) + "/" + name, t);
  }
  w.set_metadata("bitfleet_checkpoint", "1");
  w.set_metadata("job_id", s.job.id);
  w.set_metadata("step", std::to_string(s.progress.step));
  w.set_metadata("total_steps", std::to_string(s.progress.total_steps));
  w.set_metadata("epoch", std::to_string(s.progress.epoch));
  w.set_metadata("batch_index", std::to_string(s.progress.batch_index));
  w.set_metadata("request", common::to_json(s.job.request).dump());
  return w.to_bytes();
}

std::string Trainer::artifact(int slot, const std::map<std::string, std::string>& metadata) const {
  const Slot& s = slots_[slot];
  const auto& r = s.job.request;
  safetensors::Writer w;
  for (const auto& [name, t] : trained_tensors(slot, model_.params())) add_tensor(w, name, t);
  w.set_metadata("format", "pt");
  w.set_metadata("job_id", s.job.id);
  w.set_metadata("task", common::to_json(r.task).dump());
  w.set_metadata("labels", nlohmann::json(r.task.labels).dump());
  w.set_metadata("bias_terms", common::bias_terms_name(r.hyperparameters.bias_terms));
  w.set_metadata("hyperparameters", common::to_json(r.hyperparameters).dump());
  w.set_metadata("steps", std::to_string(s.progress.step));
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  return w.to_bytes();
}

}  // namespace bitfleet::engine
