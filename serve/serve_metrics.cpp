#include "serve/serve_metrics.h"

#include <algorithm>

#include <prometheus/text_serializer.h>

namespace bitfleet::serve {
namespace {

using prometheus::Histogram;

const Histogram::BucketBoundaries kLatency = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const Histogram::BucketBoundaries kRows = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
const Histogram::BucketBoundaries kFill = {0.1, 0.25, 0.5, 0.75, 0.9, 1.0};
const Histogram::BucketBoundaries kLoad = {0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

}  // namespace

ServeMetrics::ServeMetrics(const std::string& backbone, const std::string& device, const std::string& dtype,
                           int64_t max_batch_rows)
    : registry_(std::make_shared<prometheus::Registry>()),
      labels_({{"backbone", backbone}, {"device", device}, {"dtype", dtype}}),
      max_batch_rows_(static_cast<double>(max_batch_rows)),
      latency_(prometheus::BuildHistogram().Name("bitfleet_serve_request_seconds")
                   .Help("Time of a POST /v1/predict from arrival to answer, by HTTP status class").Register(*registry_)),
      requests_(prometheus::BuildCounter().Name("bitfleet_serve_requests_total")
                    .Help("POST /v1/predict requests answered, by HTTP status").Register(*registry_)),
      batch_rows_(prometheus::BuildHistogram().Name("bitfleet_serve_batch_rows")
                      .Help("Inputs in one forward pass (of every task in it)").Register(*registry_)
                      .Add(labels_, kRows)),
      batch_fill_(prometheus::BuildHistogram().Name("bitfleet_serve_batch_fill_ratio")
                      .Help("Inputs in one forward pass over --max-batch-rows").Register(*registry_)
                      .Add(labels_, kFill)),
      batch_tasks_(prometheus::BuildHistogram().Name("bitfleet_serve_batch_tasks")
                       .Help("Distinct tasks in one forward pass").Register(*registry_)
                       .Add(labels_, kRows)),
      batch_seconds_(prometheus::BuildHistogram().Name("bitfleet_serve_batch_seconds")
                         .Help("Time of one forward pass, batch building and outputs included").Register(*registry_)
                         .Add(labels_, kLatency)),
      rows_(prometheus::BuildCounter().Name("bitfleet_serve_rows_total").Help("Inputs predicted")
                .Register(*registry_).Add(labels_)),
      queue_rows_(prometheus::BuildGauge().Name("bitfleet_serve_queue_rows")
                      .Help("Inputs waiting for a forward pass").Register(*registry_)
                      .Add(labels_)),
      tasks_resident_(prometheus::BuildGauge().Name("bitfleet_serve_tasks_resident")
                          .Help("Tuned tasks held in the model's slots").Register(*registry_)
                          .Add(labels_)),
      loads_(prometheus::BuildCounter().Name("bitfleet_serve_task_loads_total")
                 .Help("Task loads (artifact fetched, checked and put in a slot), by outcome").Register(*registry_)),
      load_seconds_(prometheus::BuildHistogram().Name("bitfleet_serve_task_load_seconds")
                        .Help("Time of one task load").Register(*registry_)
                        .Add(labels_, kLoad)),
      evictions_(prometheus::BuildCounter().Name("bitfleet_serve_task_evictions_total")
                     .Help("Tasks evicted (least recently used) to make room for another").Register(*registry_)
                     .Add(labels_)),
      rejected_(prometheus::BuildCounter().Name("bitfleet_serve_rejected_total")
                    .Help("Predict requests refused for load: queue_full (429) or deadline (504)").Register(*registry_)),
      ready_(prometheus::BuildGauge().Name("bitfleet_serve_ready").Help("1 once the backbone is loaded")
                 .Register(*registry_).Add(labels_)) {
  for (const char* outcome : {"ok", "failed"}) {
    auto l = labels_;
    l["outcome"] = outcome;
    loads_.Add(l);
  }
  for (int code : {200, 400, 401, 404, 405, 409, 413, 415, 422, 429, 500, 503, 504}) {
    auto l = labels_;
    l["code"] = std::to_string(code);
    by_code_[code] = &requests_.Add(l);
  }
  for (int c = 1; c < 6; ++c) {
    auto l = labels_;
    l["class"] = std::to_string(c) + "xx";
    by_class_[c] = &latency_.Add(l, kLatency);
  }
  for (const char* reason : {"queue_full", "deadline"}) {
    auto l = labels_;
    l["reason"] = reason;
    rejected_.Add(l);
  }
}

void ServeMetrics::request(int status, double seconds) {
  if (auto it = by_code_.find(status); it != by_code_.end()) {
    it->second->Increment();
  } else {
    auto l = labels_;
    l["code"] = std::to_string(status);
    requests_.Add(l).Increment();
  }
  by_class_[std::clamp(status / 100, 1, 5)]->Observe(seconds);
}

void ServeMetrics::batch(int64_t rows, int64_t tasks, double seconds) {
  batch_rows_.Observe(static_cast<double>(rows));
  batch_fill_.Observe(static_cast<double>(rows) / max_batch_rows_);
  batch_tasks_.Observe(static_cast<double>(tasks));
  batch_seconds_.Observe(seconds);
  rows_.Increment(static_cast<double>(rows));
}

void ServeMetrics::task_load(bool ok, double seconds) {
  auto l = labels_;
  l["outcome"] = ok ? "ok" : "failed";
  loads_.Add(l).Increment();
  if (ok) load_seconds_.Observe(seconds);
}

void ServeMetrics::rejected(const std::string& reason) {
  auto l = labels_;
  l["reason"] = reason;
  rejected_.Add(l).Increment();
}

std::string ServeMetrics::scrape() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

}  // namespace bitfleet::serve
