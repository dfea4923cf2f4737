// The trainer's files: a slot's checkpoint (resumable state) and artifact (its result), and
// restoring a slot from a checkpoint. safetensors bytes with metadata.
#include <cmath>
#include <limits>
#include <map>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/grad_mode.h>

#include "common/json_fields.h"
#include "common/safetensors.h"
#include "worker/engine/trainer.h"

namespace bitfleet::engine {
namespace {

void add_tensor(safetensors::Writer& w, const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU).to(at::kFloat).contiguous();
  w.add(name, safetensors::DType::kF32, c.sizes().vec(),
        {reinterpret_cast<const std::byte*>(c.data_ptr<float>()), static_cast<size_t>(c.numel()) * 4});
}

// Metrics in their order, primary first: [[name, value], ...].
nlohmann::json metrics_array(const Metrics& m) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, value] : m) out.push_back({name, value});
  return out;
}

Result<Metrics> metrics_from_array(const nlohmann::json& j) {
  Metrics m;
  if (!j.is_array()) return data_loss("metrics must be a list");
  for (const auto& pair : j) {
    if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !(pair[1].is_number() || pair[1].is_null())) {
      return data_loss("metrics must be [name, value] pairs");
    }
    // JSON has no NaN or infinity: a value that was not finite comes back as null.
    m.emplace_back(pair[0].get<std::string>(), pair[1].is_null() ? std::nan("") : pair[1].get<double>());
  }
  return m;
}

}  // namespace

std::string Trainer::checkpoint(int slot) const {
  const Slot& s = slots_[slot];
  safetensors::Writer w;
  for (auto [prefix, buffer] : {std::pair{"param", model_.params()}, {"adam_m", adam_m_}, {"adam_v", adam_v_}}) {
    for (const auto& [name, t] : trained_tensors(slot, buffer)) add_tensor(w, std::string(prefix) + "/" + name, t);
  }
  if (s.best) {  // the best evaluation so far survives a resume
    for (const auto& [name, t] : trained_tensors(slot, best_params_)) add_tensor(w, "best/" + name, t);
    w.set_metadata("best", nlohmann::json({{"step", s.best->step}, {"epoch", s.best->epoch},
                                           {"metrics", metrics_array(s.best->metrics)}, {"score", std::isfinite(s.best_score) ? nlohmann::json(s.best_score) : nlohmann::json()},
                                           {"since", s.since_best}})
                               .dump());
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
  // The dtype it trained in (a resumed job: the last group's).
  w.set_metadata("dtype", std::string(common::dtype_name(model_.backbone().precision())));
  w.set_metadata("steps", std::to_string(s.progress.step));
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  return w.to_bytes();
}

// The slot's state from checkpoint() bytes: position, parameters and AdamW moments.
Status Trainer::restore(int slot, const std::string& checkpoint) {
  Slot& s = slots_[slot];
  const auto& task = s.job.request.task;
  at::NoGradGuard no_grad;
  auto file = safetensors::File::from_bytes(checkpoint, "checkpoint of " + s.job.id);
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
    // Compared in canonical form, so a checkpoint written before a new hyperparameter (with its
    // default) existed still resumes.
    auto stored = common::parse_json(meta.at("request"), "checkpoint of " + s.job.id + ": request");
    const nlohmann::json want = common::to_json(s.job.request);
    auto canonical = [&] {
      auto request = common::parse_job_request(*stored, common::FileRefs::kLocalPaths);
      return request.is_ok() && common::to_json(*request) == want;
    };
    if (!stored.is_ok() || (*stored != want && !canonical())) {
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
  std::vector<std::pair<const char*, at::Tensor>> buffers = {{"param", model_.params()}, {"adam_m", adam_m_}, {"adam_v", adam_v_}};
  if (meta.count("best")) buffers.emplace_back("best", best_params_);
  for (auto [prefix, buffer] : buffers) {
    BITFLEET_ASSIGN_OR_RETURN(int copied, model_.import_slot(buffer, slot, task.type, n, groups[prefix]));
    if (copied != static_cast<int>(trained_tensors(slot, buffer).size())) {
      return data_loss("checkpoint of " + s.job.id + " lacks some of the job's " + prefix + " tensors");
    }
  }
  if (meta.count("best")) BITFLEET_RETURN_IF_ERROR(restore_best(s, meta.at("best")));
  return Status::ok();
}

// The best evaluation's record from a checkpoint's "best" metadata (its tensors are restored by
// the caller).
Status Trainer::restore_best(Slot& s, const std::string& text) {
  const std::string where = "checkpoint of " + s.job.id + ": best";
  BITFLEET_ASSIGN_OR_RETURN(nlohmann::json j, common::parse_json(text, where));
  if (!j.is_object() || !j["step"].is_number_integer() || !j["epoch"].is_number_integer() || !(j["score"].is_number() || j["score"].is_null()) ||
      !j["since"].is_number_integer()) {
    return data_loss(where + " is malformed");
  }
  auto metrics = metrics_from_array(j["metrics"]);
  if (!metrics.is_ok()) return data_loss(where + ": " + metrics.status().message());
  s.best = BestEvaluation{j["step"].get<int64_t>(), j["epoch"].get<int64_t>(), std::move(metrics).value()};
  s.best_score = j["score"].is_null() ? -std::numeric_limits<double>::infinity() : j["score"].get<double>();
  s.since_best = j["since"].get<int64_t>();
  return Status::ok();
}

}  // namespace bitfleet::engine
