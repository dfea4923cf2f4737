// Store: sweeps — a sweep row and its variants (jobs naming it), created in one transaction;
// cancelling a sweep; successive halving's rung decisions.
#include "coordinator/store.h"
#include "coordinator/store_rows.h"

namespace bitfleet::coordinator {

Result<std::optional<SweepRecord>> Store::load_sweep(const std::string& id) {
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("SELECT " + std::string(kSweepColumns) + " FROM sweeps WHERE id = ?1"));
  s->bind(1, id);
  BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
  if (!row) return std::optional<SweepRecord>();
  BITFLEET_ASSIGN_OR_RETURN(SweepRecord sweep, sweep_from_row(*s));
  return std::optional(std::move(sweep));
}

Result<std::vector<JobRecord>> Store::load_variants(const std::string& sweep_id) {
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "SELECT " + std::string(kJobColumns) + " FROM jobs WHERE sweep_id = ?1 ORDER BY seq"));
  s->bind(1, sweep_id);
  std::vector<JobRecord> out;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) break;
    BITFLEET_ASSIGN_OR_RETURN(JobRecord job, job_from_row(*s));
    out.push_back(std::move(job));
  }
  return out;
}

Result<CreatedSweep> Store::create_sweep(SweepRecord sweep, std::vector<JobRecord> variants,
                                         const std::optional<IdempotencyKey>& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  if (key) {
    BITFLEET_ASSIGN_OR_RETURN(auto ids, find_idempotent(sweep.tenant, *key, sweep.created_at));
    if (ids) {
      CreatedSweep replay;
      replay.replayed = true;
      if (ids->size() != 1) return Status(StatusCode::kFailedPrecondition, "this Idempotency-Key created jobs, not a sweep", "Idempotency-Key");
      BITFLEET_ASSIGN_OR_RETURN(auto stored, load_sweep(ids->front()));
      if (!stored) return Status(StatusCode::kFailedPrecondition, "this Idempotency-Key created something else, not a sweep", "Idempotency-Key");
      replay.sweep = std::move(*stored);
      BITFLEET_ASSIGN_OR_RETURN(replay.variants, load_variants(replay.sweep.id));
      return replay;
    }
  }
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "INSERT INTO sweeps(id, tenant, spec, created_at) VALUES (?1, ?2, ?3, ?4)"));
  BITFLEET_RETURN_IF_ERROR(s->bind(1, sweep.id).bind(2, sweep.tenant).bind(3, sweep.spec.dump()).bind(4, sweep.created_at).run());
  sweep.seq = sqlite3_last_insert_rowid(db_->handle());
  for (auto& v : variants) v.sweep_id = sweep.id;
  BITFLEET_RETURN_IF_ERROR(insert_jobs(sweep.tenant, variants));
  if (key) BITFLEET_RETURN_IF_ERROR(save_idempotent(sweep.tenant, *key, {sweep.id}, sweep.created_at));
  BITFLEET_RETURN_IF_ERROR(tx.commit());
  return CreatedSweep{std::move(sweep), std::move(variants), false};
}

Result<std::optional<SweepRecord>> Store::get_sweep(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return load_sweep(id);
}

Result<std::vector<JobRecord>> Store::sweep_variants(const std::string& sweep_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return load_variants(sweep_id);
}

Result<std::vector<Store::SweepTally>> Store::sweep_tallies() {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "SELECT s.cancelled, COALESCE(SUM(j.status = 'queued'), 0), COALESCE(SUM(j.status = 'running'), 0), "
      "COALESCE(SUM(j.status = 'succeeded'), 0) FROM sweeps s LEFT JOIN jobs j ON j.sweep_id = s.id GROUP BY s.seq"));
  std::vector<SweepTally> out;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) break;
    out.push_back({s->integer(0) != 0, s->integer(1), s->integer(2), s->integer(3)});
  }
  return out;
}

Result<Page<SweepRecord>> Store::list_sweeps(const std::string& tenant, int64_t limit, const std::string& after) {
  std::lock_guard<std::mutex> lock(mutex_);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare(
      "SELECT " + std::string(kSweepColumns) + " FROM sweeps WHERE (?1 = '' OR tenant = ?1) "
      "AND (?2 = '' OR seq < (SELECT seq FROM sweeps WHERE id = ?2)) ORDER BY seq DESC LIMIT ?3"));
  s->bind(1, tenant).bind(2, after).bind(3, limit + 1);
  Page<SweepRecord> page;
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) break;
    BITFLEET_ASSIGN_OR_RETURN(SweepRecord sweep, sweep_from_row(*s));
    page.data.push_back(std::move(sweep));
  }
  if (static_cast<int64_t>(page.data.size()) > limit) {
    page.data.pop_back();
    page.has_more = true;
  }
  return page;
}

Result<SweepRecord> Store::cancel_sweep(const std::string& id, int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  BITFLEET_ASSIGN_OR_RETURN(auto sweep, load_sweep(id));
  if (!sweep) return not_found("no sweep " + id);
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("UPDATE sweeps SET cancelled = 1 WHERE seq = ?1"));
  BITFLEET_RETURN_IF_ERROR(s->bind(1, sweep->seq).run());
  BITFLEET_ASSIGN_OR_RETURN(auto variants, load_variants(id));
  for (const auto& v : variants) {
    if (v.status == kQueued || v.status == kRunning) {
      BITFLEET_RETURN_IF_ERROR(set_status(v, kCancelled, "the sweep " + id + " was cancelled", now));
    }
  }
  BITFLEET_RETURN_IF_ERROR(tx.commit());
  sweep->cancelled = true;
  return *sweep;
}

Result<bool> Store::update_rungs(const std::string& sweep_id, const nlohmann::json& expected, const nlohmann::json& rungs,
                                 const std::vector<std::pair<std::string, std::string>>& stop, int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction tx(*db_);
  BITFLEET_RETURN_IF_ERROR(tx.begin());
  BITFLEET_ASSIGN_OR_RETURN(auto sweep, load_sweep(sweep_id));
  if (!sweep) return not_found("no sweep " + sweep_id);
  if (sweep->rungs != expected || sweep->cancelled) return false;
  BITFLEET_ASSIGN_OR_RETURN(Statement * s, db_->prepare("UPDATE sweeps SET rungs = ?2 WHERE seq = ?1"));
  BITFLEET_RETURN_IF_ERROR(s->bind(1, sweep->seq).bind(2, rungs.dump()).run());
  for (const auto& [id, reason] : stop) {
    BITFLEET_ASSIGN_OR_RETURN(auto job, load_job(id));
    if (job && job->sweep_id == sweep_id && (job->status == kQueued || job->status == kRunning)) {
      BITFLEET_RETURN_IF_ERROR(set_status(*job, kCancelled, reason, now));
    }
  }
  BITFLEET_RETURN_IF_ERROR(tx.commit());
  return true;
}

}  // namespace bitfleet::coordinator
