// Service: the coordinator's request handling — authentication, the public API (/v1), the worker
// API (/internal/v1), operations endpoints, metrics, and the lease sweeper.
//
//   /v1/...            user and admin tokens; a user sees only its tenant's files and jobs
//   /internal/v1/...   the worker token only
//   /healthz /readyz /metrics /v1/openapi.json   no token
//
// Handlers are plain functions of a Request (run on the HTTP server's handler pool); all state is
// in the Store and the BlobStore. The sweeper thread expires leases once a second.
// Thread-safety: handle(), is_upload() and observe() may be called concurrently.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>

#include "common/status.h"
#include "coordinator/auth.h"
#include "coordinator/blob_store.h"
#include "coordinator/metrics.h"
#include "coordinator/rate_limiter.h"
#include "coordinator/router.h"
#include "coordinator/store.h"

namespace bitfleet::coordinator {

struct ServiceOptions {
  std::string data_dir;
  int64_t lease_ms = 60'000;       // a lease not renewed for this long expires
  int64_t max_expiries = 3;        // expiries after which a job fails instead of requeueing
  int64_t max_batch_jobs = 1000;
  int64_t max_sweep_variants = 64;
  int64_t idempotency_ttl_ms = 24 * 3600 * 1000;  // an Idempotency-Key is honoured this long
  int64_t max_queued_jobs_per_tenant = StoreOptions{}.max_queued_jobs_per_tenant;    // 0: none
  int64_t max_stored_bytes_per_tenant = StoreOptions{}.max_stored_bytes_per_tenant;  // 0: none
  double rate_limit_per_second = 0;  // per token on /v1; 0: no limit
  double rate_limit_burst = 0;       // 0: twice the rate (at least 10)
};

class Service {
 public:
  static Result<std::unique_ptr<Service>> create(ServiceOptions options, Auth auth);
  ~Service();

  Response handle(Request& request);
  bool is_upload(const std::string& method, const std::string& path) const;
  void observe(const Request& request, int status, double seconds);
  void start_sweeper();
  void stop_sweeper();
  // One pass of the sweeper: expires overdue leases and old idempotency keys (tests call it
  // directly).
  void sweep();
  std::string upload_dir() const { return options_.data_dir + "/tmp"; }

  // Successive halving's rule (sweeps_api.cpp): the sweep's `rungs` after what its `variants`
  // report now, and the variants to stop with their reasons; false when nothing changes.
  static bool next_rungs(const nlohmann::json& spec, const std::vector<JobRecord>& variants, nlohmann::json& rungs,
                         std::vector<std::pair<std::string, std::string>>& stop);

  struct Caller {
    Principal principal;
    bool sees(const std::string& tenant) const {
      return principal.role == Role::kAdmin || principal.tenant == tenant;
    }
  };

 private:
  Service(ServiceOptions options, Auth auth, std::unique_ptr<Store> store);
  void add_routes();

  // Files (files_api.cpp).
  Response create_file(Request& r, const Caller& c);
  Response list_files(Request& r, const Caller& c);
  Response get_file(Request& r, const Caller& c);
  Response file_content(Request& r, const Caller& c);
  Response delete_file(Request& r, const Caller& c);
  // Jobs (jobs_api.cpp).
  Response create_job(Request& r, const Caller& c);
  Response create_jobs_batch(Request& r, const Caller& c);
  Response list_jobs(Request& r, const Caller& c);
  Response get_job(Request& r, const Caller& c);
  Response cancel_job(Request& r, const Caller& c);
  Response job_events(Request& r, const Caller& c);
  Response job_artifact(Request& r, const Caller& c);
  // A validated job request (file ids resolved and columns checked) or the problem with it;
  // `path` prefixes field names ("jobs[3]").
  Result<common::JobRequest> validate_job(const nlohmann::json& body, const Caller& c, const std::string& path);
  Result<std::vector<common::JobRequest>> validate_job_batch(const nlohmann::json& body, const Caller& c);
  Result<std::optional<JobRecord>> visible_job(const std::string& id, const Caller& c);
  // The job object as /v1 shows it: job_json() and, for a queued job, its waiting_reason against
  // the live groups (left null if the store cannot list them).
  nlohmann::json job_view(const JobRecord& job);
  std::function<nlohmann::json(const JobRecord&)> job_viewer();
  // A job creation the store refused: 429 past the tenant's queued-jobs limit, else as usual.
  Response created_jobs_problem(const Status& s, const std::string& path, const Caller& c);

  Response artifact_response(const JobRecord& job);

  // Sweeps (sweeps_api.cpp).
  Response create_sweep(Request& r, const Caller& c);
  Response list_sweeps(Request& r, const Caller& c);
  Response get_sweep(Request& r, const Caller& c);
  Response cancel_sweep(Request& r, const Caller& c);
  Response sweep_artifact(Request& r, const Caller& c);
  Result<std::optional<SweepRecord>> visible_sweep(const std::string& id, const Caller& c);
  // The caller's sweep named by the path, with its variants; or the answer to give (404 when it
  // is not theirs).
  struct SweepView {
    SweepRecord sweep;
    std::vector<JobRecord> variants;
  };
  std::variant<SweepView, Response> find_sweep(Request& r, const Caller& c);
  // Successive halving after a variant of `sweep_id` reported an evaluation or finished.
  void halve(const std::string& sweep_id);

  // Worker groups (workers_api.cpp): GET /v1/workers, and the worker API.
  Response list_workers(Request& r, const Caller& c);
  Response register_worker(Request& r);
  Response lease(Request& r);
  Response heartbeat(Request& r);
  Response worker_events(Request& r);
  Response put_checkpoint(Request& r);
  Response get_checkpoint(Request& r);
  Response put_artifact(Request& r);
  Response complete(Request& r);
  Response fail(Request& r);
  Response release(Request& r);
  Response worker_file_content(Request& r);

  // Operations (service.cpp): /healthz, /readyz, /metrics, /v1/openapi.json.
  Response metrics_text();

  ServiceOptions options_;
  Auth auth_;
  std::unique_ptr<Store> store_;
  BlobStore blobs_;
  CoordinatorMetrics metrics_;
  RateLimiter limiter_;
  Router public_, internal_, operations_;

  std::thread sweeper_;
  std::mutex sweeper_mutex_;
  std::condition_variable sweeper_wake_;
  bool sweeper_stop_ = false;
};

// Unix time in milliseconds.
int64_t now_ms();

}  // namespace bitfleet::coordinator
