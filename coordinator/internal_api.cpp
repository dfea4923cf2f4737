// The worker API (/internal/v1): registration, leases, heartbeats and the reports a worker group
// makes under a lease (events, checkpoints, artifact, completion). Every report names the worker
// group and the attempt it holds; a report from an attempt that no longer holds the lease is 409.
#include <filesystem>

#include "common/json_fields.h"
#include "common/protocol.h"
#include "common/net/sha256.h"
#include "coordinator/handler_util.h"
#include "common/net/problem.h"
#include "coordinator/resources.h"
#include "coordinator/service.h"

namespace bitfleet::coordinator {

using net::problem;

namespace {

// The fencing token of a report: which group, which attempt (in the JSON body or the query).
struct Fence {
  std::string worker;
  int64_t attempt = 0;
};

Result<Fence> fence_from_query(const Request& r) {
  Fence f;
  auto it = r.query.find("worker_group");
  if (it == r.query.end() || it->second.empty()) return invalid_argument("worker_group is required", "worker_group");
  f.worker = it->second;
  BITFLEET_ASSIGN_OR_RETURN(f.attempt, int_param(r, "attempt", 1, INT64_MAX, 0));
  if (f.attempt == 0) return invalid_argument("attempt is required", "attempt");
  return f;
}

Fence fence_from_body(common::JsonFields& f) {
  return {f.string("worker_group", std::nullopt, 64), f.integer("attempt", 1, INT64_MAX)};
}

protocol::FileRef file_ref(const FileRecord& f) { return {f.id, f.filename, f.sha256, f.bytes}; }

}  // namespace

Response Service::register_worker(Request& r) {
  int body_status = 400;
  auto body = json_body(r, &body_status);
  if (!body.is_ok()) return problem(body.status(), r.path, body_status);
  common::JsonFields f(*body, "");
  WorkerRecord w;
  std::string id = f.string("id", "", 64, true);
  w.name = f.string("name", std::nullopt, 128);
  w.backbone = f.string("backbone", std::nullopt, 128);
  w.backbone_sha256 = f.string("backbone_sha256", "", 64, true);
  w.device = f.string("device", "cpu", 32);
  w.slots = f.integer("slots", 1, 4096);
  w.ranks = f.integer("ranks", 1, 65536, 1);
  w.max_labels = f.integer("max_labels", 1, common::kMaxLabels, common::kMaxLabels);
  w.max_seq_len = f.integer("max_seq_len", 8, 1 << 16, common::kMaxSeqLenLimit);
  if (Status ok = f.finish(); !ok.is_ok()) return problem(ok, r.path, 422);
  // A group that restarts keeps its id (it may still hold leases); a new one gets one.
  w.id = id.empty() || !common::is_resource_id(id, "wg-") ? new_id("wg-") : id;
  w.free_slots = w.slots;
  w.registered_at = w.last_heartbeat_at = now_ms();
  if (Status saved = store_->put_worker(w); !saved.is_ok()) return problem(saved, r.path);
  return json_response(201, protocol::to_json(protocol::RegistrationReply{w.id, options_.lease_ms / 1000.0,
                                                                          options_.lease_ms / 3000.0}));
}

Response Service::lease(Request& r) {
  int body_status = 400;
  auto body = json_body(r, &body_status);
  if (!body.is_ok()) return problem(body.status(), r.path, body_status);
  common::JsonFields f(*body, "");
  const int64_t free_slots = f.integer("free_slots", 0, 4096);
  if (Status ok = f.finish(); !ok.is_ok()) return problem(ok, r.path, 422);
  const int64_t now = now_ms();
  auto leased = store_->lease_jobs(r.params["id"], free_slots, now, options_.lease_ms);
  if (!leased.is_ok()) return problem(leased.status(), r.path);
  protocol::LeaseGrant grant;
  grant.lease_seconds = options_.lease_ms / 1000.0;
  for (const auto& l : *leased) {
    metrics_.queue_wait((now - l.job.queued_at) / 1000.0);
    grant.jobs.push_back({l.job.id, l.job.attempt, common::to_json(l.job.request), file_ref(l.train_file),
                          l.validation_file ? std::optional(file_ref(*l.validation_file)) : std::nullopt,
                          l.job.checkpoint_blob.empty() ? std::nullopt : std::optional(l.job.checkpoint_step)});
  }
  return json_response(200, protocol::to_json(grant));
}

Response Service::heartbeat(Request& r) {
  int body_status = 400;
  auto body = json_body(r, &body_status);
  if (!body.is_ok()) return problem(body.status(), r.path, body_status);
  common::JsonFields f(*body, "");
  const int64_t free_slots = f.integer("free_slots", 0, 4096);
  const nlohmann::json& list = f.raw("jobs");
  std::vector<JobReport> reports;
  if (f.ok() && !list.is_null() && !list.is_array()) f.fail("jobs", "must be a list");
  for (size_t i = 0; f.ok() && list.is_array() && i < list.size(); ++i) {
    common::JsonFields j(list[i], "jobs[" + std::to_string(i) + "]");
    JobReport report{j.string("id", std::nullopt, 64), j.integer("attempt", 1, INT64_MAX),
                     j.integer("step", 0, INT64_MAX, 0), j.integer("total_steps", 0, INT64_MAX, 0), std::nullopt};
    if (j.has("train_loss") && !j.raw("train_loss").is_null()) {
      report.train_loss = j.number("train_loss", {.min = -1e300, .max = 1e300}, 0.0);
    }
    if (Status ok = j.finish(); !ok.is_ok()) return problem(ok, r.path, 422);
    reports.push_back(report);
  }
  if (Status ok = f.finish(); !ok.is_ok()) return problem(ok, r.path, 422);
  auto drop = store_->heartbeat(r.params["id"], free_slots, reports, now_ms(), options_.lease_ms);
  if (!drop.is_ok()) return problem(drop.status(), r.path);
  return json_response(200, protocol::to_json(protocol::HeartbeatReply{*drop, options_.lease_ms / 1000.0}));
}

Response Service::worker_events(Request& r) {
  int body_status = 400;
  auto body = json_body(r, &body_status);
  if (!body.is_ok()) return problem(body.status(), r.path, body_status);
  common::JsonFields f(*body, "");
  Fence fence = fence_from_body(f);
  const nlohmann::json& list = f.raw("events");
  if (f.ok() && (!list.is_array() || list.size() > 1000)) f.fail("events", "must be a list of at most 1000 events");
  std::vector<WorkerEvent> events;
  for (size_t i = 0; f.ok() && i < list.size(); ++i) {
    common::JsonFields e(list[i], "events[" + std::to_string(i) + "]");
    std::string type = e.string("type", std::nullopt, 32);
    const nlohmann::json& data = e.raw("data");
    if (e.ok() && type != "train_loss" && type != "eval" && type != "log") e.fail("type", "must be train_loss, eval or log");
    if (e.ok() && !data.is_object()) e.fail("data", "must be an object");
    if (Status ok = e.finish(); !ok.is_ok()) return problem(ok, r.path, 422);
    events.push_back({type, data});
  }
  if (Status ok = f.finish(); !ok.is_ok()) return problem(ok, r.path, 422);
  Status added = store_->add_events(r.params["id"], fence.worker, fence.attempt, events, now_ms());
  if (!added.is_ok()) return problem(added, r.path);
  return json_response(200, {{"accepted", events.size()}});
}

Response Service::put_checkpoint(Request& r) {
  auto fence = fence_from_query(r);
  if (!fence.is_ok()) return problem(fence.status(), r.path, 400);
  auto step = int_param(r, "step", 0, INT64_MAX, 0);
  if (!step.is_ok()) return problem(step.status(), r.path, 400);
  const std::string blob = new_id("ckpt-");
  if (Status moved = blobs_.adopt(r.body_file, blob); !moved.is_ok()) return problem(moved, r.path);
  r.body_file.clear();
  auto previous = store_->set_checkpoint(r.params["id"], fence->worker, fence->attempt, blob, *step, now_ms());
  if (!previous.is_ok()) {
    (void)blobs_.remove(blob);
    return problem(previous.status(), r.path);
  }
  (void)blobs_.remove(*previous);
  return json_response(200, {{"step", *step}});
}

Response Service::get_checkpoint(Request& r) {
  auto job = store_->get_job(r.params["id"]);
  if (!job.is_ok()) return problem(job.status(), r.path);
  if (!*job || (*job)->checkpoint_blob.empty()) return problem(404, "", "job " + r.params["id"] + " has no checkpoint", "id", r.path);
  Response response;
  response.content_type = "application/octet-stream";
  response.file = blobs_.path((*job)->checkpoint_blob);
  response.headers["X-Bitfleet-Step"] = std::to_string((*job)->checkpoint_step);
  return response;
}

Response Service::put_artifact(Request& r) {
  auto fence = fence_from_query(r);
  if (!fence.is_ok()) return problem(fence.status(), r.path, 400);
  auto digest = net::sha256_file(r.body_file);
  if (!digest.is_ok()) return problem(digest.status(), r.path);
  std::error_code ec;
  const int64_t bytes = static_cast<int64_t>(std::filesystem::file_size(r.body_file, ec));
  const std::string blob = new_id("artifact-");
  if (Status moved = blobs_.adopt(r.body_file, blob); !moved.is_ok()) return problem(moved, r.path);
  r.body_file.clear();
  auto previous = store_->set_artifact(r.params["id"], fence->worker, fence->attempt, blob, bytes, *digest);
  if (!previous.is_ok()) {
    (void)blobs_.remove(blob);
    return problem(previous.status(), r.path);
  }
  (void)blobs_.remove(*previous);
  return json_response(200, {{"bytes", bytes}, {"sha256", *digest}});
}

Response Service::complete(Request& r) {
  int body_status = 400;
  auto body = json_body(r, &body_status);
  if (!body.is_ok()) return problem(body.status(), r.path, body_status);
  common::JsonFields f(*body, "");
  Fence fence = fence_from_body(f);
  const nlohmann::json& metrics = f.raw("metrics");
  std::optional<double> loss;
  if (f.has("train_loss")) loss = f.number("train_loss", {.min = -1e300, .max = 1e300}, 0.0);
  const int64_t steps = f.integer("steps", 0, INT64_MAX);
  if (f.ok() && !metrics.is_null() && !metrics.is_object()) f.fail("metrics", "must be an object");
  if (Status ok = f.finish(); !ok.is_ok()) return problem(ok, r.path, 422);
  auto job = store_->complete_job(r.params["id"], fence.worker, fence.attempt,
                                  metrics.is_null() ? nlohmann::json::object() : metrics, loss, steps, now_ms());
  if (!job.is_ok()) return problem(job.status(), r.path);
  metrics_.job_finished(*job);
  return json_response(200, job_json(*job));
}

Response Service::fail(Request& r) {
  int body_status = 400;
  auto body = json_body(r, &body_status);
  if (!body.is_ok()) return problem(body.status(), r.path, body_status);
  common::JsonFields f(*body, "");
  Fence fence = fence_from_body(f);
  const std::string reason = f.string("reason", std::nullopt, 4096);
  if (Status ok = f.finish(); !ok.is_ok()) return problem(ok, r.path, 422);
  auto job = store_->fail_job(r.params["id"], fence.worker, fence.attempt, reason, now_ms());
  if (!job.is_ok()) return problem(job.status(), r.path);
  metrics_.job_finished(*job);
  return json_response(200, job_json(*job));
}

Response Service::release(Request& r) {
  int body_status = 400;
  auto body = json_body(r, &body_status);
  if (!body.is_ok()) return problem(body.status(), r.path, body_status);
  common::JsonFields f(*body, "");
  Fence fence = fence_from_body(f);
  if (Status ok = f.finish(); !ok.is_ok()) return problem(ok, r.path, 422);
  Status released = store_->release_job(r.params["id"], fence.worker, fence.attempt, now_ms());
  if (!released.is_ok()) return problem(released, r.path);
  return json_response(200, {{"released", r.params["id"]}});
}

Response Service::worker_file_content(Request& r) {
  auto f = store_->get_file(r.params["id"]);
  if (!f.is_ok()) return problem(f.status(), r.path);
  if (!*f) return problem(404, "", "no file " + r.params["id"], "id", r.path);
  Response response;
  response.content_type = "application/octet-stream";
  response.file = blobs_.path((*f)->id);
  response.headers["X-Bitfleet-Sha256"] = (*f)->sha256;
  return response;
}

}  // namespace bitfleet::coordinator
