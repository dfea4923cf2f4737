// Store: the coordinator's durable state in SQLite (WAL, synchronous=FULL) — files, jobs, job
// events, worker groups, leases and idempotency keys — behind domain operations.
//
// Every operation is one transaction, so a state change and its job event land together, and a
// job whose creation was acknowledged survives kill -9. Creation under an Idempotency-Key records
// the created ids in the same transaction: a retry creates nothing and is answered with those
// resources as they are now (a job cancelled since shows as cancelled; a file deleted since is
// gone). Keys are forgotten after the idempotency TTL.
// Leases: a running job has one lease (worker group, attempt, expiry); every worker report names
// its attempt, and a report whose attempt is not the live lease's is refused (Conflict).
// Schema changes are numbered migrations, applied in order at start.
//
// Thread-safety: every public method may be called from any thread; they are serialised by one
// mutex around the single connection (the coordinator's store has one owner).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/job_spec.h"
#include "common/status.h"
#include "coordinator/sqlite.h"

namespace bitfleet::coordinator {

inline constexpr const char* kQueued = "queued";
inline constexpr const char* kRunning = "running";
inline constexpr const char* kSucceeded = "succeeded";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kCancelled = "cancelled";

struct FileRecord {
  std::string id, tenant, filename, format, sha256;
  int64_t bytes = 0, rows = 0, created_at = 0;  // created_at: unix ms
  std::vector<std::string> columns;
};

struct JobRecord {
  int64_t seq = 0;
  std::string id, tenant, backbone, status;
  common::JobRequest request;
  int64_t attempt = 0, expiries = 0;
  int64_t created_at = 0, queued_at = 0;  // unix ms
  std::optional<int64_t> started_at, finished_at, total_steps;
  std::string worker_id, error;
  int64_t step = 0;
  std::optional<double> train_loss;
  nlohmann::json metrics;  // null until the job reports them: its result's (the best evaluation's)
  nlohmann::json evaluations = nlohmann::json::array();  // [{step, epoch, metrics}], from "evaluation" events
  nlohmann::json best;     // {step, epoch, metrics}: the best evaluation so far; null before one
  nlohmann::json outcome;  // at completion: {final_metrics, test_metrics, best_step, stopped_early}
  std::string sweep_id;    // "" unless a sweep's variant
  std::string checkpoint_blob, artifact_blob, artifact_sha256;
  int64_t checkpoint_step = 0, artifact_bytes = 0;
};

// A sweep: its spec (common::to_json(SweepSpec)); its variants are jobs with its id in sweep_id.
struct SweepRecord {
  int64_t seq = 0;
  std::string id, tenant;
  bool cancelled = false;
  nlohmann::json spec;
  nlohmann::json rungs = nlohmann::json::array();  // successive halving: [{rung, kept: [job], stopped: [job]}]
  int64_t created_at = 0;
};

struct CreatedSweep {
  SweepRecord sweep;
  std::vector<JobRecord> variants;
  bool replayed = false;
};

struct EventRecord {
  int64_t seq = 0, created_at = 0;
  std::string type;
  nlohmann::json data;
};

struct WorkerRecord {
  std::string id, name, backbone, backbone_sha256, device;
  std::string dtype = "fp32", cpu;  // what the group computes in; its CPU (CpuIsa::summary())
  int64_t slots = 0, ranks = 1, free_slots = 0, max_labels = 0, max_seq_len = 0;
  int64_t registered_at = 0, last_heartbeat_at = 0;
};

// What a job needs of a worker group of its backbone, one flag per need, and whether `group` has
// each: no more labels (or token classes) than the group's --max-labels, no longer max_seq_len
// than its --max-seq-len, the dtype the job requires if any. The scheduler leases a job only to a
// group with all three; GET /v1/jobs explains a queued job that no live group can take by them.
struct GroupFit {
  bool labels = false, seq_len = false, dtype = false;
  bool all() const { return labels && seq_len && dtype; }
};
GroupFit group_fit(const WorkerRecord& group, const common::JobRequest& job);

template <typename T>
struct Page {
  std::vector<T> data;
  bool has_more = false;
};

struct IdempotencyKey {
  std::string key;
  std::string request_hash;  // sha256 of method, path and body: a key reused for another request is refused
};

// What a create under an Idempotency-Key did: created the records now, or found them created by
// an earlier request with the same key (`replayed`), in their current state.
struct CreatedFile {
  std::optional<FileRecord> file;  // empty only when replayed and the file was deleted since
  bool replayed = false;
};
struct CreatedJobs {
  std::vector<JobRecord> jobs;
  bool replayed = false;
};

struct StoreOptions {
  int64_t idempotency_ttl_ms = 24 * 3600 * 1000;  // a key older than this is forgotten
  // Per tenant: creating jobs past the queued limit, or files past the bytes limit, is refused
  // with ResourceExhausted naming the limit (the API answers 429 and 413). 0: no limit.
  int64_t max_queued_jobs_per_tenant = 100'000;
  int64_t max_stored_bytes_per_tenant = 100ll << 30;
};

struct LeasedJob {
  JobRecord job;
  FileRecord train_file;
  std::optional<FileRecord> validation_file;
  std::optional<FileRecord> test_file;
};

struct JobReport {  // one running job in a heartbeat
  std::string job_id;
  int64_t attempt = 0, step = 0, total_steps = 0;
  std::optional<double> train_loss;
};

struct WorkerEvent {
  std::string type;
  nlohmann::json data;
};

struct LeaseOutcome {
  std::string job_id;
  bool requeued = false;  // else failed: too many expiries
  std::optional<int64_t> started_at;
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> open(const std::string& path, StoreOptions options = {});
  int schema_version() const { return schema_version_; }

  // Files.
  Result<CreatedFile> insert_file(const FileRecord& file, const std::optional<IdempotencyKey>& key);
  Result<std::optional<FileRecord>> get_file(const std::string& id);
  // tenant "" lists every tenant's.
  // sha256: "" or only files with that content digest.
  Result<Page<FileRecord>> list_files(const std::string& tenant, int64_t limit, const std::string& after,
                                      const std::string& sha256 = "");
  // Fails with FailedPrecondition while a queued or running job uses the file.
  Status delete_file(const std::string& id);

  // Jobs. Ids are given (generated by the caller); all jobs are created in one transaction.
  // The key's time is the first job's created_at.
  Result<CreatedJobs> create_jobs(const std::string& tenant, const std::vector<JobRecord>& jobs,
                                  const std::optional<IdempotencyKey>& key);
  Result<std::optional<JobRecord>> get_job(const std::string& id);
  Result<Page<JobRecord>> list_jobs(const std::string& tenant, const std::string& status, int64_t limit,
                                    const std::string& after);
  // Queued: cancelled at once. Running: cancelled at once too, its lease revoked (the worker
  // learns on its next heartbeat). Finished: FailedPrecondition.
  Result<JobRecord> cancel_job(const std::string& id, int64_t now);
  Result<Page<EventRecord>> list_events(const std::string& job_id, int64_t after, int64_t limit);

  // Sweeps (store_sweeps.cpp). A sweep and its variants are created in one transaction, under
  // the tenant's queued-jobs limit like any jobs.
  Result<CreatedSweep> create_sweep(SweepRecord sweep, std::vector<JobRecord> variants,
                                    const std::optional<IdempotencyKey>& key);
  Result<std::optional<SweepRecord>> get_sweep(const std::string& id);
  Result<Page<SweepRecord>> list_sweeps(const std::string& tenant, int64_t limit, const std::string& after);
  Result<std::vector<JobRecord>> sweep_variants(const std::string& sweep_id);  // in creation order
  // Per sweep: cancelled, and its variants queued, running and succeeded (for the metrics).
  struct SweepTally {
    bool cancelled = false;
    int64_t queued = 0, running = 0, succeeded = 0;
  };
  Result<std::vector<SweepTally>> sweep_tallies();
  // The sweep is marked cancelled and its unfinished variants are cancelled as cancel_job does.
  Result<SweepRecord> cancel_sweep(const std::string& id, int64_t now);
  // Successive halving's decisions: the sweep's rungs become `rungs` and the `stop` variants still
  // queued or running are cancelled with their reasons — only if its rungs are still `expected`
  // (else false: another request decided first, and the caller looks again).
  Result<bool> update_rungs(const std::string& sweep_id, const nlohmann::json& expected, const nlohmann::json& rungs,
                            const std::vector<std::pair<std::string, std::string>>& stop, int64_t now);
  Result<std::vector<std::pair<std::string, int64_t>>> job_counts();
  // Queued and running jobs per tenant: {tenant, status, count}.
  struct TenantCount {
    std::string tenant, status;
    int64_t count = 0;
  };
  Result<std::vector<TenantCount>> tenant_job_counts();

  // Forgets idempotency keys older than the TTL; returns how many.
  Result<int64_t> expire_idempotency_keys(int64_t now);
  // Every blob id a file or job refers to (datasets, checkpoints, artifacts): what is in the blob
  // store and not in here is an orphan left by a crash between a blob's rename and its commit.
  Result<std::vector<std::string>> referenced_blobs();

  // Worker groups.
  Status put_worker(const WorkerRecord& worker);
  Result<std::optional<WorkerRecord>> get_worker(const std::string& id);
  Result<std::vector<WorkerRecord>> list_workers();

  // Scheduling: hands a group up to `count` queued jobs for its backbone that fit its limits, by
  // fair share across tenants (the tenant with the fewest running jobs first: one tenant's
  // thousand queued jobs do not starve another's one), then priority, then age, each under a new
  // lease (attempt + 1) until now + lease_ms.
  Result<std::vector<LeasedJob>> lease_jobs(const std::string& worker_id, int64_t count, int64_t now,
                                            int64_t lease_ms);
  // Renews the leases the group still holds; returns the reported jobs it must drop (cancelled,
  // or leased to another attempt).
  Result<std::vector<std::string>> heartbeat(const std::string& worker_id, int64_t free_slots,
                                             const std::vector<JobReport>& jobs, int64_t now, int64_t lease_ms);
  // At start: leases that ran out while the coordinator was down get until `until` — its own
  // outage is not a worker group's failure. Groups that are alive renew them with their next
  // heartbeat; the rest expire then.
  Status extend_leases(int64_t until);
  // Expired leases: the job is queued again (to resume from its latest checkpoint), or failed once
  // it has expired max_expiries times.
  Result<std::vector<LeaseOutcome>> expire_leases(int64_t now, int64_t max_expiries);

  // Reports under a lease; each fails with Conflict unless (job, worker, attempt) holds the lease.
  // An "evaluation" event ({step, epoch, metrics, best}) also lands in the job's evaluations (one
  // per step: a resumed attempt's replaces the earlier one's; the latest kMaxEvaluations) and best.
  static constexpr size_t kMaxEvaluations = 1000;
  Status add_events(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                    const std::vector<WorkerEvent>& events, int64_t now);
  // Returns the blob the new one replaces ("" if none), for the caller to delete.
  Result<std::string> set_checkpoint(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                                     const std::string& blob, int64_t step, int64_t now);
  Result<std::string> set_artifact(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                                   const std::string& blob, int64_t bytes, const std::string& sha256);
  Result<JobRecord> complete_job(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                                 const nlohmann::json& metrics, std::optional<double> train_loss, int64_t steps,
                                 const nlohmann::json& outcome, int64_t now);
  Result<JobRecord> fail_job(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                             const std::string& reason, int64_t now);
  // The group gives the job back (it is shutting down): queued again, no expiry counted.
  Status release_job(const std::string& job_id, const std::string& worker_id, int64_t attempt, int64_t now);

 private:
  Store(std::unique_ptr<Database> db, StoreOptions options) : options_(options), db_(std::move(db)) {}
  Status migrate();
  Status append_event(int64_t job_seq, const std::string& type, const nlohmann::json& data, int64_t now);
  Status record_evaluation(JobRecord& job, const nlohmann::json& data);
  // Runs `body` on the job in one transaction if (job, worker, attempt) holds its lease (else
  // Conflict); the caller holds mutex_.
  Status under_lease(const std::string& job_id, const std::string& worker_id, int64_t attempt,
                     const std::function<Status(JobRecord&)>& body);
  // Inserts queued jobs (under the tenant's queued-jobs limit); sets their seq, status and times.
  Status insert_jobs(const std::string& tenant, std::vector<JobRecord>& jobs);
  Result<std::optional<SweepRecord>> load_sweep(const std::string& id);
  Result<std::vector<JobRecord>> load_variants(const std::string& sweep_id);
  // The ids created under a live key, or nullopt; FailedPrecondition for a key used for another
  // request. A key past the TTL is deleted here, so it can be used afresh.
  Result<std::optional<std::vector<std::string>>> find_idempotent(const std::string& tenant, const IdempotencyKey& key,
                                                                  int64_t now);
  Status save_idempotent(const std::string& tenant, const IdempotencyKey& key, const std::vector<std::string>& ids,
                         int64_t now);
  Result<std::optional<FileRecord>> load_file(const std::string& id);
  // The queued jobs lease_jobs hands `worker`, in order.
  Result<std::vector<JobRecord>> next_in_fair_share(const WorkerRecord& worker, int64_t count);
  Result<std::optional<JobRecord>> load_job(const std::string& id);
  // The job, if (worker, attempt) holds its lease; Conflict otherwise.
  Result<JobRecord> leased_job(const std::string& job_id, const std::string& worker_id, int64_t attempt);
  Status set_status(const JobRecord& job, const std::string& status, const std::string& reason, int64_t now);

  StoreOptions options_;
  std::mutex mutex_;
  std::unique_ptr<Database> db_;
  int schema_version_ = 0;
};

}  // namespace bitfleet::coordinator
