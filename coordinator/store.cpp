// Store: schema and migrations, files, jobs, events, idempotency. Scheduling (worker groups,
// leases, worker reports) is in store_scheduling.cpp.
#include "coordinator/store.h"

#include <algorithm>

#include "common/json_fields.h"
#include "coordinator/store_rows.h"

namespace bitfleet::coordinator {

namespace {

// Numbered schema migrations; meta.schema_version says how many have run.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE files (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL, filename TEXT NOT NULL, format TEXT NOT NULL,
  bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, rows INTEGER NOT NULL, columns TEXT NOT NULL,
  created_at INTEGER NOT NULL);
CREATE INDEX files_by_tenant ON files(tenant, seq);
CREATE TABLE jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL, backbone TEXT NOT NULL, priority INTEGER NOT NULL,
  request TEXT NOT NULL, train_file TEXT NOT NULL, validation_file TEXT,
  status TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, expiries INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL, queued_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,
  worker_id TEXT, error TEXT, step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER, train_loss REAL,
  metrics TEXT, checkpoint_blob TEXT, checkpoint_step INTEGER NOT NULL DEFAULT 0,
  artifact_blob TEXT, artifact_bytes INTEGER NOT NULL DEFAULT 0, artifact_sha256 TEXT);
CREATE INDEX jobs_queue ON jobs(status, backbone, priority DESC, seq);
CREATE INDEX jobs_by_tenant ON jobs(tenant, seq);
CREATE INDEX jobs_by_tenant_status ON jobs(tenant, status, seq);
CREATE INDEX jobs_by_status ON jobs(status, seq);
CREATE INDEX jobs_by_train_file ON jobs(train_file);
CREATE INDEX jobs_by_validation_file ON jobs(validation_file);
CREATE TABLE job_events (
  job_seq INTEGER NOT NULL, seq INTEGER NOT NULL, created_at INTEGER NOT NULL, type TEXT NOT NULL,
  data TEXT NOT NULL, PRIMARY KEY (job_seq, seq)) WITHOUT ROWID;
CREATE TABLE workers (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, backbone TEXT NOT NULL, backbone_sha256 TEXT NOT NULL,
  device TEXT NOT NULL, slots INTEGER NOT NULL, ranks INTEGER NOT NULL, free_slots INTEGER NOT NULL,
  max_labels INTEGER NOT NULL, max_seq_len INTEGER NOT NULL, registered_at INTEGER NOT NULL,
  last_heartbeat_at INTEGER NOT NULL);
CREATE TABLE leases (
  job_id TEXT PRIMARY KEY, worker_id TEXT NOT NULL, attempt INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX leases_by_expiry ON leases(expires_at);
CREATE INDEX leases_by_worker ON leases(worker_id);
CREATE TABLE idempotency (
  tenant TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, status INTEGER NOT NULL,
  body TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (tenant, key)) WITHOUT ROWID;
)sql",
    // 2: clients look up an upload by its content (GET /v1/files?sha256=) before sending it again.
    "CREATE INDEX files_by_sha256 ON files(sha256, tenant);",
    // 3: a replay is answered from the resources' current state, so a key records their ids (taken
    // from the stored answers of earlier versions); keys expire by age.
    R"sql(
ALTER TABLE idempotency ADD COLUMN resource_ids TEXT NOT NULL DEFAULT '[]';
UPDATE idempotency SET resource_ids = CASE
  WHEN json_valid(body) AND json_type(body, '$.data') = 'array'
    THEN (SELECT json_group_array(json_extract(value, '$.id')) FROM json_each(body, '$.data'))
  WHEN json_valid(body) AND json_type(body, '$.id') = 'text' THEN json_array(json_extract(body, '$.id'))
  ELSE '[]' END;
CREATE INDEX idempotency_by_age ON idempotency(created_at);
)sql",
    // 4: leases go by fair share across tenants, then priority, then age (next_in_fair_share).
    "CREATE INDEX jobs_fair_queue ON jobs(status, backbone, tenant, priority DESC, seq);",
    // 5: evaluation during training (the history, the best so far), the job's outcome, a test file.
    R"sql(
ALTER TABLE jobs ADD COLUMN test_file TEXT;
CREATE INDEX jobs_by_test_file ON jobs(test_file);
ALTER TABLE jobs ADD COLUMN evaluations TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN best TEXT;
ALTER TABLE jobs ADD COLUMN outcome TEXT;
)sql",
    // 6: sweeps; their variants are jobs that name them.
    R"sql(
CREATE TABLE sweeps (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL, spec TEXT NOT NULL, cancelled INTEGER NOT NULL DEFAULT 0,
  rungs TEXT NOT NULL DEFAULT '[]', created_at INTEGER NOT NULL);
CREATE INDEX sweeps_by_tenant ON sweeps(tenant, seq);
ALTER TABLE jobs ADD COLUMN sweep_id TEXT;
CREATE INDEX jobs_by_sweep ON jobs(sweep_id, seq);
)sql",
    // 7: a group's dtype (jobs may require one) and its CPU; groups registered before computed in
    // bf16 on CUDA and fp32 on CPU.
    R"sql(
ALTER TABLE workers ADD COLUMN dtype TEXT NOT NULL DEFAULT 'fp32';
ALTER TABLE workers ADD COLUMN cpu TEXT NOT NULL DEFAULT '';
UPDATE workers SET dtype = 'bf16' WHERE device = 'cuda';
)sql",
};

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const std::string& path, StoreOptions options) {
  BITFLEET_ASSIGN_OR_RETURN(std::unique_ptr<Database> db, Database::open(path));
  std::unique_ptr<Store> store(new Store(std::move(db), options));
  BITFLEET_RETURN_IF_ERROR(store->migrate());
  return store;
}

Status Store::migrate() {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_RETURN_IF_ERROR(db_->exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"));
  BITFLEET_ASSIGN_OR_RETURN(Statement * read, db_->prepare("SELECT value FROM meta WHERE key = 'schema_version'"));
  BITFLEET_ASSIGN_OR_RETURN(bool found, read->step());
  int64_t version = 0;
  if (found) {
    BITFLEET_ASSIGN_OR_RETURN(version, common::parse_int64(read->text(0), "the stored schema_version"));
  }
  read->reset();
  const int latest = static_cast<int>(std::size(kMigrations));
  if (version > latest) {
    return Status(StatusCode::kFailedPrecondition, "the data directory's schema is version " + std::to_string(version) +
                                                       ", newer than this coordinator's " + std::to_string(latest));
  }
  for (; version < latest; ++version) {
    Transaction tx(*db_);
    BITFLEET_RETURN_IF_ERROR(tx.begin());
    BITFLEET_RETURN_IF_ERROR(db_->exec(kMigrations[version]));
    BITFLEET_RETURN_IF_ERROR(db_->exec("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '" +
                                       std::to_string(version + 1) + "')"));
    BITFLEET_RETURN_IF_ERROR(tx.commit());
  }
  schema_version_ = static_cast<int>(version);
  return Status::ok();
}

Status Store::append_event(int64_t job_seq, const std::string& type, const nlohmann::json& data, int64_t now) {
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "INSERT INTO job_events(job_seq, seq, created_at, type, data) VALUES "
      "(?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_seq = ?1), ?2, ?3, ?4)"));
  return s->bind(1, job_seq).bind(2, now).bind(3, type).bind(4, data.dump()).run();
}

Result<std::optional<std::vector<std::string>>> Store::find_idempotent(const std::string& tenant,
                                                                       const IdempotencyKey& key, int64_t now) {
  using Ids = std::optional<std::vector<std::string>>;
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "SELECT request_hash, resource_ids, created_at FROM idempotency WHERE tenant = ?1 AND key = ?2"));
  s->bind(1, tenant).bind(2, key.key);
  BITFLEET_ASSIGN_OR_RETURN(bool found, s->step());
  if (!found) return Ids();
  if (s->integer(2) < now - options_.idempotency_ttl_ms) {
    s->reset();
    BITFLEET_ASSIGN_OR_RETURN(Statement * del, db_->prepare("DELETE FROM idempotency WHERE tenant = ?1 AND key = ?2"));
    BITFLEET_RETURN_IF_ERROR(del->bind(1, tenant).bind(2, key.key).run());
    return Ids();
  }
  if (s->text(0) != key.request_hash) {
    return Status(StatusCode::kFailedPrecondition,
                  "Idempotency-Key \"" + key.key + "\" was used for a different request", "Idempotency-Key");
  }
  auto ids = common::parse_json(s->text(1), "idempotency.resource_ids");
  std::vector<std::string> out;
  if (ids.is_ok() && ids->is_array()) {
    for (const auto& id : *ids) {
      if (id.is_string()) out.push_back(id.get<std::string>());
    }
  }
  return Ids(std::move(out));
}

Status Store::save_idempotent(const std::string& tenant, const IdempotencyKey& key, const std::vector<std::string>& ids,
                              int64_t now) {
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "INSERT INTO idempotency(tenant, key, request_hash, status, body, created_at, resource_ids) "
      "VALUES (?1, ?2, ?3, 201, '', ?4, ?5)"));
  return s->bind(1, tenant).bind(2, key.key).bind(3, key.request_hash).bind(4, now)
      .bind(5, nlohmann::json(ids).dump()).run();
}

Result<int64_t> Store::expire_idempotency_keys(int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("DELETE FROM idempotency WHERE created_at < ?1"));
  BITFLEET_RETURN_IF_ERROR(s->bind(1, now - options_.idempotency_ttl_ms).run());
  return static_cast<int64_t>(db_->changes());
}

Result<std::vector<std::string>> Store::referenced_blobs() {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "SELECT id FROM files UNION ALL SELECT checkpoint_blob FROM jobs WHERE checkpoint_blob IS NOT NULL "
      "UNION ALL SELECT artifact_blob FROM jobs WHERE artifact_blob IS NOT NULL"));
  std::vector<std::string> ids;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) break;
    ids.push_back(s->text(0));
  }
  return ids;
}

Result<CreatedFile> Store::insert_file(const FileRecord& f, const std::optional<IdempotencyKey>& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  if (key) {
    BITFLEET_ASSIGN_OR_RETURN(auto ids, find_idempotent(f.tenant, *key, f.created_at));
    if (ids) {
      CreatedFile replay{std::nullopt, true};
      if (!ids->empty()) {
        BITFLEET_ASSIGN_OR_RETURN(replay.file, load_file(ids->front()));
      }
      return replay;
    }
  }
  if (options_.max_stored_bytes_per_tenant > 0) {
    BITFLEET_ASSIGN_OR_RETURN(Statement * used, db_->prepare("SELECT COALESCE(SUM(bytes), 0) FROM files WHERE tenant = ?1"));
    used->bind(1, f.tenant);
    BITFLEET_ASSIGN_OR_RETURN(bool row, used->step());
    const int64_t stored = row ? used->integer(0) : 0;
    used->reset();
    if (stored + f.bytes > options_.max_stored_bytes_per_tenant) {
      return Status(StatusCode::kResourceExhausted,
                    "tenant " + f.tenant + " stores " + std::to_string(stored) + " bytes of files; with these " +
                        std::to_string(f.bytes) + " it would pass its limit of " +
                        std::to_string(options_.max_stored_bytes_per_tenant) + " bytes: delete files it no longer needs",
                    "body");
    }
  }
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "INSERT INTO files(id, tenant, filename, format, bytes, sha256, rows, columns, created_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"));
  BITFLEET_RETURN_IF_ERROR(s->bind(1, f.id).bind(2, f.tenant).bind(3, f.filename).bind(4, f.format).bind(5, f.bytes)
                               .bind(6, f.sha256).bind(7, f.rows).bind(8, nlohmann::json(f.columns).dump())
                               .bind(9, f.created_at).run());
  if (key) BITFLEET_RETURN_IF_ERROR(save_idempotent(f.tenant, *key, {f.id}, f.created_at));
  BITFLEET_RETURN_IF_ERROR(tx.commit());
  return CreatedFile{f, false};
}

Result<std::optional<FileRecord>> Store::load_file(const std::string& id) {
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("SELECT " + std::string(kFileColumns) + " FROM files WHERE id = ?1"));
  s->bind(1, id);
  BITFLEET_ASSIGN_OR_RETURN(bool found, s->step());
  if (!found) return std::optional<FileRecord>();
  BITFLEET_ASSIGN_OR_RETURN(FileRecord f, file_from_row(*s));
  return std::optional<FileRecord>(std::move(f));
}

Result<std::optional<FileRecord>> Store::get_file(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return load_file(id);
}

Result<Page<FileRecord>> Store::list_files(const std::string& tenant, int64_t limit, const std::string& after,
                                           const std::string& sha256) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Newest first; a cursor is the id of the last file of the previous page.
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "SELECT " + std::string(kFileColumns) + " FROM files WHERE (?1 = '' OR tenant = ?1) "
      "AND (?2 = '' OR seq < (SELECT seq FROM files WHERE id = ?2)) AND (?4 = '' OR sha256 = ?4) "
      "ORDER BY seq DESC LIMIT ?3"));
  s->bind(1, tenant).bind(2, after).bind(3, limit + 1).bind(4, sha256);
  Page<FileRecord> page;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) break;
    BITFLEET_ASSIGN_OR_RETURN(FileRecord f, file_from_row(*s));
    page.data.push_back(std::move(f));
  }
  if (static_cast<int64_t>(page.data.size()) > limit) {
    page.data.pop_back();
    page.has_more = true;
  }
  return page;
}

Status Store::delete_file(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  BITFLEET_ASSIGN_OR_RETURN(Statement * used, db_->prepare(
      "SELECT id FROM jobs WHERE (train_file = ?1 OR validation_file = ?1 OR test_file = ?1) "
      "AND status IN ('queued', 'running') LIMIT 1"));
  used->bind(1, id);
  BITFLEET_ASSIGN_OR_RETURN(bool in_use, used->step());
  if (in_use) {
    return Status(StatusCode::kFailedPrecondition, "file " + id + " is used by " + used->text(0) + ", which has not finished");
  }
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("DELETE FROM files WHERE id = ?1"));
  BITFLEET_RETURN_IF_ERROR(s->bind(1, id).run());
  if (db_->changes() == 0) return not_found("no file " + id);
  return tx.commit();
}

Status Store::insert_jobs(const std::string& tenant, std::vector<JobRecord>& jobs) {
  if (options_.max_queued_jobs_per_tenant > 0) {
    BITFLEET_ASSIGN_OR_RETURN(Statement * q, db_->prepare(
        "SELECT COUNT(*) FROM jobs WHERE tenant = ?1 AND status = 'queued'"));
    q->bind(1, tenant);
    BITFLEET_ASSIGN_OR_RETURN(bool row, q->step());
    const int64_t queued = row ? q->integer(0) : 0;
    q->reset();
    if (queued + static_cast<int64_t>(jobs.size()) > options_.max_queued_jobs_per_tenant) {
      return Status(StatusCode::kResourceExhausted,
                    "tenant " + tenant + " has " + std::to_string(queued) + " queued jobs; " +
                        std::to_string(jobs.size()) + " more would pass its limit of " +
                        std::to_string(options_.max_queued_jobs_per_tenant) + ": wait for some to start",
                    "jobs");
    }
  }
  for (auto& job : jobs) {
    BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
        "INSERT INTO jobs(id, tenant, backbone, priority, request, train_file, validation_file, test_file, sweep_id, "
        "status, created_at, queued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?9, ?10, 'queued', ?8, ?8)"));
    s->bind(1, job.id).bind(2, tenant).bind(3, job.request.backbone).bind(4, int64_t{job.request.priority})
        .bind(5, common::to_json(job.request).dump()).bind(6, job.request.train_file).bind(8, job.created_at);
    for (auto [index, value] : {std::pair{7, &job.request.validation_file}, {9, &job.request.test_file}, {10, &job.sweep_id}}) {
      if (value->empty()) {
        s->bind_null(index);
      } else {
        s->bind(index, *value);
      }
    }
    BITFLEET_RETURN_IF_ERROR(s->run());
    job.seq = sqlite3_last_insert_rowid(db_->handle());
    job.tenant = tenant;
    job.status = kQueued;
    job.queued_at = job.created_at;
    BITFLEET_RETURN_IF_ERROR(append_event(job.seq, "status", {{"status", kQueued}}, job.created_at));
  }
  return Status::ok();
}

Result<CreatedJobs> Store::create_jobs(const std::string& tenant, const std::vector<JobRecord>& jobs,
                                       const std::optional<IdempotencyKey>& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t now = jobs.empty() ? 0 : jobs.front().created_at;
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  if (key) {
    BITFLEET_ASSIGN_OR_RETURN(auto ids, find_idempotent(tenant, *key, now));
    if (ids) {
      CreatedJobs replay{{}, true};
      for (const auto& id : *ids) {
        BITFLEET_ASSIGN_OR_RETURN(auto job, load_job(id));
        if (job) replay.jobs.push_back(std::move(*job));
      }
      return replay;
    }
  }
  CreatedJobs created{jobs, false};
  BITFLEET_RETURN_IF_ERROR(insert_jobs(tenant, created.jobs));
  std::vector<std::string> ids;
  for (const auto& job : created.jobs) ids.push_back(job.id);
  if (key) BITFLEET_RETURN_IF_ERROR(save_idempotent(tenant, *key, ids, now));
  BITFLEET_RETURN_IF_ERROR(tx.commit());
  return created;
}

Result<std::optional<JobRecord>> Store::load_job(const std::string& id) {
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("SELECT " + std::string(kJobColumns) + " FROM jobs WHERE id = ?1"));
  s->bind(1, id);
  BITFLEET_ASSIGN_OR_RETURN(bool found, s->step());
  if (!found) return std::optional<JobRecord>();
  BITFLEET_ASSIGN_OR_RETURN(JobRecord job, job_from_row(*s));
  return std::optional<JobRecord>(std::move(job));
}

Result<std::optional<JobRecord>> Store::get_job(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return load_job(id);
}

Result<Page<JobRecord>> Store::list_jobs(const std::string& tenant, const std::string& status, int64_t limit,
                                         const std::string& after) {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "SELECT " + std::string(kJobColumns) + " FROM jobs WHERE (?1 = '' OR tenant = ?1) AND (?2 = '' OR status = ?2) "
      "AND (?3 = '' OR seq < (SELECT seq FROM jobs WHERE id = ?3)) ORDER BY seq DESC LIMIT ?4"));
  s->bind(1, tenant).bind(2, status).bind(3, after).bind(4, limit + 1);
  Page<JobRecord> page;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) break;
    BITFLEET_ASSIGN_OR_RETURN(JobRecord job, job_from_row(*s));
    page.data.push_back(std::move(job));
  }
  if (static_cast<int64_t>(page.data.size()) > limit) {
    page.data.pop_back();
    page.has_more = true;
  }
  return page;
}

Status Store::set_status(const JobRecord& job, const std::string& status, const std::string& reason, int64_t now) {
  const bool finished = status == kSucceeded || status == kFailed || status == kCancelled;
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "UPDATE jobs SET status = ?2, error = CASE WHEN ?3 = '' THEN error ELSE ?3 END, "
      "finished_at = CASE WHEN ?4 THEN ?5 ELSE finished_at END, "
      "queued_at = CASE WHEN ?2 = 'queued' THEN ?5 ELSE queued_at END, "
      "worker_id = CASE WHEN ?2 = 'running' THEN worker_id ELSE NULL END WHERE seq = ?1"));
  BITFLEET_RETURN_IF_ERROR(s->bind(1, job.seq).bind(2, status).bind(3, reason).bind(4, int64_t{finished}).bind(5, now).run());
  if (status != kRunning) {
    BITFLEET_ASSIGN_OR_RETURN(Statement * drop, db_->prepare("DELETE FROM leases WHERE job_id = ?1"));
    BITFLEET_RETURN_IF_ERROR(drop->bind(1, job.id).run());
  }
  nlohmann::json data = {{"status", status}, {"attempt", job.attempt}};
  if (!reason.empty()) data["reason"] = reason;
  return append_event(job.seq, "status", data, now);
}

Result<JobRecord> Store::cancel_job(const std::string& id, int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  BITFLEET_ASSIGN_OR_RETURN(auto job, load_job(id));
  if (!job) return not_found("no job " + id);
  if (job->status != kQueued && job->status != kRunning) {
    return Status(StatusCode::kFailedPrecondition, "job " + id + " has already " + job->status);
  }
  BITFLEET_RETURN_IF_ERROR(set_status(*job, kCancelled, "cancelled by request", now));
  BITFLEET_RETURN_IF_ERROR(tx.commit());
  BITFLEET_ASSIGN_OR_RETURN(auto updated, load_job(id));
  return *updated;
}

Result<Page<EventRecord>> Store::list_events(const std::string& job_id, int64_t after, int64_t limit) {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "SELECT e.seq, e.created_at, e.type, e.data FROM job_events e JOIN jobs j ON j.seq = e.job_seq "
      "WHERE j.id = ?1 AND e.seq > ?2 ORDER BY e.seq LIMIT ?3"));
  s->bind(1, job_id).bind(2, after).bind(3, limit + 1);
  Page<EventRecord> page;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) break;
    BITFLEET_ASSIGN_OR_RETURN(nlohmann::json data, json_column(*s, 3, "an event's data"));
    page.data.push_back({s->integer(0), s->integer(1), s->text(2), std::move(data)});
  }
  if (static_cast<int64_t>(page.data.size()) > limit) {
    page.data.pop_back();
    page.has_more = true;
  }
  return page;
}

Result<std::vector<Store::TenantCount>> Store::tenant_job_counts() {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "SELECT tenant, status, COUNT(*) FROM jobs WHERE status IN ('queued', 'running') GROUP BY tenant, status"));
  std::vector<TenantCount> out;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) break;
    out.push_back({s->text(0), s->text(1), s->integer(2)});
  }
  return out;
}

Result<std::vector<std::pair<std::string, int64_t>>> Store::job_counts() {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status"));
  std::vector<std::pair<std::string, int64_t>> out;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) break;
    out.emplace_back(s->text(0), s->integer(1));
  }
  return out;
}

}  // namespace bitfleet::coordinator
