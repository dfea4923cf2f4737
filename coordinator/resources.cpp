#include "coordinator/resources.h"

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
                        {"task", request["task"]},
                        {"hyperparameters", request["hyperparameters"]},
                        {"priority", request["priority"]},
                        {"metadata", request["metadata"]},
                        {"attempt", j.attempt},
                        {"progress", {{"step", j.step}, {"total_steps", j.total_steps ? nlohmann::json(*j.total_steps) : nlohmann::json()}}},
                        {"train_loss", j.train_loss ? nlohmann::json(*j.train_loss) : nlohmann::json()},
                        {"metrics", j.metrics.is_null() ? nlohmann::json() : j.metrics},
                        {"error", j.error.empty() ? nlohmann::json() : nlohmann::json({{"message", j.error}})},
                        {"worker_group", j.status == kRunning && !j.worker_id.empty() ? nlohmann::json(j.worker_id) : nlohmann::json()}};
  out["artifact"] = j.status == kSucceeded && !j.artifact_blob.empty()
                        ? nlohmann::json({{"bytes", j.artifact_bytes}, {"sha256", j.artifact_sha256}})
                        : nlohmann::json();
  return out;
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
          {"ranks", w.ranks},
          {"slots", w.slots},
          {"free_slots", w.free_slots},
          {"max_labels", w.max_labels},
          {"max_seq_len", w.max_seq_len},
          {"registered_at", w.registered_at / 1000},
          {"last_heartbeat_at", w.last_heartbeat_at / 1000},
          {"status", now - w.last_heartbeat_at > lost_after_ms ? "lost" : "active"}};
}

}  // namespace bitfleet::coordinator
