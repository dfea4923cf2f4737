// A rank's Prometheus metrics, served at GET /metrics on --metrics-port + rank: step time,
// throughput, active slots, the all-reduce's time and bytes, device memory, evaluation time, and
// jobs by outcome (succeeded, stopped_early — succeeded before its last step —, failed, dropped,
// released).
// No job ids. Served by bitfleet's own HttpServer: prometheus-cpp's civetweb exposer cannot start
// in a process that has LibTorch loaded (it gives up after bind and listen).
// Thread-safety: updated by the training loop; scraped from the server's threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "common/net/http_server.h"
#include "common/status.h"

namespace bitfleet::worker {

class WorkerMetrics {
 public:
  // port 0: no endpoint (the metrics are still kept).
  static Result<std::unique_ptr<WorkerMetrics>> create(int port, int rank, const std::string& backbone,
                                                       const std::string& device, const std::string& dtype);
  ~WorkerMetrics();

  void step(double seconds, int64_t examples, int64_t tokens, double allreduce_seconds, int64_t allreduce_bytes);
  void active_slots(int64_t n) { active_slots_.Set(static_cast<double>(n)); }
  void job_finished(const std::string& outcome);
  void device_memory(double bytes) { device_memory_.Set(bytes); }
  // One evaluation during training: the other slots waited this long for it.
  void evaluation(double seconds) { evaluation_seconds_.Observe(seconds); }

 private:
  WorkerMetrics(std::shared_ptr<prometheus::Registry> registry, const prometheus::Labels& labels);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Labels labels_;
  std::unique_ptr<net::HttpServer> server_;
  prometheus::Histogram& step_seconds_;
  prometheus::Counter& steps_;
  prometheus::Counter& examples_;
  prometheus::Counter& tokens_;
  prometheus::Gauge& examples_per_second_;
  prometheus::Gauge& tokens_per_second_;
  prometheus::Gauge& active_slots_;
  prometheus::Histogram& allreduce_seconds_;
  prometheus::Counter& allreduce_bytes_;
  prometheus::Gauge& device_memory_;
  prometheus::Histogram& evaluation_seconds_;
  prometheus::Family<prometheus::Counter>& jobs_;
};

}  // namespace bitfleet::worker
