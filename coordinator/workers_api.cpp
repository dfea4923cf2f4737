// Worker groups: the worker API (/internal/v1: registration, leases, heartbeats and the reports a
// worker group makes under a lease — events, checkpoints, artifact, completion — all as
// common/protocol.h messages), and the public list of groups (GET /v1/workers). Every report names the worker
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

// The fencing token of a binary upload (checkpoint, artifact), which comes in the query.
Result<protocol::Fence> fence_from_query(const Request& r) {
  protocol::Fence f;
  auto it = r.query.find("worker_group");
  if (it == r.query.end() || it->second.empty()) return invalid_argument("worker_group is required", "worker_group");
  f.worker_group = it->second;
  BITFLEET_ASSIGN_OR_RETURN(f.attempt, int_param(r, "attempt", 1, INT64_MAX, 0));
  if (f.attempt == 0) return invalid_argument("attempt is required", "attempt");
  return f;
}

protocol::FileRef file_ref(const FileRecord& f) { return {f.id, f.filename, f.sha256, f.bytes}; }

}  // namespace

Response Service::register_worker(Request& r) {
  auto m = decode<protocol::Registration>(r, protocol::parse_registration);
  if (!m) return m.problem();
  WorkerRecord w;
  const std::string& id = m->id;
  w.name = m->name;
  w.backbone = m->backbone;
  w.backbone_sha256 = m->backbone_sha256;
  w.device = m->device;
  w.dtype = m->dtype;
  w.cpu = m->cpu;
  w.slots = m->slots;
  w.ranks = m->ranks;
  w.max_labels = m->max_labels;
  w.max_seq_len = m->max_seq_len;
  // A group that restarts keeps its id (it may still hold leases); a new one gets one.
  w.id = id.empty() || !common::is_resource_id(id, "wg-") ? new_id("wg-") : id;
  w.free_slots = w.slots;
  w.registered_at = w.last_heartbeat_at = now_ms();
  if (Status saved = store_->put_worker(w); !saved.is_ok()) return problem(saved, r.path);
  return json_response(201, protocol::to_json(protocol::RegistrationReply{w.id, options_.lease_ms / 1000.0,
                                                                          options_.lease_ms / 3000.0}));
}

Response Service::lease(Request& r) {
  auto m = decode<protocol::LeaseRequest>(r, protocol::parse_lease_request);
  if (!m) return m.problem();
  const int64_t now = now_ms();
  auto leased = store_->lease_jobs(r.params["id"], m->free_slots, now, options_.lease_ms);
  if (!leased.is_ok()) return problem(leased.status(), r.path);
  protocol::LeaseGrant grant;
  grant.lease_seconds = options_.lease_ms / 1000.0;
  for (const auto& l : *leased) {
    metrics_.queue_wait((now - l.job.queued_at) / 1000.0);
    grant.jobs.push_back({l.job.id, l.job.attempt, common::to_json(l.job.request), file_ref(l.train_file),
                          l.validation_file ? std::optional(file_ref(*l.validation_file)) : std::nullopt,
                          l.test_file ? std::optional(file_ref(*l.test_file)) : std::nullopt,
                          l.job.checkpoint_blob.empty() ? std::nullopt : std::optional(l.job.checkpoint_step)});
  }
  return json_response(200, protocol::to_json(grant));
}

Response Service::heartbeat(Request& r) {
  auto m = decode<protocol::Heartbeat>(r, protocol::parse_heartbeat);
  if (!m) return m.problem();
  std::vector<JobReport> reports;
  for (const auto& p : m->jobs) reports.push_back({p.job_id, p.attempt, p.step, p.total_steps, p.train_loss});
  auto drop = store_->heartbeat(r.params["id"], m->free_slots, reports, now_ms(), options_.lease_ms);
  if (!drop.is_ok()) return problem(drop.status(), r.path);
  return json_response(200, protocol::to_json(protocol::HeartbeatReply{*drop, options_.lease_ms / 1000.0}));
}

Response Service::worker_events(Request& r) {
  auto m = decode<protocol::EventsReport>(r, protocol::parse_events_report);
  if (!m) return m.problem();
  std::vector<WorkerEvent> events;
  for (auto& e : m->events) events.push_back({std::move(e.type), std::move(e.data)});
  const protocol::Fence& fence = m->fence;
  Status added = store_->add_events(r.params["id"], fence.worker_group, fence.attempt, events, now_ms());
  if (!added.is_ok()) return problem(added, r.path);
  if (std::any_of(events.begin(), events.end(), [](const WorkerEvent& e) { return e.type == "evaluation"; })) {
    auto job = store_->get_job(r.params["id"]);
    if (job.is_ok() && *job && !(*job)->sweep_id.empty()) halve((*job)->sweep_id);
  }
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
  auto previous = store_->set_checkpoint(r.params["id"], fence->worker_group, fence->attempt, blob, *step, now_ms());
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
  auto previous = store_->set_artifact(r.params["id"], fence->worker_group, fence->attempt, blob, bytes, *digest);
  if (!previous.is_ok()) {
    (void)blobs_.remove(blob);
    return problem(previous.status(), r.path);
  }
  (void)blobs_.remove(*previous);
  return json_response(200, {{"bytes", bytes}, {"sha256", *digest}});
}

Response Service::complete(Request& r) {
  auto m = decode<protocol::CompleteReport>(r, protocol::parse_complete_report);
  if (!m) return m.problem();
  const nlohmann::json outcome = {{"final_metrics", m->final_metrics},
                                  {"test_metrics", m->test_metrics},
                                  {"best_step", m->best_step ? nlohmann::json(*m->best_step) : nlohmann::json()},
                                  {"stopped_early", m->stopped_early}};
  auto job = store_->complete_job(r.params["id"], m->fence.worker_group, m->fence.attempt, m->metrics, m->train_loss,
                                  m->steps, outcome, now_ms());
  if (!job.is_ok()) return problem(job.status(), r.path);
  metrics_.job_finished(*job);
  if (!job->sweep_id.empty()) halve(job->sweep_id);
  return json_response(200, job_json(*job));
}

Response Service::fail(Request& r) {
  auto m = decode<protocol::FailReport>(r, protocol::parse_fail_report);
  if (!m) return m.problem();
  auto job = store_->fail_job(r.params["id"], m->fence.worker_group, m->fence.attempt, m->reason, now_ms());
  if (!job.is_ok()) return problem(job.status(), r.path);
  metrics_.job_finished(*job);
  if (!job->sweep_id.empty()) halve(job->sweep_id);
  return json_response(200, job_json(*job));
}

Response Service::release(Request& r) {
  auto m = decode<protocol::ReleaseReport>(r, protocol::parse_release_report);
  if (!m) return m.problem();
  Status released = store_->release_job(r.params["id"], m->fence.worker_group, m->fence.attempt, now_ms());
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

Response Service::list_workers(Request& r, const Caller& c) {
  auto workers = store_->list_workers();
  if (!workers.is_ok()) return problem(workers.status(), r.path);
  nlohmann::json data = nlohmann::json::array();
  const int64_t now = now_ms();
  for (const auto& w : *workers) data.push_back(worker_json(w, now, options_.lease_ms));
  return json_response(200, {{"object", "list"}, {"data", data}, {"has_more", false}});
}

}  // namespace bitfleet::coordinator
