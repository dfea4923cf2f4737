#include "coordinator/service.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "common/log.h"
#include "coordinator/handler_util.h"
#include "coordinator/openapi_document.h"
#include "coordinator/resources.h"
#include "common/net/problem.h"

namespace bitfleet::coordinator {

using net::problem;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::unique_ptr<Service>> Service::create(ServiceOptions options, Auth auth) {
  BITFLEET_ASSIGN_OR_RETURN(std::unique_ptr<Store> store,
                            Store::open(options.data_dir + "/bitfleet.db",
                                        {.idempotency_ttl_ms = options.idempotency_ttl_ms,
                                         .max_queued_jobs_per_tenant = options.max_queued_jobs_per_tenant,
                                         .max_stored_bytes_per_tenant = options.max_stored_bytes_per_tenant}));
  std::unique_ptr<Service> service(new Service(std::move(options), std::move(auth), std::move(store)));
  BITFLEET_RETURN_IF_ERROR(service->blobs_.init());
  // A crash between a blob's rename and its row's commit leaves a blob nothing refers to.
  BITFLEET_ASSIGN_OR_RETURN(auto referenced, service->store_->referenced_blobs());
  BITFLEET_ASSIGN_OR_RETURN(int64_t orphans, service->blobs_.remove_unreferenced(referenced));
  if (orphans > 0) BITFLEET_LOG(kWarning) << "removed " << orphans << " blobs no file or job refers to";
  BITFLEET_RETURN_IF_ERROR(service->store_->extend_leases(now_ms() + service->options_.lease_ms));
  service->add_routes();
  return service;
}

Service::Service(ServiceOptions options, Auth auth, std::unique_ptr<Store> store)
    : options_(std::move(options)),
      auth_(std::move(auth)),
      store_(std::move(store)),
      blobs_(options_.data_dir),
      limiter_(options_.rate_limit_per_second,
               options_.rate_limit_burst > 0 ? options_.rate_limit_burst : std::max(10.0, 2 * options_.rate_limit_per_second)) {}

Service::~Service() { stop_sweeper(); }

void Service::add_routes() {
  auto user = [this](Response (Service::*h)(Request&, const Caller&)) {
    return [this, h](Request& r) {
      Caller caller{auth_.authenticate(r.header("authorization")).value_or(Principal{})};
      return (this->*h)(r, caller);
    };
  };
  public_.add("POST", "/v1/files", user(&Service::create_file));
  public_.add("GET", "/v1/files", user(&Service::list_files));
  public_.add("GET", "/v1/files/{id}", user(&Service::get_file));
  public_.add("DELETE", "/v1/files/{id}", user(&Service::delete_file));
  public_.add("GET", "/v1/files/{id}/content", user(&Service::file_content));
  public_.add("POST", "/v1/jobs", user(&Service::create_job));
  public_.add("POST", "/v1/jobs/batch", user(&Service::create_jobs_batch));
  public_.add("GET", "/v1/jobs", user(&Service::list_jobs));
  public_.add("GET", "/v1/jobs/{id}", user(&Service::get_job));
  public_.add("POST", "/v1/jobs/{id}/cancel", user(&Service::cancel_job));
  public_.add("GET", "/v1/jobs/{id}/events", user(&Service::job_events));
  public_.add("GET", "/v1/jobs/{id}/artifact", user(&Service::job_artifact));
  public_.add("POST", "/v1/sweeps", user(&Service::create_sweep));
  public_.add("GET", "/v1/sweeps", user(&Service::list_sweeps));
  public_.add("GET", "/v1/sweeps/{id}", user(&Service::get_sweep));
  public_.add("POST", "/v1/sweeps/{id}/cancel", user(&Service::cancel_sweep));
  public_.add("GET", "/v1/sweeps/{id}/artifact", user(&Service::sweep_artifact));
  public_.add("GET", "/v1/workers", user(&Service::list_workers));

  auto worker = [this](Response (Service::*h)(Request&)) { return [this, h](Request& r) { return (this->*h)(r); }; };
  internal_.add("POST", "/internal/v1/workers", worker(&Service::register_worker));
  internal_.add("POST", "/internal/v1/workers/{id}/lease", worker(&Service::lease));
  internal_.add("POST", "/internal/v1/workers/{id}/heartbeat", worker(&Service::heartbeat));
  internal_.add("POST", "/internal/v1/jobs/{id}/events", worker(&Service::worker_events));
  internal_.add("PUT", "/internal/v1/jobs/{id}/checkpoint", worker(&Service::put_checkpoint));
  internal_.add("GET", "/internal/v1/jobs/{id}/checkpoint", worker(&Service::get_checkpoint));
  internal_.add("PUT", "/internal/v1/jobs/{id}/artifact", worker(&Service::put_artifact));
  internal_.add("POST", "/internal/v1/jobs/{id}/complete", worker(&Service::complete));
  internal_.add("POST", "/internal/v1/jobs/{id}/fail", worker(&Service::fail));
  internal_.add("POST", "/internal/v1/jobs/{id}/release", worker(&Service::release));
  internal_.add("GET", "/internal/v1/files/{id}/content", worker(&Service::worker_file_content));

  operations_.add("GET", "/healthz", [](Request&) { return json_response(200, {{"status", "ok"}}); });
  operations_.add("GET", "/readyz", [this](Request& r) {
    auto counts = store_->job_counts();
    if (!counts.is_ok()) return problem(503, "", "the job store is not answering", "", r.path);
    return json_response(200, {{"status", "ready"}, {"schema_version", store_->schema_version()}});
  });
  operations_.add("GET", "/metrics", [this](Request&) { return metrics_text(); });
  operations_.add("GET", "/v1/openapi.json", [](Request&) {
    Response r;
    r.body = std::string(openapi_document());
    return r;
  });
}

Response Service::handle(Request& r) {
  if (r.path == "/healthz" || r.path == "/readyz" || r.path == "/v1/openapi.json") return operations_.dispatch(r);
  if (r.path == "/metrics") {
    // Counts of every tenant's jobs: for the operator's scraper, not for anyone who can connect.
    auto principal = auth_.authenticate(r.header("authorization"));
    if (!principal) return problem(401, "", "send the metrics token: Authorization: Bearer <token>", "Authorization", r.path);
    if (principal->role != Role::kMetrics && principal->role != Role::kAdmin) {
      return problem(403, "", "only a metrics or admin token may read /metrics", "Authorization", r.path);
    }
    return operations_.dispatch(r);
  }
  const bool internal = r.path.rfind("/internal/", 0) == 0;
  const bool public_api = r.path == "/v1" || r.path.rfind("/v1/", 0) == 0;
  if (!internal && !public_api) return problem(404, "", "no such resource: " + r.path, "", r.path);
  auto principal = auth_.authenticate(r.header("authorization"));
  if (!principal) {
    return problem(401, "", "send a bearer token: Authorization: Bearer <token>", "Authorization", r.path);
  }
  if (principal->role == Role::kMetrics) {
    return problem(403, "", "the metrics token may read only /metrics", "Authorization", r.path);
  }
  if (internal != (principal->role == Role::kWorker)) {
    return problem(403, "", internal ? "only the worker token may use /internal" : "the worker token may use only /internal",
                   "Authorization", r.path);
  }
  if (!internal) {
    if (auto wait = limiter_.admit(principal->token_digest)) {
      metrics_.refused("rate_limited", principal->tenant);
      Response refused = problem(429, "", "this token sent more than " +
                                              std::to_string(static_cast<int64_t>(options_.rate_limit_per_second)) +
                                              " requests a second on average; retry in " + std::to_string(*wait) + " s",
                                 "Authorization", r.path);
      refused.headers["Retry-After"] = std::to_string(*wait);
      return refused;
    }
  }
  return internal ? internal_.dispatch(r) : public_.dispatch(r);
}

bool Service::is_upload(const std::string& method, const std::string& path) const {
  if (method == "POST" && path == "/v1/files") return true;
  if (method != "PUT" || path.rfind("/internal/v1/jobs/", 0) != 0) return false;
  return path.size() > 11 && (path.compare(path.size() - 11, 11, "/checkpoint") == 0 ||
                              path.compare(path.size() - 9, 9, "/artifact") == 0);
}

void Service::observe(const Request& r, int status, double seconds) {
  std::string route = r.route;
  if (route.empty()) {
    // Unmatched or refused before routing: label by the template it would match, never by the path.
    for (const Router* router : {&public_, &internal_, &operations_}) {
      route = router->route_of(r.method, r.path);
      if (!route.empty()) break;
    }
  }
  metrics_.observe_request(route, r.method, status, seconds);
}

Response Service::metrics_text() {
  std::vector<JobCount> jobs;
  if (auto counts = store_->job_counts(); counts.is_ok()) {
    for (const auto& [status, n] : *counts) jobs.push_back({status, n});
  }
  WorkerGauges gauges;
  if (auto workers = store_->list_workers(); workers.is_ok()) {
    const int64_t now = now_ms();
    for (const auto& w : *workers) {
      if (now - w.last_heartbeat_at > options_.lease_ms) {  // its leases have expired too
        ++gauges.lost_groups;
      } else {
        ++gauges.active_groups;
        gauges.slots += w.slots;
        gauges.free_slots += w.free_slots;
      }
    }
  }
  auto tenants = store_->tenant_job_counts();
  std::map<std::string, int64_t> by_status;
  if (auto tallies = store_->sweep_tallies(); tallies.is_ok()) {
    for (const auto& t : *tallies) ++by_status[sweep_status(t.cancelled, t.queued, t.running, t.succeeded)];
  }
  std::vector<JobCount> sweeps;
  for (const auto& [status, n] : by_status) sweeps.push_back({status, n});
  Response r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = metrics_.scrape(jobs, gauges, tenants.is_ok() ? *tenants : std::vector<Store::TenantCount>{}, sweeps);
  return r;
}

void Service::sweep() {
  if (auto forgotten = store_->expire_idempotency_keys(now_ms()); !forgotten.is_ok()) {
    BITFLEET_LOG(kError) << "idempotency sweep: " << forgotten.status().to_string();
  }
  auto expired = store_->expire_leases(now_ms(), options_.max_expiries);
  if (!expired.is_ok()) {
    BITFLEET_LOG(kError) << "lease sweep: " << expired.status().to_string();
    return;
  }
  for (const auto& e : *expired) {
    metrics_.lease_expired(e.requeued);
    if (!e.requeued) {
      metrics_.job_finished(kFailed, e.started_at ? std::optional<double>((now_ms() - *e.started_at) / 1000.0)
                                                  : std::nullopt);
    }
    BITFLEET_LOG(kWarning) << "lease of " << e.job_id << " expired; " << (e.requeued ? "requeued" : "failed");
  }
}

void Service::start_sweeper() {
  sweeper_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(sweeper_mutex_);
    while (!sweeper_stop_) {
      sweeper_wake_.wait_for(lock, std::chrono::seconds(1));
      if (sweeper_stop_) break;
      lock.unlock();
      sweep();
      lock.lock();
    }
  });
}

void Service::stop_sweeper() {
  {
    std::lock_guard<std::mutex> lock(sweeper_mutex_);
    sweeper_stop_ = true;
  }
  sweeper_wake_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
}

}  // namespace bitfleet::coordinator
