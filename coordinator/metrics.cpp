#include "coordinator/metrics.h"

#include <prometheus/text_serializer.h>

namespace bitfleet::coordinator {

namespace {

const prometheus::Histogram::BucketBoundaries kRequestBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                 0.05,   0.1,   0.25,   0.5,   1,    2.5, 10};
const prometheus::Histogram::BucketBoundaries kJobBuckets = {1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600};
const char* const kStatuses[] = {"queued", "running", "succeeded", "failed", "cancelled"};

}  // namespace

CoordinatorMetrics::CoordinatorMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter().Name("bitfleet_http_requests_total")
                    .Help("HTTP requests answered, by route template, method and status code").Register(*registry_)),
      request_seconds_(prometheus::BuildHistogram().Name("bitfleet_http_request_duration_seconds")
                           .Help("Time from a request's header to its response written").Register(*registry_)),
      submissions_(prometheus::BuildCounter().Name("bitfleet_job_submissions_total")
                       .Help("Jobs created through POST /v1/jobs, /v1/jobs/batch and /v1/sweeps").Register(*registry_).Add({})),
      sweeps_(prometheus::BuildCounter().Name("bitfleet_sweeps_created_total")
                  .Help("Sweeps created through POST /v1/sweeps").Register(*registry_).Add({})),
      variants_stopped_(prometheus::BuildCounter().Name("bitfleet_sweep_variants_stopped_total")
                            .Help("Sweep variants stopped before their end, by reason").Register(*registry_)),
      finished_(prometheus::BuildCounter().Name("bitfleet_jobs_finished_total")
                    .Help("Jobs that reached a final status, by status").Register(*registry_)),
      job_seconds_(prometheus::BuildHistogram().Name("bitfleet_job_duration_seconds")
                       .Help("Time from a job's first lease to its final status").Register(*registry_)
                       .Add({}, kJobBuckets)),
      queue_wait_seconds_(prometheus::BuildHistogram().Name("bitfleet_job_queue_wait_seconds")
                              .Help("Time a job waited queued before a worker group leased it").Register(*registry_)
                              .Add({}, kJobBuckets)),
      lease_expiries_(prometheus::BuildCounter().Name("bitfleet_lease_expiries_total")
                          .Help("Leases that expired without a heartbeat").Register(*registry_).Add({})),
      requeues_(prometheus::BuildCounter().Name("bitfleet_job_requeues_total")
                    .Help("Jobs queued again after their lease expired").Register(*registry_).Add({})),
      jobs_(prometheus::BuildGauge().Name("bitfleet_jobs").Help("Jobs in the store, by status").Register(*registry_)),
      sweeps_by_status_(prometheus::BuildGauge().Name("bitfleet_sweeps")
                            .Help("Sweeps in the store, by status (from their variants')").Register(*registry_)),
      groups_(prometheus::BuildGauge().Name("bitfleet_worker_groups")
                  .Help("Worker groups, by state (lost: no heartbeat for three intervals)").Register(*registry_)),
      groups_active_(groups_.Add({{"state", "active"}})),
      groups_lost_(groups_.Add({{"state", "lost"}})),
      slots_(prometheus::BuildGauge().Name("bitfleet_worker_slots").Help("Task slots of active worker groups")
                 .Register(*registry_).Add({})),
      free_slots_(prometheus::BuildGauge().Name("bitfleet_worker_free_slots")
                      .Help("Free task slots of active worker groups, as last reported").Register(*registry_).Add({})),
      refused_(prometheus::BuildCounter().Name("bitfleet_requests_refused_total")
                   .Help("Requests refused by a tenant limit, by reason and tenant").Register(*registry_)),
      tenant_jobs_(prometheus::BuildGauge().Name("bitfleet_tenant_jobs")
                       .Help("Queued and running jobs per tenant (fair share)").Register(*registry_)) {
  for (const char* s : kStatuses) {
    jobs_.Add({{"status", s}});
    sweeps_by_status_.Add({{"status", s}});
    if (std::string(s) != "queued" && std::string(s) != "running") finished_.Add({{"status", s}});
  }
  variants_stopped_.Add({{"reason", "successive_halving"}});
}

void CoordinatorMetrics::observe_request(const std::string& route, const std::string& method, int status,
                                         double seconds) {
  const std::string label = route.empty() ? "unmatched" : route;
  requests_.Add({{"route", label}, {"method", method}, {"code", std::to_string(status)}}).Increment();
  request_seconds_.Add({{"route", label}, {"method", method}}, kRequestBuckets).Observe(seconds);
}

void CoordinatorMetrics::jobs_submitted(int64_t n) { submissions_.Increment(static_cast<double>(n)); }

void CoordinatorMetrics::sweep_created(int64_t variants) {
  sweeps_.Increment();
  jobs_submitted(variants);
}

void CoordinatorMetrics::variants_stopped(const std::string& reason, int64_t n) {
  variants_stopped_.Add({{"reason", reason}}).Increment(static_cast<double>(n));
}

void CoordinatorMetrics::job_finished(const std::string& status, std::optional<double> seconds_running) {
  finished_.Add({{"status", status}}).Increment();
  if (seconds_running) job_seconds_.Observe(*seconds_running);
}

void CoordinatorMetrics::job_finished(const JobRecord& job) {
  std::optional<double> seconds;
  if (job.started_at && job.finished_at) seconds = (*job.finished_at - *job.started_at) / 1000.0;
  job_finished(job.status, seconds);
}

void CoordinatorMetrics::queue_wait(double seconds) { queue_wait_seconds_.Observe(seconds); }

void CoordinatorMetrics::refused(const std::string& reason, const std::string& tenant) {
  refused_.Add({{"reason", reason}, {"tenant", tenant}}).Increment();
}

void CoordinatorMetrics::lease_expired(bool requeued) {
  lease_expiries_.Increment();
  if (requeued) requeues_.Increment();
}

std::string CoordinatorMetrics::scrape(const std::vector<JobCount>& jobs, const WorkerGauges& workers,
                                       const std::vector<Store::TenantCount>& tenant_jobs,
                                       const std::vector<JobCount>& sweeps) {
  {
    std::lock_guard<std::mutex> lock(tenants_mutex_);
    for (const auto& t : tenant_jobs) tenants_seen_.insert(t.tenant);
    for (const auto& tenant : tenants_seen_) {
      for (const char* s : {"queued", "running"}) tenant_jobs_.Add({{"tenant", tenant}, {"status", s}}).Set(0);
    }
    for (const auto& t : tenant_jobs) {
      tenant_jobs_.Add({{"tenant", t.tenant}, {"status", t.status}}).Set(static_cast<double>(t.count));
    }
  }
  for (const char* s : kStatuses) jobs_.Add({{"status", s}}).Set(0);
  for (const auto& j : jobs) jobs_.Add({{"status", j.status}}).Set(static_cast<double>(j.count));
  for (const char* s : kStatuses) sweeps_by_status_.Add({{"status", s}}).Set(0);
  for (const auto& w : sweeps) sweeps_by_status_.Add({{"status", w.status}}).Set(static_cast<double>(w.count));
  groups_active_.Set(static_cast<double>(workers.active_groups));
  groups_lost_.Set(static_cast<double>(workers.lost_groups));
  slots_.Set(static_cast<double>(workers.slots));
  free_slots_.Set(static_cast<double>(workers.free_slots));
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace bitfleet::coordinator
