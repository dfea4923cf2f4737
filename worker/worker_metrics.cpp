#include "worker/worker_metrics.h"

#include "common/net/problem.h"

#include <prometheus/text_serializer.h>

namespace bitfleet::worker {

namespace {

const prometheus::Histogram::BucketBoundaries kStepBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
const prometheus::Histogram::BucketBoundaries kReduceBuckets = {1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1};

}  // namespace

WorkerMetrics::WorkerMetrics(std::shared_ptr<prometheus::Registry> r, const prometheus::Labels& l)
    : registry_(std::move(r)),
      labels_(l),
      step_seconds_(prometheus::BuildHistogram().Name("bitfleet_worker_step_seconds")
                        .Help("Wall time of one training step of all active slots").Register(*registry_)
                        .Add(l, kStepBuckets)),
      steps_(prometheus::BuildCounter().Name("bitfleet_worker_steps_total").Help("Training steps run")
                 .Register(*registry_).Add(l)),
      examples_(prometheus::BuildCounter().Name("bitfleet_worker_examples_total")
                    .Help("Training examples of every slot, over the whole group").Register(*registry_).Add(l)),
      tokens_(prometheus::BuildCounter().Name("bitfleet_worker_tokens_total")
                  .Help("Non-padding training tokens, over the whole group").Register(*registry_).Add(l)),
      examples_per_second_(prometheus::BuildGauge().Name("bitfleet_worker_examples_per_second")
                               .Help("Examples per second of the last step, over the whole group")
                               .Register(*registry_).Add(l)),
      tokens_per_second_(prometheus::BuildGauge().Name("bitfleet_worker_tokens_per_second")
                             .Help("Tokens per second of the last step, over the whole group")
                             .Register(*registry_).Add(l)),
      active_slots_(prometheus::BuildGauge().Name("bitfleet_worker_active_slots")
                        .Help("Slots holding a job").Register(*registry_).Add(l)),
      allreduce_seconds_(prometheus::BuildHistogram().Name("bitfleet_worker_allreduce_seconds")
                             .Help("Time of the step's all-reduce of the flat gradient buffer")
                             .Register(*registry_).Add(l, kReduceBuckets)),
      allreduce_bytes_(prometheus::BuildCounter().Name("bitfleet_worker_allreduce_bytes_total")
                           .Help("Bytes of gradient buffer all-reduced").Register(*registry_).Add(l)),
      device_memory_(prometheus::BuildGauge().Name("bitfleet_worker_device_memory_bytes")
                         .Help("Memory in use on the rank's device (resident set size on CPU)")
                         .Register(*registry_).Add(l)),
      evaluation_seconds_(prometheus::BuildHistogram().Name("bitfleet_worker_evaluation_seconds")
                              .Help("Time of one slot's evaluation during training (between steps)")
                              .Register(*registry_).Add(l, kStepBuckets)),
      jobs_(prometheus::BuildCounter().Name("bitfleet_worker_jobs_total")
                .Help("Jobs that left a slot, by outcome").Register(*registry_)) {
  for (const char* outcome : {"succeeded", "stopped_early", "failed", "dropped", "released"}) {
    auto labels = l;
    labels["outcome"] = outcome;
    jobs_.Add(labels);
  }
}

Result<std::unique_ptr<WorkerMetrics>> WorkerMetrics::create(int port, int rank, const std::string& backbone,
                                                             const std::string& device, const std::string& dtype) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::Labels labels = {
      {"rank", std::to_string(rank)}, {"backbone", backbone}, {"device", device}, {"dtype", dtype}};
  std::unique_ptr<WorkerMetrics> m(new WorkerMetrics(registry, labels));
  if (port > 0) {
    net::ServerOptions server;
    server.host = "0.0.0.0";
    server.port = static_cast<uint16_t>(port + rank);
    server.io_threads = 1;
    server.handler_threads = 1;
    server.handle = [registry](net::Request& r) {
      if (r.method != "GET" || r.path != "/metrics") return net::problem(404, "", "only GET /metrics is served here");
      net::Response response;
      response.content_type = "text/plain; version=0.0.4";
      response.body = prometheus::TextSerializer().Serialize(registry->Collect());
      return response;
    };
    m->server_ = std::make_unique<net::HttpServer>(server);
    BITFLEET_RETURN_IF_ERROR(m->server_->start().with_context("serving metrics on port " + std::to_string(port + rank)));
  }
  return m;
}

WorkerMetrics::~WorkerMetrics() {
  if (server_) server_->stop(std::chrono::milliseconds(100));
}

void WorkerMetrics::job_finished(const std::string& outcome) {
  auto labels = labels_;
  labels["outcome"] = outcome;
  jobs_.Add(labels).Increment();
}

void WorkerMetrics::step(double seconds, int64_t examples, int64_t tokens, double allreduce_seconds,
                         int64_t allreduce_bytes) {
  step_seconds_.Observe(seconds);
  steps_.Increment();
  examples_.Increment(static_cast<double>(examples));
  tokens_.Increment(static_cast<double>(tokens));
  if (seconds > 0) {
    examples_per_second_.Set(static_cast<double>(examples) / seconds);
    tokens_per_second_.Set(static_cast<double>(tokens) / seconds);
  }
  allreduce_seconds_.Observe(allreduce_seconds);
  allreduce_bytes_.Increment(static_cast<double>(allreduce_bytes));
}

}  // namespace bitfleet::worker
