// The coordinator's Prometheus metrics. Families are registered once at start with their help
// text; request paths only increment pre-registered families. No job ids in labels: routes are
// templates ("/v1/jobs/{id}"), statuses a fixed set.
// Thread-safety: all methods may be called from any thread (prometheus-cpp metrics are atomic).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "coordinator/store.h"

namespace bitfleet::coordinator {

struct JobCount {
  std::string status;
  int64_t count;
};

struct WorkerGauges {
  int64_t active_groups = 0, lost_groups = 0, slots = 0, free_slots = 0;
};

class CoordinatorMetrics {
 public:
  CoordinatorMetrics();

  void observe_request(const std::string& route, const std::string& method, int status, double seconds);
  void jobs_submitted(int64_t n);
  void sweep_created(int64_t variants);
  // Variants a sweep stopped before their end ("successive_halving").
  void variants_stopped(const std::string& reason, int64_t n);
  // A job reached a final state: counted by status, and its running time observed when it ran.
  void job_finished(const std::string& status, std::optional<double> seconds_running);
  void job_finished(const JobRecord& job);  // the running time from started_at to finished_at
  void queue_wait(double seconds);
  void lease_expired(bool requeued);
  // A request refused by a tenant limit: "rate_limited", "queued_jobs_limit", "stored_bytes_limit".
  void refused(const std::string& reason, const std::string& tenant);

  // The exposition text, after setting the gauges from the store's current state. Tenant labels
  // come from the token file's tenants only (bounded by configuration, not by use).
  std::string scrape(const std::vector<JobCount>& jobs, const WorkerGauges& workers,
                     const std::vector<Store::TenantCount>& tenant_jobs, const std::vector<JobCount>& sweeps);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Counter& submissions_;
  prometheus::Counter& sweeps_;
  prometheus::Family<prometheus::Counter>& variants_stopped_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Histogram& job_seconds_;
  prometheus::Histogram& queue_wait_seconds_;
  prometheus::Counter& lease_expiries_;
  prometheus::Counter& requeues_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Gauge>& sweeps_by_status_;
  prometheus::Family<prometheus::Gauge>& groups_;
  prometheus::Gauge& groups_active_;
  prometheus::Gauge& groups_lost_;
  prometheus::Gauge& slots_;
  prometheus::Gauge& free_slots_;
  prometheus::Family<prometheus::Counter>& refused_;
  prometheus::Family<prometheus::Gauge>& tenant_jobs_;
  std::mutex tenants_mutex_;
  std::set<std::string> tenants_seen_;  // whose gauges scrape() resets to 0 when they have none
};

}  // namespace bitfleet::coordinator
