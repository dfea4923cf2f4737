// Store: worker groups, leases and the reports workers make under them.
#include <deque>
#include <map>
#include <tuple>

#include "coordinator/store.h"
#include "coordinator/store_rows.h"

namespace bitfleet::coordinator {

namespace {

constexpr const char* kWorkerColumns =
    "id, name, backbone, backbone_sha256, device, slots, ranks, free_slots, max_labels, max_seq_len, "
    "registered_at, last_heartbeat_at, dtype, cpu";

WorkerRecord worker_from_row(const Statement& s) {
  WorkerRecord w;
  w.id = s.text(0);
  w.name = s.text(1);
  w.backbone = s.text(2);
  w.backbone_sha256 = s.text(3);
  w.device = s.text(4);
  w.slots = s.integer(5);
  w.ranks = s.integer(6);
  w.free_slots = s.integer(7);
  w.max_labels = s.integer(8);
  w.max_seq_len = s.integer(9);
  w.registered_at = s.integer(10);
  w.last_heartbeat_at = s.integer(11);
  w.dtype = s.text(12);
  w.cpu = s.text(13);
  return w;
}

}  // namespace

Status Store::put_worker(const WorkerRecord& w) {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "INSERT OR REPLACE INTO workers(" + std::string(kWorkerColumns) +
      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"));
  return s->bind(1, w.id).bind(2, w.name).bind(3, w.backbone).bind(4, w.backbone_sha256).bind(5, w.device)
      .bind(6, w.slots).bind(7, w.ranks).bind(8, w.free_slots).bind(9, w.max_labels).bind(10, w.max_seq_len)
      .bind(11, w.registered_at).bind(12, w.last_heartbeat_at).bind(13, w.dtype).bind(14, w.cpu).run();
}

Result<std::optional<WorkerRecord>> Store::get_worker(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("SELECT " + std::string(kWorkerColumns) + " FROM workers WHERE id = ?1"));
  s->bind(1, id);
  BITFLEET_ASSIGN_OR_RETURN(bool found, s->step());
  if (!found) return std::optional<WorkerRecord>();
  return std::optional<WorkerRecord>(worker_from_row(*s));
}

Result<std::vector<WorkerRecord>> Store::list_workers() {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("SELECT " + std::string(kWorkerColumns) +
                                                        " FROM workers ORDER BY registered_at, id"));
  std::vector<WorkerRecord> out;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) break;
    out.push_back(worker_from_row(*s));
  }
  return out;
}

GroupFit group_fit(const WorkerRecord& group, const common::JobRequest& job) {
  const auto& dtype = job.hyperparameters.dtype;
  return {.labels = job.task.num_outputs() <= group.max_labels,
          .seq_len = job.hyperparameters.max_seq_len <= group.max_seq_len,
          .dtype = !dtype || common::dtype_name(*dtype) == group.dtype};
}

Result<std::vector<JobRecord>> Store::next_in_fair_share(const WorkerRecord& worker, int64_t count) {
  // Running jobs per tenant: the share each already has.
  std::map<std::string, int64_t> share;
  BITFLEET_ASSIGN_OR_RETURN(Statement * r, db_->prepare(
      "SELECT tenant, COUNT(*) FROM jobs WHERE status = 'running' GROUP BY tenant"));
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, r->step());
    if (!row) break;
    share[r->text(0)] = r->integer(1);
  }
  // Tenants with queued jobs for this backbone, by a skip-scan of jobs_fair_queue: one index
  // probe per tenant, however many jobs each has queued.
  std::vector<std::string> tenants;
  BITFLEET_ASSIGN_OR_RETURN(Statement * t, db_->prepare(
      "WITH RECURSIVE t(tenant) AS ("
      "  SELECT MIN(tenant) FROM jobs WHERE status = 'queued' AND backbone = ?1"
      "  UNION ALL SELECT (SELECT MIN(tenant) FROM jobs WHERE status = 'queued' AND backbone = ?1 AND tenant > t.tenant)"
      "  FROM t WHERE t.tenant IS NOT NULL) "
      "SELECT tenant FROM t WHERE tenant IS NOT NULL"));
  t->bind(1, worker.backbone);
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, t->step());
    if (!row) break;
    tenants.push_back(t->text(0));
  }
  // Each tenant's next `count` jobs that this group can run, by priority then age (jobs with more
  // labels or positions than the group has, or that require another dtype, are left for another
  // group).
  std::vector<std::deque<JobRecord>> queues;
  BITFLEET_ASSIGN_OR_RETURN(Statement * q, db_->prepare(
      "SELECT " + std::string(kJobColumns) + " FROM jobs WHERE status = 'queued' AND backbone = ?1 AND tenant = ?2 "
      "ORDER BY priority DESC, seq LIMIT ?3"));
  for (const auto& tenant : tenants) {
    std::deque<JobRecord> fits;
    q->bind(1, worker.backbone).bind(2, tenant).bind(3, count * 8 + 16);
    while (static_cast<int64_t>(fits.size()) < count) {
      BITFLEET_ASSIGN_OR_RETURN(bool row, q->step());
      if (!row) break;
      BITFLEET_ASSIGN_OR_RETURN(JobRecord job, job_from_row(*q));
      if (!group_fit(worker, job.request).all()) continue;
      fits.push_back(std::move(job));
    }
    q->reset();
    if (!fits.empty()) queues.push_back(std::move(fits));
  }
  // Fair share first: the next job goes to the tenant with the fewest running (counting those
  // picked here); ties by the head job's priority, then its age.
  std::vector<JobRecord> picked;
  while (static_cast<int64_t>(picked.size()) < count) {
    std::deque<JobRecord>* best = nullptr;
    for (auto& queue : queues) {
      if (queue.empty()) continue;
      if (best == nullptr) {
        best = &queue;
        continue;
      }
      const JobRecord &a = queue.front(), &b = best->front();
      const int64_t share_a = share[a.tenant], share_b = share[b.tenant];
      if (std::tie(share_a, b.request.priority, a.seq) < std::tie(share_b, a.request.priority, b.seq)) best = &queue;
    }
    if (best == nullptr) break;
    ++share[best->front().tenant];
    picked.push_back(std::move(best->front()));
    best->pop_front();
  }
  return picked;
}

Result<std::vector<LeasedJob>> Store::lease_jobs(const std::string& worker_id, int64_t count, int64_t now,
                                                 int64_t lease_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  BITFLEET_ASSIGN_OR_RETURN(Statement * w, db_->prepare("SELECT " + std::string(kWorkerColumns) + " FROM workers WHERE id = ?1"));
  w->bind(1, worker_id);
  BITFLEET_ASSIGN_OR_RETURN(bool known, w->step());
  if (!known) return not_found("no worker group " + worker_id + " (register again)");
  const WorkerRecord worker = worker_from_row(*w);
  w->reset();

  // Read first, then update.
  BITFLEET_ASSIGN_OR_RETURN(std::vector<JobRecord> picked, next_in_fair_share(worker, count));

  std::vector<LeasedJob> out;
  for (auto& job : picked) {
    ++job.attempt;
    BITFLEET_ASSIGN_OR_RETURN(Statement * u, db_->prepare(
        "UPDATE jobs SET status = 'running', attempt = ?2, worker_id = ?3, started_at = COALESCE(started_at, ?4) "
        "WHERE seq = ?1"));
    BITFLEET_RETURN_IF_ERROR(u->bind(1, job.seq).bind(2, job.attempt).bind(3, worker_id).bind(4, now).run());
    BITFLEET_ASSIGN_OR_RETURN(Statement * l, db_->prepare(
        "INSERT OR REPLACE INTO leases(job_id, worker_id, attempt, expires_at) VALUES (?1, ?2, ?3, ?4)"));
    BITFLEET_RETURN_IF_ERROR(l->bind(1, job.id).bind(2, worker_id).bind(3, job.attempt).bind(4, now + lease_ms).run());
    BITFLEET_RETURN_IF_ERROR(append_event(job.seq, "status",
                                          {{"status", kRunning}, {"attempt", job.attempt}, {"worker_group", worker_id},
                                           {"resume_from_step", job.checkpoint_step}},
                                          now));
    if (!job.started_at) job.started_at = now;
    job.status = kRunning;
    job.worker_id = worker_id;
    LeasedJob leased{job, {}, std::nullopt, std::nullopt};
    auto existing_file = [&](const std::string& id) -> Result<FileRecord> {
      BITFLEET_ASSIGN_OR_RETURN(std::optional<FileRecord> f, load_file(id));
      if (!f) return data_loss("job " + job.id + " names file " + id + ", which is gone");
      return std::move(*f);
    };
    BITFLEET_ASSIGN_OR_RETURN(leased.train_file, existing_file(job.request.train_file));
    if (!job.request.validation_file.empty()) {
      BITFLEET_ASSIGN_OR_RETURN(FileRecord v, existing_file(job.request.validation_file));
      leased.validation_file = std::move(v);
    }
    if (!job.request.test_file.empty()) {
      BITFLEET_ASSIGN_OR_RETURN(FileRecord t, existing_file(job.request.test_file));
      leased.test_file = std::move(t);
    }
    out.push_back(std::move(leased));
  }
  BITFLEET_ASSIGN_OR_RETURN(Statement * touch, db_->prepare("UPDATE workers SET last_heartbeat_at = ?2 WHERE id = ?1"));
  BITFLEET_RETURN_IF_ERROR(touch->bind(1, worker_id).bind(2, now).run());
  BITFLEET_RETURN_IF_ERROR(tx.commit());
  return out;
}

Result<std::vector<std::string>> Store::heartbeat(const std::string& worker_id, int64_t free_slots,
                                                  const std::vector<JobReport>& jobs, int64_t now, int64_t lease_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  BITFLEET_ASSIGN_OR_RETURN(Statement * w, db_->prepare(
      "UPDATE workers SET last_heartbeat_at = ?2, free_slots = ?3 WHERE id = ?1"));
  BITFLEET_RETURN_IF_ERROR(w->bind(1, worker_id).bind(2, now).bind(3, free_slots).run());
  if (db_->changes() == 0) return not_found("no worker group " + worker_id + " (register again)");
  std::vector<std::string> drop;
  for (const auto& r : jobs) {
    BITFLEET_ASSIGN_OR_RETURN(Statement * l, db_->prepare(
        "UPDATE leases SET expires_at = ?4 WHERE job_id = ?1 AND worker_id = ?2 AND attempt = ?3"));
    BITFLEET_RETURN_IF_ERROR(l->bind(1, r.job_id).bind(2, worker_id).bind(3, r.attempt).bind(4, now + lease_ms).run());
    if (db_->changes() == 0) {
      drop.push_back(r.job_id);
      continue;
    }
    BITFLEET_ASSIGN_OR_RETURN(Statement * p, db_->prepare(
        "UPDATE jobs SET step = ?2, total_steps = ?3, train_loss = COALESCE(?4, train_loss) WHERE id = ?1"));
    p->bind(1, r.job_id).bind(2, r.step).bind(3, r.total_steps);
    if (r.train_loss) {
      p->bind(4, *r.train_loss);
    } else {
      p->bind_null(4);
    }
    BITFLEET_RETURN_IF_ERROR(p->run());
  }
  BITFLEET_RETURN_IF_ERROR(tx.commit());
  return drop;
}

Status Store::extend_leases(int64_t until) {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("UPDATE leases SET expires_at = ?1 WHERE expires_at < ?1"));
  return s->bind(1, until).run();
}

Result<std::vector<LeaseOutcome>> Store::expire_leases(int64_t now, int64_t max_expiries) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  BITFLEET_ASSIGN_OR_RETURN(Statement * q, db_->prepare("SELECT job_id, worker_id, attempt FROM leases WHERE expires_at < ?1"));
  q->bind(1, now);
  std::vector<std::tuple<std::string, std::string, int64_t>> expired;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, q->step());
    if (!row) break;
    expired.emplace_back(q->text(0), q->text(1), q->integer(2));
  }
  q->reset();
  std::vector<LeaseOutcome> out;
  for (const auto& [job_id, worker_id, attempt] : expired) {
    BITFLEET_ASSIGN_OR_RETURN(auto job, load_job(job_id));
    if (!job) continue;
    BITFLEET_ASSIGN_OR_RETURN(Statement * u, db_->prepare("UPDATE jobs SET expiries = expiries + 1 WHERE seq = ?1"));
    BITFLEET_RETURN_IF_ERROR(u->bind(1, job->seq).run());
    const int64_t expiries = job->expiries + 1;
    LeaseOutcome outcome{job_id, expiries < max_expiries, job->started_at};
    if (outcome.requeued) {
      BITFLEET_RETURN_IF_ERROR(set_status(*job, kQueued,
                                          "the lease of attempt " + std::to_string(attempt) + " on worker group " +
                                              worker_id + " expired; queued to resume from step " +
                                              std::to_string(job->checkpoint_step),
                                          now));
    } else {
      BITFLEET_RETURN_IF_ERROR(set_status(*job, kFailed,
                                          "its lease expired " + std::to_string(expiries) +
                                              " times (last on worker group " + worker_id + "): retry limit reached",
                                          now));
    }
    out.push_back(outcome);
  }
  BITFLEET_RETURN_IF_ERROR(tx.commit());
  return out;
}

Result<JobRecord> Store::leased_job(const std::string& job_id, const std::string& worker_id, int64_t attempt) {
  BITFLEET_ASSIGN_OR_RETURN(auto job, load_job(job_id));
  if (!job) return not_found("no job " + job_id);
  BITFLEET_ASSIGN_OR_RETURN(Statement * l, db_->prepare("SELECT worker_id, attempt FROM leases WHERE job_id = ?1"));
  l->bind(1, job_id);
  BITFLEET_ASSIGN_OR_RETURN(bool leased, l->step());
  if (!leased || l->text(0) != worker_id || l->integer(1) != attempt) {
    return conflict("job " + job_id + ": attempt " + std::to_string(attempt) + " on worker group " + worker_id +
                    " no longer holds the lease (the job is " + job->status +
                    (job->status == kRunning ? ", attempt " + std::to_string(job->attempt) : std::string()) + ")");
  }
  return *job;
}

Status Store::under_lease(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                          const std::function<Status(JobRecord&)>& body) {
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  BITFLEET_ASSIGN_OR_RETURN(JobRecord job, leased_job(job_id, worker_id, attempt));
  BITFLEET_RETURN_IF_ERROR(body(job));
  return tx.commit();
}

Status Store::add_events(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                         const std::vector<WorkerEvent>& events, int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  return under_lease(job_id, worker_id, attempt, [&](JobRecord& job) -> Status {
    for (const auto& e : events) {
      BITFLEET_RETURN_IF_ERROR(append_event(job.seq, e.type, e.data, now));
      if (e.type == "evaluation") BITFLEET_RETURN_IF_ERROR(record_evaluation(job, e.data));
    }
    return Status::ok();
  });
}

Status Store::record_evaluation(JobRecord& job, const nlohmann::json& data) {
  const bool ok = data.is_object() && data.contains("step") && data["step"].is_number_integer() &&
                  data.contains("epoch") && data["epoch"].is_number_integer() && data.contains("metrics") &&
                  data["metrics"].is_object() && (!data.contains("best") || data["best"].is_null() || data["best"].is_object());
  if (!ok) {
    return invalid_argument("an evaluation event's data must be {step, epoch, metrics: {...}, best: {...} | null}", "events");
  }
  const int64_t step = data["step"].get<int64_t>();
  nlohmann::json kept = nlohmann::json::array();
  for (const auto& e : job.evaluations) {
    if (e.is_object() && e.value("step", int64_t{0}) < step) kept.push_back(e);
  }
  kept.push_back({{"step", step}, {"epoch", data["epoch"]}, {"metrics", data["metrics"]}});
  if (kept.size() > kMaxEvaluations) kept.erase(kept.begin(), kept.begin() + static_cast<std::ptrdiff_t>(kept.size() - kMaxEvaluations));
  job.evaluations = std::move(kept);
  if (data.contains("best") && data["best"].is_object()) job.best = data["best"];
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("UPDATE jobs SET evaluations = ?2, best = ?3 WHERE seq = ?1"));
  s->bind(1, job.seq).bind(2, job.evaluations.dump());
  if (job.best.is_null()) {
    s->bind_null(3);
  } else {
    s->bind(3, job.best.dump());
  }
  return s->run();
}

Result<std::string> Store::set_checkpoint(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                                          const std::string& blob, int64_t step, int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string previous;
  BITFLEET_RETURN_IF_ERROR(under_lease(job_id, worker_id, attempt, [&](JobRecord& job) -> Status {
    BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
        "UPDATE jobs SET checkpoint_blob = ?2, checkpoint_step = ?3 WHERE seq = ?1"));
    BITFLEET_RETURN_IF_ERROR(s->bind(1, job.seq).bind(2, blob).bind(3, step).run());
    previous = job.checkpoint_blob;
    return append_event(job.seq, "checkpoint", {{"step", step}, {"attempt", attempt}}, now);
  }));
  return previous;
}

Result<std::string> Store::set_artifact(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                                        const std::string& blob, int64_t bytes, const std::string& sha256) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string previous;
  BITFLEET_RETURN_IF_ERROR(under_lease(job_id, worker_id, attempt, [&](JobRecord& job) -> Status {
    BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
        "UPDATE jobs SET artifact_blob = ?2, artifact_bytes = ?3, artifact_sha256 = ?4 WHERE seq = ?1"));
    previous = job.artifact_blob;
    return s->bind(1, job.seq).bind(2, blob).bind(3, bytes).bind(4, sha256).run();
  }));
  return previous;
}

Result<JobRecord> Store::complete_job(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                                      const nlohmann::json& metrics, std::optional<double> train_loss, int64_t steps,
                                      const nlohmann::json& outcome, int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_RETURN_IF_ERROR(under_lease(job_id, worker_id, attempt, [&](JobRecord& job) -> Status {
    if (job.artifact_blob.empty()) {
      return Status(StatusCode::kFailedPrecondition, "job " + job_id + " has no artifact: upload it before completing");
    }
    BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
        "UPDATE jobs SET metrics = ?2, train_loss = ?3, step = ?4, total_steps = ?4, outcome = ?5 WHERE seq = ?1"));
    s->bind(1, job.seq).bind(2, metrics.dump()).bind(4, steps).bind(5, outcome.dump());
    if (train_loss) {
      s->bind(3, *train_loss);
    } else {
      s->bind_null(3);
    }
    BITFLEET_RETURN_IF_ERROR(s->run());
    return set_status(job, kSucceeded, "", now);
  }));
  BITFLEET_ASSIGN_OR_RETURN(auto done, load_job(job_id));
  return *done;
}

Result<JobRecord> Store::fail_job(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                                  const std::string& reason, int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_RETURN_IF_ERROR(under_lease(job_id, worker_id, attempt,
                                       [&](JobRecord& job) { return set_status(job, kFailed, reason, now); }));
  BITFLEET_ASSIGN_OR_RETURN(auto done, load_job(job_id));
  return *done;
}

Status Store::release_job(const std::string& job_id, const std::string& worker_id, int64_t attempt, int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  return under_lease(job_id, worker_id, attempt, [&](JobRecord& job) {
    return set_status(job, kQueued,
                      "released by worker group " + worker_id + "; queued to resume from step " +
                          std::to_string(job.checkpoint_step),
                      now);
  });
}

}  // namespace bitfleet::coordinator
