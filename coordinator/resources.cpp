#include "coordinator/resources.h"

#include <algorithm>
#include <optional>
#include <string>

namespace bitfleet::coordinator {
namespace {

nlohmann::json seconds(const std::optional<int64_t>& ms) {
  return ms ? nlohmann::json(*ms / 1000) : nlohmann::json();
}

}  // namespace

nlohmann::json job_json(const JobRecord& j) {
  nlohmann::json request = common::to_json(j.request);
  nlohmann::json out = {{"id", j.id},
                        {"object", "job"},
                        {"status", j.status},
                        {"created_at", j.created_at / 1000},
                        {"started_at", seconds(j.started_at)},
                        {"finished_at", seconds(j.finished_at)},
                        {"backbone", request["backbone"]},
                        {"train_file", request["train_file"]},
                        {"validation_file", request["validation_file"]},
                        {"test_file", request["test_file"]},
                        {"task", request["task"]},
                        {"hyperparameters", request["hyperparameters"]},
                        {"priority", request["priority"]},
                        {"metadata", request["metadata"]},
                        {"attempt", j.attempt},
                        {"progress", {{"step", j.step}, {"total_steps", j.total_steps ? nlohmann::json(*j.total_steps) : nlohmann::json()}}},
                        {"train_loss", j.train_loss ? nlohmann::json(*j.train_loss) : nlohmann::json()},
                        {"metrics", j.metrics.is_null() ? nlohmann::json() : j.metrics},
                        {"evaluations", j.evaluations},
                        {"best", j.best},
                        {"final_metrics", j.outcome.is_object() ? j.outcome.value("final_metrics", nlohmann::json()) : nlohmann::json()},
                        {"test_metrics", j.outcome.is_object() ? j.outcome.value("test_metrics", nlohmann::json()) : nlohmann::json()},
                        {"stopped_early", j.outcome.is_object() && j.outcome.value("stopped_early", false)},
                        {"error", j.error.empty() ? nlohmann::json() : nlohmann::json({{"message", j.error}})},
                        {"worker_group", j.status == kRunning && !j.worker_id.empty() ? nlohmann::json(j.worker_id) : nlohmann::json()}};
  out["artifact"] = j.status == kSucceeded && !j.artifact_blob.empty()
                        ? nlohmann::json({{"bytes", j.artifact_bytes}, {"sha256", j.artifact_sha256}})
                        : nlohmann::json();
  return out;
}

nlohmann::json waiting_reason(const JobRecord& job, const std::vector<WorkerRecord>& live) {
  if (job.status != kQueued) return nullptr;
  const common::JobRequest& r = job.request;
  std::vector<const WorkerRecord*> groups;
  for (const auto& w : live) {
    if (w.backbone == r.backbone) groups.push_back(&w);
  }
  if (groups.empty()) return "no live worker group serves backbone \"" + r.backbone + "\"";
  bool labels = false, seq_len = false, dtype = false;
  int64_t max_labels = 0, max_seq_len = 0;
  std::vector<std::string> dtypes;
  for (const WorkerRecord* w : groups) {
    const GroupFit fit = group_fit(*w, r);
    if (fit.all()) return nullptr;
    labels = labels || fit.labels;
    seq_len = seq_len || fit.seq_len;
    dtype = dtype || fit.dtype;
    max_labels = std::max(max_labels, w->max_labels);
    max_seq_len = std::max(max_seq_len, w->max_seq_len);
    if (std::find(dtypes.begin(), dtypes.end(), w->dtype) == dtypes.end()) dtypes.push_back(w->dtype);
  }
  std::vector<std::string> lacking;
  if (!labels) {
    lacking.push_back("it has " + std::to_string(r.task.num_outputs()) + " labels, the groups take at most " +
                      std::to_string(max_labels) + " (their --max-labels)");
  }
  if (!seq_len) {
    lacking.push_back("its max_seq_len is " + std::to_string(r.hyperparameters.max_seq_len) +
                      ", the groups take at most " + std::to_string(max_seq_len) + " (their --max-seq-len)");
  }
  if (!dtype) {
    std::string have;
    for (const auto& d : dtypes) have += (have.empty() ? "" : ", ") + d;
    lacking.push_back("it requires dtype " + std::string(common::dtype_name(*r.hyperparameters.dtype)) +
                      ", the groups run " + have + " (their --dtype)");
  }
  std::string why = "no live worker group of backbone \"" + r.backbone + "\" can run it: ";
  if (lacking.empty()) return why + "each lacks one of its labels, max_seq_len or dtype, none has all three";
  for (size_t i = 0; i < lacking.size(); ++i) why += (i ? "; " : "") + lacking[i];
  return why;
}

nlohmann::json file_json(const FileRecord& f) {
  return {{"id", f.id},         {"object", "file"}, {"filename", f.filename}, {"format", f.format},
          {"bytes", f.bytes},   {"sha256", f.sha256}, {"rows", f.rows},       {"columns", f.columns},
          {"created_at", f.created_at / 1000}};
}

nlohmann::json event_json(const EventRecord& e) {
  return {{"seq", e.seq}, {"created_at", e.created_at / 1000}, {"type", e.type}, {"data", e.data}};
}

nlohmann::json worker_json(const WorkerRecord& w, int64_t now, int64_t lost_after_ms) {
  return {{"id", w.id},
          {"object", "worker_group"},
          {"name", w.name},
          {"backbone", w.backbone},
          {"backbone_sha256", w.backbone_sha256},
          {"device", w.device},
          {"dtype", w.dtype},
          {"cpu", w.cpu},
          {"ranks", w.ranks},
          {"slots", w.slots},
          {"free_slots", w.free_slots},
          {"max_labels", w.max_labels},
          {"max_seq_len", w.max_seq_len},
          {"registered_at", w.registered_at / 1000},
          {"last_heartbeat_at", w.last_heartbeat_at / 1000},
          {"status", now - w.last_heartbeat_at > lost_after_ms ? "lost" : "active"}};
}

namespace {

// The variant's values of the sweep's grid keys, from its (canonical) hyperparameters.
nlohmann::json grid_point(const nlohmann::json& grid, const JobRecord& v) {
  const nlohmann::json hyper = common::to_json(v.request.hyperparameters);
  nlohmann::json point = nlohmann::json::object();
  for (const auto& [key, values] : grid.items()) point[key] = hyper.value(key, nlohmann::json());
  return point;
}

std::optional<double> objective_value(const nlohmann::json& objective, const JobRecord& v) {
  const std::string metric = objective.value("metric", "");
  if (v.status != kSucceeded || !v.metrics.is_object() || !v.metrics.contains(metric) || !v.metrics[metric].is_number()) {
    return std::nullopt;
  }
  return v.metrics[metric].get<double>();
}

}  // namespace

std::string sweep_status(bool cancelled, int64_t queued, int64_t running, int64_t succeeded) {
  if (cancelled) return kCancelled;
  if (running > 0 || (queued > 0 && succeeded > 0)) return kRunning;
  if (queued > 0) return kQueued;
  return succeeded > 0 ? kSucceeded : kFailed;
}

const JobRecord* best_variant(const SweepRecord& sweep, const std::vector<JobRecord>& variants) {
  const nlohmann::json& objective = sweep.spec["objective"];
  const bool minimise = objective.value("mode", "max") == "min";
  const JobRecord* best = nullptr;
  std::optional<double> best_value;
  for (const auto& v : variants) {
    auto value = objective_value(objective, v);
    if (value && (!best_value || (minimise ? *value < *best_value : *value > *best_value))) {
      best = &v;
      best_value = value;
    }
  }
  return best;
}

nlohmann::json sweep_json(const SweepRecord& sweep, const std::vector<JobRecord>& variants) {
  const nlohmann::json& spec = sweep.spec;
  auto count = [&](const char* status) {
    return std::count_if(variants.begin(), variants.end(), [&](const JobRecord& v) { return v.status == status; });
  };
  nlohmann::json list = nlohmann::json::array();
  for (const auto& v : variants) {
    list.push_back({{"job", v.id},
                    {"hyperparameters", grid_point(spec["grid"], v)},
                    {"status", v.status},
                    {"best", v.best},
                    {"metrics", v.metrics.is_null() ? nlohmann::json() : v.metrics},
                    {"error", v.error.empty() ? nlohmann::json() : nlohmann::json({{"message", v.error}})}});
  }
  nlohmann::json best;
  if (const JobRecord* b = best_variant(sweep, variants)) {
    best = {{"job", b->id}, {"hyperparameters", grid_point(spec["grid"], *b)}, {"metrics", b->metrics}};
  }
  return {{"id", sweep.id},
          {"object", "sweep"},
          {"status", sweep_status(sweep.cancelled, count(kQueued), count(kRunning), count(kSucceeded))},
          {"created_at", sweep.created_at / 1000},
          {"base", spec["base"]},
          {"grid", spec["grid"]},
          {"objective", spec["objective"]},
          {"strategy", spec["strategy"]},
          {"eta", spec["eta"]},
          {"variants", list},
          {"best", best},
          {"rungs", sweep.rungs}};
}

}  // namespace bitfleet::coordinator
