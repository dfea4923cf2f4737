// The public API (/v1): files, jobs, events, artifacts, worker groups.
#include <filesystem>

#include "common/file_util.h"
#include "common/json_fields.h"
#include "common/net/sha256.h"
#include "common/table_reader.h"
#include "coordinator/handler_util.h"
#include "common/net/problem.h"
#include "coordinator/resources.h"
#include "coordinator/service.h"

namespace bitfleet::coordinator {

using net::problem;

namespace {

constexpr int64_t kDefaultPage = 20, kMaxPage = 100;
const char* const kStatuses[] = {kQueued, kRunning, kSucceeded, kFailed, kCancelled};

Status check_filename(const std::string& name) {
  if (name.empty() || name.size() > 255) return invalid_argument("filename must be 1 to 255 bytes", "filename");
  if (common::first_invalid_utf8(name) != std::string::npos) return invalid_argument("filename must be UTF-8", "filename");
  for (char c : name) {
    if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 32 || c == 127) {
      return invalid_argument("filename must not contain '/', '\\' or control characters", "filename");
    }
  }
  return common::table_format_from_name(name).status().is_ok()
             ? Status::ok()
             : invalid_argument("filename must end in .tsv, .csv or .jsonl (the format is read from it), got \"" + name + "\"",
                                "filename");
}

template <typename T, typename F>
nlohmann::json page_json(const Page<T>& page, F&& render) {
  nlohmann::json data = nlohmann::json::array();
  for (const auto& item : page.data) data.push_back(render(item));
  return {{"object", "list"}, {"data", data}, {"has_more", page.has_more}};
}

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

Response Service::create_file(Request& r, const Caller& c) {
  const std::string filename = r.query.count("filename") ? r.query.at("filename") : "";
  if (Status ok = check_filename(filename); !ok.is_ok()) return problem(ok, r.path, 400);
  auto digest = net::sha256_file(r.body_file);
  if (!digest.is_ok()) return problem(digest.status(), r.path);
  auto key = idempotency_key(r, *digest);
  if (!key.is_ok()) return problem(key.status(), r.path, 400);
  auto format = common::table_format_from_name(filename).value();
  // Refuse a bad dataset now, naming its line, rather than when a job reaches a worker. Streamed
  // from the spooled body: memory is one record, whatever the file's size.
  auto table = common::scan_table_file(r.body_file, format, filename);
  if (!table.is_ok()) return problem(Status(table.status().code(), table.status().message(), "body"), r.path, 422);
  if (table->records == 0) return problem(422, "", filename + ": the file has no records", "body", r.path);
  std::error_code size_error;
  const auto bytes = std::filesystem::file_size(r.body_file, size_error);
  if (size_error) return problem(io_error("the spooled upload: " + size_error.message()), r.path);

  FileRecord f;
  f.id = new_id("file-");
  f.tenant = c.principal.tenant;
  f.filename = filename;
  f.format = std::string(common::table_format_name(format));
  f.bytes = static_cast<int64_t>(bytes);
  f.sha256 = *digest;
  f.rows = table->records;
  f.columns = std::move(table->columns);
  f.created_at = now_ms();
  // The blob is moved in before its row commits; a crash between the two leaves an orphan that
  // the next start sweeps (Service::create), and every failure here removes it at once.
  if (Status moved = blobs_.adopt(r.body_file, f.id); !moved.is_ok()) return problem(moved, r.path);
  r.body_file.clear();  // adopted: the server must not delete it
  auto stored = store_->insert_file(f, *key);
  if (!stored.is_ok() || stored->replayed) (void)blobs_.remove(f.id);
  if (!stored.is_ok() && stored.status().code() == StatusCode::kResourceExhausted) {
    metrics_.refused("stored_bytes_limit", c.principal.tenant);
    return problem(stored.status(), r.path);  // 413
  }
  if (!stored.is_ok()) return problem(stored.status(), r.path, 400);
  if (!stored->file) {
    return problem(409, "", "the file created under this Idempotency-Key has been deleted since; upload again "
                            "with a new key", "Idempotency-Key", r.path);
  }
  return json_response(201, file_json(*stored->file));
}

Response Service::list_files(Request& r, const Caller& c) {
  auto limit = int_param(r, "limit", 1, kMaxPage, kDefaultPage);
  if (!limit.is_ok()) return problem(limit.status(), r.path, 400);
  std::string after = r.query.count("after") ? r.query.at("after") : "";
  if (!after.empty()) {
    auto cursor = store_->get_file(after);
    if (!cursor.is_ok()) return problem(cursor.status(), r.path);
    if (!*cursor || !c.sees((*cursor)->tenant)) {
      return problem(400, "", "after: \"" + after.substr(0, 64) + "\" is not a file id from a previous page", "after", r.path);
    }
  }
  const std::string sha256 = r.query.count("sha256") ? r.query.at("sha256") : "";
  if (r.query.count("sha256") && (sha256.size() != 64 || sha256.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    return problem(400, "", "sha256 must be 64 lower-case hex digits", "sha256", r.path);
  }
  auto page = store_->list_files(c.principal.role == Role::kAdmin ? "" : c.principal.tenant, *limit, after, sha256);
  if (!page.is_ok()) return problem(page.status(), r.path);
  return json_response(200, page_json(*page, file_json));
}

Response Service::get_file(Request& r, const Caller& c) {
  auto f = store_->get_file(r.params["id"]);
  if (!f.is_ok()) return problem(f.status(), r.path);
  if (!*f || !c.sees((*f)->tenant)) return problem(404, "", "no file " + r.params["id"], "id", r.path);
  return json_response(200, file_json(**f));
}

Response Service::file_content(Request& r, const Caller& c) {
  auto f = store_->get_file(r.params["id"]);
  if (!f.is_ok()) return problem(f.status(), r.path);
  if (!*f || !c.sees((*f)->tenant)) return problem(404, "", "no file " + r.params["id"], "id", r.path);
  Response response;
  response.content_type = "application/octet-stream";
  response.file = blobs_.path((*f)->id);
  response.headers["Content-Disposition"] = "attachment; filename=\"" + (*f)->id + "." + (*f)->format + "\"";
  return response;
}

Response Service::delete_file(Request& r, const Caller& c) {
  auto f = store_->get_file(r.params["id"]);
  if (!f.is_ok()) return problem(f.status(), r.path);
  if (!*f || !c.sees((*f)->tenant)) return problem(404, "", "no file " + r.params["id"], "id", r.path);
  if (Status deleted = store_->delete_file((*f)->id); !deleted.is_ok()) return problem(deleted, r.path);
  (void)blobs_.remove((*f)->id);
  return json_response(200, {{"id", (*f)->id}, {"object", "file"}, {"deleted", true}});
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
  return json_response(201, job_json(stored->jobs[0]));
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
  for (const auto& j : stored->jobs) data.push_back(job_json(j));
  return json_response(201, {{"object", "list"}, {"data", data}});
}

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
  return json_response(200, page_json(*page, job_json));
}

Response Service::get_job(Request& r, const Caller& c) {
  auto job = visible_job(r.params["id"], c);
  if (!job.is_ok()) return problem(job.status(), r.path);
  if (!*job) return problem(404, "", "no job " + r.params["id"], "id", r.path);
  return json_response(200, job_json(**job));
}

Response Service::cancel_job(Request& r, const Caller& c) {
  auto job = visible_job(r.params["id"], c);
  if (!job.is_ok()) return problem(job.status(), r.path);
  if (!*job) return problem(404, "", "no job " + r.params["id"], "id", r.path);
  auto cancelled = store_->cancel_job((*job)->id, now_ms());
  if (!cancelled.is_ok()) return problem(cancelled.status(), r.path);
  metrics_.job_finished(*cancelled);
  return json_response(200, job_json(*cancelled));
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
  Response response;
  response.content_type = "application/octet-stream";
  response.file = blobs_.path((*job)->artifact_blob);
  response.headers["Content-Disposition"] = "attachment; filename=\"" + (*job)->id + ".safetensors\"";
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
