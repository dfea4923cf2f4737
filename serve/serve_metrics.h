// bitfleet-serve's Prometheus metrics, served at GET /metrics beside the API: request latency by
// outcome, rows per batch and batch fill, queue depth, tasks resident, task loads (by outcome),
// evictions and load seconds, and requests refused (queue full, deadline). No task or job ids: a
// label per task would grow without bound.
// Thread-safety: every method from any thread (prometheus-cpp's metrics are atomic).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace bitfleet::serve {

class ServeMetrics {
 public:
  ServeMetrics(const std::string& backbone, const std::string& device, const std::string& dtype,
               int64_t max_batch_rows);

  // One answered POST /v1/predict: its HTTP status and seconds from arrival to answer.
  void request(int status, double seconds);
  void batch(int64_t rows, int64_t tasks, double seconds);
  void queue_rows(int64_t rows) { queue_rows_.Set(static_cast<double>(rows)); }
  void tasks_resident(int64_t n) { tasks_resident_.Set(static_cast<double>(n)); }
  void task_load(bool ok, double seconds);
  void task_evicted() { evictions_.Increment(); }
  void rejected(const std::string& reason);  // queue_full, deadline
  void ready(bool ready) { ready_.Set(ready ? 1 : 0); }

  // The text exposition of every metric.
  std::string scrape() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Labels labels_;  // backbone, device: on every metric
  double max_batch_rows_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Histogram& batch_rows_;
  prometheus::Histogram& batch_fill_;
  prometheus::Histogram& batch_tasks_;
  prometheus::Histogram& batch_seconds_;
  prometheus::Counter& rows_;
  prometheus::Gauge& queue_rows_;
  prometheus::Gauge& tasks_resident_;
  prometheus::Family<prometheus::Counter>& loads_;
  prometheus::Histogram& load_seconds_;
  prometheus::Counter& evictions_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Gauge& ready_;
  // Pre-resolved: the request path touches no label map.
  std::map<int, prometheus::Counter*> by_code_;
  std::array<prometheus::Histogram*, 6> by_class_{};
};

}  // namespace bitfleet::serve
