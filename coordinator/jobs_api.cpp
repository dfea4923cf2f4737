// The public API's jobs (/v1/jobs): create (one or a batch, idempotently), list, get, cancel,
// events, artifact.
#include <algorithm>

#include "common/json_fields.h"
#include "common/net/problem.h"
#include "common/net/sha256.h"
#include "common/table_reader.h"
#include "coordinator/handler_util.h"
#include "coordinator/resources.h"
#include "coordinator/service.h"

namespace bitfleet::coordinator {

using net::problem;

namespace {

const char* const kStatuses[] = {kQueued, kRunning, kSucceeded, kFailed, kCancelled};

// The columns of a stored file as an empty table, so a task's column references resolve against it.
common::Table columns_of(const FileRecord& f) {
  common::Table t;
  t.name = f.filename + " (" + f.id + ")";
  t.format = common::table_format_from_name(f.filename).value();
  t.columns = f.columns;
  return t;
}

}  // namespace

Result<std::optional<JobRecord>> Service::visible_job(const std::string& id, const Caller& c) {
  BITFLEET_ASSIGN_OR_RETURN(auto job, store_->get_job(id));
  if (job && !c.sees(job->tenant)) return std::optional<JobRecord>();
  return job;
}

Result<common::JobRequest> Service::validate_job(const nlohmann::json& body, const Caller& c, const std::string& path) {
  BITFLEET_ASSIGN_OR_RETURN(common::JobRequest request, common::parse_job_request(body, common::FileRefs::kFileIds, path));
  const std::string prefix = path.empty() ? "" : path + ".";
  auto check_file = [&](const std::string& id, const std::string& field) -> Status {
    BITFLEET_ASSIGN_OR_RETURN(auto f, store_->get_file(id));
    if (!f || !c.sees(f->tenant)) {
      return invalid_argument(prefix + field + ": no file " + id + " (upload it with POST /v1/files)", prefix + field);
    }
    const common::Table table = columns_of(*f);
    for (size_t i = 0; i < request.task.text_fields.size(); ++i) {
      const std::string at = prefix + "task.text_fields[" + std::to_string(i) + "]";
      BITFLEET_RETURN_IF_ERROR(common::resolve_column(table, request.task.text_fields[i], at).status());
    }
    return common::resolve_column(table, request.task.label_field, prefix + "task.label_field").status();
  };
  BITFLEET_RETURN_IF_ERROR(check_file(request.train_file, "train_file"));
  if (!request.validation_file.empty()) BITFLEET_RETURN_IF_ERROR(check_file(request.validation_file, "validation_file"));
  if (!request.test_file.empty()) BITFLEET_RETURN_IF_ERROR(check_file(request.test_file, "test_file"));
  return request;
}

// {"jobs": [request, ...]}: 1 to max_batch_jobs requests, each validated as POST /v1/jobs does.
Result<std::vector<common::JobRequest>> Service::validate_job_batch(const nlohmann::json& body, const Caller& c) {
  common::JsonFields f(body, "");
  const nlohmann::json& list = f.raw("jobs");
  if (f.ok() && (!list.is_array() || list.empty() || static_cast<int64_t>(list.size()) > options_.max_batch_jobs)) {
    f.fail("jobs", "must be a list of 1 to " + std::to_string(options_.max_batch_jobs) + " job requests");
  }
  BITFLEET_RETURN_IF_ERROR(f.finish());
  std::vector<common::JobRequest> requests;
  for (size_t i = 0; i < list.size(); ++i) {
    BITFLEET_ASSIGN_OR_RETURN(common::JobRequest request, validate_job(list[i], c, "jobs[" + std::to_string(i) + "]"));
    requests.push_back(std::move(request));
  }
  return requests;
}

Response Service::created_jobs_problem(const Status& s, const std::string& path, const Caller& c) {
  if (s.code() != StatusCode::kResourceExhausted) return problem(s, path, 400);
  metrics_.refused("queued_jobs_limit", c.principal.tenant);
  return problem(429, "", s.message(), s.field(), path);
}

Response Service::create_job(Request& r, const Caller& c) {
  auto request = decode<common::JobRequest>(r, [&](const nlohmann::json& body) { return validate_job(body, c, ""); });
  if (!request) return request.problem();
  auto key = idempotency_key(r, net::sha256_hex(r.body));
  if (!key.is_ok()) return problem(key.status(), r.path, 400);
  JobRecord job;
  job.id = new_id("job-");
  job.request = std::move(*request);
  job.created_at = now_ms();
  auto stored = store_->create_jobs(c.principal.tenant, {job}, *key);
  if (!stored.is_ok()) return created_jobs_problem(stored.status(), r.path, c);
  if (!stored->replayed) metrics_.jobs_submitted(1);
  if (stored->jobs.empty()) return problem(409, "", "the job created under this Idempotency-Key is gone", "Idempotency-Key", r.path);
  return json_response(201, job_view(stored->jobs[0]));
}

Response Service::create_jobs_batch(Request& r, const Caller& c) {
  auto requests = decode<std::vector<common::JobRequest>>(r, [&](const nlohmann::json& body) {
    return validate_job_batch(body, c);
  });
  if (!requests) return requests.problem();
  auto key = idempotency_key(r, net::sha256_hex(r.body));
  if (!key.is_ok()) return problem(key.status(), r.path, 400);
  std::vector<JobRecord> jobs;
  const int64_t now = now_ms();
  for (auto& request : *requests) {
    JobRecord job;
    job.id = new_id("job-");
    job.request = std::move(request);
    job.created_at = now;
    jobs.push_back(std::move(job));
  }
  auto stored = store_->create_jobs(c.principal.tenant, jobs, *key);
  if (!stored.is_ok()) return created_jobs_problem(stored.status(), r.path, c);
  if (!stored->replayed) metrics_.jobs_submitted(static_cast<int64_t>(jobs.size()));
  nlohmann::json data = nlohmann::json::array();
  auto view = job_viewer();
  for (const auto& j : stored->jobs) data.push_back(view(j));
  return json_response(201, {{"object", "list"}, {"data", data}});
}

std::function<nlohmann::json(const JobRecord&)> Service::job_viewer() {
  // The live groups are listed once per response, and only if a job in it is queued.
  std::optional<std::vector<WorkerRecord>> live;  // unset until listed, and if the store cannot list
  return [this, listed = false, live](const JobRecord& job) mutable {
    nlohmann::json out = job_json(job);
    out["waiting_reason"] = nullptr;
    if (job.status != kQueued) return out;
    if (!listed) {
      listed = true;
      if (auto workers = store_->list_workers(); workers.is_ok()) {
        const int64_t now = now_ms();
        live.emplace();
        for (auto& w : *workers) {
          if (now - w.last_heartbeat_at <= options_.lease_ms) live->push_back(std::move(w));
        }
      }
    }
    if (live) out["waiting_reason"] = waiting_reason(job, *live);
    return out;
  };
}

nlohmann::json Service::job_view(const JobRecord& job) { return job_viewer()(job); }

Response Service::list_jobs(Request& r, const Caller& c) {
  auto limit = int_param(r, "limit", 1, kMaxPage, kDefaultPage);
  if (!limit.is_ok()) return problem(limit.status(), r.path, 400);
  std::string status = r.query.count("status") ? r.query.at("status") : "";
  if (r.query.count("status") && std::find(std::begin(kStatuses), std::end(kStatuses), status) == std::end(kStatuses)) {
    return problem(400, "", "status must be one of queued, running, succeeded, failed, cancelled, got \"" +
                                status.substr(0, 40) + "\"", "status", r.path);
  }
  std::string after = r.query.count("after") ? r.query.at("after") : "";
  if (!after.empty()) {
    auto cursor = visible_job(after, c);
    if (!cursor.is_ok()) return problem(cursor.status(), r.path);
    if (!*cursor) {
      return problem(400, "", "after: \"" + after.substr(0, 64) + "\" is not a job id from a previous page", "after", r.path);
    }
  }
  auto page = store_->list_jobs(c.principal.role == Role::kAdmin ? "" : c.principal.tenant, status, *limit, after);
  if (!page.is_ok()) return problem(page.status(), r.path);
  return json_response(200, page_json(*page, job_viewer()));
}

Response Service::get_job(Request& r, const Caller& c) {
  auto job = visible_job(r.params["id"], c);
  if (!job.is_ok()) return problem(job.status(), r.path);
  if (!*job) return problem(404, "", "no job " + r.params["id"], "id", r.path);
  return json_response(200, job_view(**job));
}

Response Service::cancel_job(Request& r, const Caller& c) {
  auto job = visible_job(r.params["id"], c);
  if (!job.is_ok()) return problem(job.status(), r.path);
  if (!*job) return problem(404, "", "no job " + r.params["id"], "id", r.path);
  auto cancelled = store_->cancel_job((*job)->id, now_ms());
  if (!cancelled.is_ok()) return problem(cancelled.status(), r.path);
  metrics_.job_finished(*cancelled);
  return json_response(200, job_view(*cancelled));
}

Response Service::job_events(Request& r, const Caller& c) {
  auto after = int_param(r, "after", 0, INT64_MAX, 0);
  if (!after.is_ok()) return problem(after.status(), r.path, 400);
  auto limit = int_param(r, "limit", 1, 1000, 100);
  if (!limit.is_ok()) return problem(limit.status(), r.path, 400);
  auto job = visible_job(r.params["id"], c);
  if (!job.is_ok()) return problem(job.status(), r.path);
  if (!*job) return problem(404, "", "no job " + r.params["id"], "id", r.path);
  auto page = store_->list_events((*job)->id, *after, *limit);
  if (!page.is_ok()) return problem(page.status(), r.path);
  return json_response(200, page_json(*page, event_json));
}

Response Service::job_artifact(Request& r, const Caller& c) {
  auto job = visible_job(r.params["id"], c);
  if (!job.is_ok()) return problem(job.status(), r.path);
  if (!*job) return problem(404, "", "no job " + r.params["id"], "id", r.path);
  if ((*job)->status != kSucceeded || (*job)->artifact_blob.empty()) {
    return problem(409, "", "job " + (*job)->id + " has no artifact: it is " + (*job)->status, "id", r.path);
  }
  return artifact_response(**job);
}

Response Service::artifact_response(const JobRecord& job) {
  Response response;
  response.content_type = "application/octet-stream";
  response.file = blobs_.path(job.artifact_blob);
  response.headers["Content-Disposition"] = "attachment; filename=\"" + job.id + ".safetensors\"";
  return response;
}

}  // namespace bitfleet::coordinator
