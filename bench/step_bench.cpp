// bitfleet-bench-step: the speed of one BitFit training step, mixed over S slots against S
// single-task steps, with FLOP accounting against a matmul peak measured in the same run.
//
//   bitfleet-bench-step --backbone DIR [--slots 1,4,16] [--batch 16] [--seq 128] [--steps 5]
//                       [--warmup 2] [--threads N] [--device cpu|cuda] [--dtype auto|fp32|bf16]
//                       [--rows-per-pass N] [--comm local|nccl] [--profile-slots S] [--json]
//                       [--cpu-attention auto|block|flash] [--head-rows on|off]
//
// A step is the trainer's whole step (forward, input-gradient backward, the all-reduce of the flat
// gradient buffer, per-slot AdamW) on fixed-length synthetic examples, `batch` per slot. With
// --comm nccl (the default on a GPU of an NCCL build) the all-reduce is a real single-rank
// ncclAllReduce on the communicator's own stream, so its cost per step is measured too. FLOPs
// count the matmuls the step does — forward plus input gradients, no weight gradients:
//   per layer: 2·tokens·(4H² + 2HI) forward and again backward, attention 4·n·T²·H forward and
//   8·n·T²·H backward; in the last layer (with its head rows only, the default) keys and values
//   for every token, and the rest for each example's first token alone (n rows, T = 1 query).
// Both peaks are measured (fp32 and bf16 matmuls), and the share of each reported. The output names
// the dtype and the CPU's ISA (common/precision.h).
// --profile-slots S profiles one more step at S slots with LibTorch's Kineto profiler and reports
// where it went: GPU busy time and the top kernels; host ops by self time (an op's time less that
// of the ops it calls), by name and summed into kinds (GEMM, attention, LayerNorm, ...).
// --cpu-attention picks the bf16 CPU attention kernel (worker/engine/cpu_attention.h), so that
// alternating runs compare the two on one machine; --head-rows off computes the last layer for
// every row (ModelOptions::head_rows_only), the step before that cut.
// bench/step_bench.py runs this beside the Python transformers loop and reports the ratios.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <set>
#include <random>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/profiler_kineto.h>
#if BITFLEET_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "common/flags.h"
#include "common/json_fields.h"
#include "worker/comm/factory.h"
#include "worker/engine/session.h"

using namespace bitfleet;

namespace {

void synchronize(const c10::Device& device) {
#if BITFLEET_WITH_CUDA
  if (device.is_cuda()) at::cuda::device_synchronize();
#endif
  (void)device;
}

void* stream_of(const c10::Device& device) {
#if BITFLEET_WITH_CUDA
  if (device.is_cuda()) return c10::cuda::getCurrentCUDAStream().stream();
#endif
  (void)device;
  return nullptr;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// The best of a few large matmuls, in the step's compute dtype: the device's attainable peak.
double peak_matmul_flops(const c10::Device& device, at::ScalarType dtype) {
  const int64_t n = device.is_cuda() ? 8192 : 2048;
  auto opts = at::TensorOptions().device(device).dtype(dtype);
  at::Tensor a = at::randn({n, n}, opts), b = at::randn({n, n}, opts);
  double best = 0;
  for (int i = 0; i < (device.is_cuda() ? 13 : 4); ++i) {
    synchronize(device);
    double t = now();
    at::Tensor c = at::mm(a, b);
    synchronize(device);
    if (i > 0) best = std::max(best, 2.0 * n * n * n / (now() - t));
  }
  return best;
}

// The kind of work a host op's name says it is, for the profile's split of a step. First match wins.
std::string kind_of(const std::string& name) {
  static const std::vector<std::pair<const char*, const char*>> kKinds = {
      {"scaled_dot_product", "attention"}, {"flash_attention", "attention"}, {"softmax", "attention"},
      {"block_attention", "attention"},
      {"layer_norm", "layer norm"},        {"gelu", "gelu"},
      {"addmm", "gemm"},                   {"aten::mm", "gemm"},             {"bmm", "gemm"},
      {"mkldnn", "gemm"},                  {"embedding", "slot bias gather/scatter"},
      {"index", "slot bias gather/scatter"}, {"copy_", "casts and copies"},  {"_to_copy", "casts and copies"},
      {"aten::to", "casts and copies"},    {"clone", "casts and copies"},    {"cat", "casts and copies"},
      {"contiguous", "casts and copies"},  {"empty", "allocation and fills"}, {"zero", "allocation and fills"},
      {"fill_", "allocation and fills"},   {"aten::", "other elementwise"}};
  for (const auto& [needle, kind] : kKinds) {
    if (name.find(needle) != std::string::npos) return kind;
  }
  return "autograd and dispatch";
}

// One profiled step: per device, the events aggregated by name (count, total ms), the top `top`
// by time; and the device's summed busy time. Host ops also by self time, and the step's split.
nlohmann::json profile_step(engine::Trainer& trainer, const c10::Device& device, int top = 40) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  std::set<ActivityType> activities{ActivityType::CPU};
  if (device.is_cuda()) activities.insert(ActivityType::CUDA);
  torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  synchronize(device);
  const double start = now();
  (void)trainer.step();
  synchronize(device);
  const double seconds = now() - start;
  auto result = prof::disableProfiler();
  struct Sum {
    int64_t count = 0;
    double ms = 0;
  };
  std::map<std::string, Sum> host, gpu, host_self, kinds;
  double gpu_busy_ms = 0;
  int64_t host_ops = 0, kernels = 0;
  // Self time: per thread, events by start (outer first); an event's time less its direct children's.
  std::map<uint64_t, std::vector<const torch::autograd::profiler::KinetoEvent*>> by_thread;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) by_thread[e.startThreadId()].push_back(&e);
  }
  for (auto& [thread, events] : by_thread) {
    std::sort(events.begin(), events.end(), [](const auto* a, const auto* b) {
      return a->startNs() != b->startNs() ? a->startNs() < b->startNs() : a->endNs() > b->endNs();
    });
    std::vector<double> self(events.size());
    std::vector<size_t> open;
    for (size_t i = 0; i < events.size(); ++i) {
      while (!open.empty() && events[open.back()]->endNs() <= events[i]->startNs()) open.pop_back();
      self[i] = static_cast<double>(events[i]->durationNs()) / 1e6;
      if (!open.empty()) self[open.back()] -= self[i];  // still i's whole duration here
      open.push_back(i);
    }
    for (size_t i = 0; i < events.size(); ++i) {
      auto& by_name = host_self[events[i]->name()];
      ++by_name.count;
      by_name.ms += self[i];
      auto& kind = kinds[kind_of(events[i]->name())];
      ++kind.count;
      kind.ms += self[i];
    }
  }
  for (const auto& e : result->events()) {
    const double ms = static_cast<double>(e.durationNs()) / 1e6;
    if (e.deviceType() == c10::DeviceType::CUDA) {
      auto& sum = gpu[e.name()];
      ++sum.count;
      sum.ms += ms;
      gpu_busy_ms += ms;
      ++kernels;
    } else {
      auto& sum = host[e.name()];
      ++sum.count;
      sum.ms += ms;
      ++host_ops;
    }
  }
  auto top_of = [top](const std::map<std::string, Sum>& sums) {
    std::vector<std::pair<std::string, Sum>> v(sums.begin(), sums.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < v.size() && i < static_cast<size_t>(top); ++i) {
      out.push_back({{"name", v[i].first.substr(0, 120)}, {"count", v[i].second.count}, {"ms", v[i].second.ms}});
    }
    return out;
  };
  return {{"step_ms", seconds * 1e3}, {"gpu_busy_ms", gpu_busy_ms}, {"gpu_events", kernels},
          {"host_events", host_ops}, {"top_gpu", top_of(gpu)}, {"top_host", top_of(host)},
          {"top_host_self", top_of(host_self)}, {"host_self_by_kind", top_of(kinds)}};
}

std::shared_ptr<const text::Dataset> synthetic(int64_t n, int64_t seq, int64_t vocab, uint32_t seed) {
  auto d = std::make_shared<text::Dataset>();
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < n; ++i) {
    text::Example e;
    e.ids.resize(seq);
    for (auto& id : e.ids) id = 5 + static_cast<int32_t>(rng() % (vocab - 5));
    e.type_ids.assign(seq, 0);
    e.label = rng() % 2;
    d->examples.push_back(std::move(e));
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  common::Flags flags(argc, argv, {"json"});
  const std::string backbone_dir = flags.string("backbone");
  const std::string slots_text = flags.string("slots", "1,4,16");
  const int64_t batch = flags.integer("batch", 1, 4096, 16);
  const int64_t seq = flags.integer("seq", 8, 512, 128);
  const int64_t steps = flags.integer("steps", 1, 100000, 5);
  const int64_t warmup = flags.integer("warmup", 0, 1000, 2);
  const int threads = static_cast<int>(flags.integer("threads", 0, 256, 0));
  const std::string device_name = flags.string("device", "cpu");
  const std::string dtype_flag = flags.string("dtype", "auto");
  int64_t rows_per_pass = flags.integer("rows-per-pass", -1, 1 << 30, -1);
  const int64_t profile_slots = flags.integer("profile-slots", 0, 1 << 20, 0);
  const std::string cpu_attention = flags.string("cpu-attention", "auto");
  const std::string head_rows = flags.string("head-rows", "on");
#if BITFLEET_WITH_NCCL
  const std::string comm_default = device_name == "cuda" ? "nccl" : "local";
#else
  const std::string comm_default = "local";
#endif
  const std::string comm_name = flags.string("comm", comm_default);
  const bool json = flags.boolean("json");
  if (Status s = flags.finish(); !s.is_ok()) {
    std::cerr << s.message() << "\n";
    return 2;
  }
  if (head_rows != "on" && head_rows != "off") {
    std::cerr << "--head-rows must be on or off, got \"" << head_rows << "\"\n";
    return 2;
  }
  std::vector<int64_t> slot_counts;
  std::stringstream list(slots_text);
  for (std::string item; std::getline(list, item, ',');) {
    auto count = common::parse_int64(item, "--slots");
    if (!count.is_ok() || *count < 1) {
      std::cerr << "--slots must be a comma-separated list of positive integers, got \"" << slots_text << "\"\n";
      return 2;
    }
    slot_counts.push_back(*count);
  }
  const int64_t max_slots = *std::max_element(slot_counts.begin(), slot_counts.end());

  if (rows_per_pass < 0) rows_per_pass = engine::TrainerOptions::default_rows_per_pass(device_name == "cuda");
  auto comm = comm::make_communicator({.backend = comm_name}, &argc, &argv);
  if (!comm.is_ok()) {
    std::cerr << comm.status().to_string() << "\n";
    return 1;
  }
  auto session = engine::Session::open({.backbone_dir = backbone_dir, .device = device_name, .dtype = dtype_flag,
                                        .threads = threads, .slots = max_slots, .max_labels = 2,
                                        .rows_per_pass = rows_per_pass, .cpu_attention = cpu_attention,
                                        .head_rows_only = head_rows == "on"},
                                       **comm);
  if (!session.is_ok()) {
    std::cerr << session.status().to_string() << "\n";
    return 1;
  }
  const c10::Device device = (*session)->device();
  const common::Dtype dtype = (*session)->dtype();
  const auto& c = (*session)->backbone().config();
  engine::BitFitModel& model = (*session)->model();
  engine::Trainer& trainer = (*session)->trainer();

  common::JobRequest request;
  request.task = {common::TaskType::kClassification, {"text"}, "label", {"a", "b"}};
  request.hyperparameters.batch_size = static_cast<int>(batch);
  request.hyperparameters.epochs = 100;
  request.hyperparameters.max_seq_len = static_cast<int>(seq);

  const double layer_linear = 2.0 * (4.0 * c.hidden * c.hidden + 2.0 * c.hidden * c.intermediate);
  const double kv_linear = 2.0 * (2.0 * c.hidden * c.hidden);  // a layer's keys and values
  const double peak_fp32 = peak_matmul_flops(device, at::kFloat), peak_bf16 = peak_matmul_flops(device, at::kBFloat16);
  const double peak = dtype == common::Dtype::kBf16 ? peak_bf16 : peak_fp32;
  nlohmann::json out = {{"device", device_name},       {"backbone", backbone_dir},
                        {"dtype", common::dtype_name(dtype)}, {"cpu", common::detect_cpu_isa().summary()},
                        {"peak_matmul_flops_fp32", peak_fp32}, {"peak_matmul_flops_bf16", peak_bf16},
                        {"hidden", c.hidden},          {"layers", c.layers},
                        {"seq", seq},                  {"batch_per_slot", batch},
                        {"threads", at::get_num_threads()}, {"peak_matmul_flops", peak}, {"rows_per_pass", rows_per_pass},
                        {"cpu_attention", cpu_attention},
                        {"head_rows", head_rows},
                        {"row_floats", model.layout().row_size()}, {"comm", comm_name},
                        {"results", nlohmann::json::array()}};
  for (int64_t s_count : slot_counts) {
    for (int s = 0; s < max_slots; ++s) {
      if (trainer.active(s)) trainer.release(s);
    }
    for (int s = 0; s < s_count; ++s) {
      request.hyperparameters.seed = static_cast<uint64_t>(s);
      Status admitted = trainer.admit(s, {"bench" + std::to_string(s), request, synthetic(batch * 8, seq, c.vocab_size, s), nullptr});
      if (!admitted.is_ok()) {
        std::cerr << admitted.to_string() << "\n";
        return 1;
      }
    }
    double reduce_seconds = 0;
    int64_t reduce_bytes = 0;
    for (int64_t i = 0; i < warmup; ++i) (void)trainer.step();
    synchronize(device);
    const double start = now();
    for (int64_t i = 0; i < steps; ++i) {
      auto r = trainer.step();
      if (!r.is_ok()) {
        std::cerr << r.status().to_string() << "\n";
        return 1;
      }
      reduce_seconds += r->allreduce_seconds;
      reduce_bytes = r->allreduce_bytes;
    }
    synchronize(device);
    const double seconds = (now() - start) / static_cast<double>(steps);
    // The collective alone, on an idle device: the trainer's figure above also waits for the step's
    // queued GPU work, which the all-reduce is ordered after.
    const int reps = 20;
    const double reduce_start = now();
    for (int i = 0; i < reps; ++i) {
      Status st = (*comm)->all_reduce_sum(model.grads().data_ptr<float>(), static_cast<size_t>(reduce_bytes / 4),
                                          stream_of(device));
      if (!st.is_ok()) {
        std::cerr << st.to_string() << "\n";
        return 1;
      }
    }
    synchronize(device);
    const double reduce_alone = (now() - reduce_start) / reps;
    if (s_count == profile_slots) out["profile"] = profile_step(trainer, device);
    const double examples = static_cast<double>(s_count * batch), tokens = examples * seq;
    const double layer_flops = 2.0 * tokens * layer_linear + 12.0 * examples * seq * seq * c.hidden;
    const double last_layer_flops = head_rows == "on" ? 2.0 * tokens * kv_linear +
                                                            2.0 * examples * (layer_linear - kv_linear) +
                                                            12.0 * examples * seq * c.hidden
                                                      : layer_flops;
    const double flops = (c.layers - 1) * layer_flops + last_layer_flops;
    out["results"].push_back({{"slots", s_count},
                              {"step_seconds", seconds},
                              {"examples_per_second", examples / seconds},
                              {"flops_per_step", flops},
                              {"achieved_flops", flops / seconds},
                              {"share_of_peak", flops / seconds / peak},
                              {"share_of_bf16_peak", flops / seconds / peak_bf16},
                              {"allreduce_bytes_per_step", reduce_bytes},
                              {"allreduce_seconds_per_step", reduce_seconds / static_cast<double>(steps)},
                              {"allreduce_alone_seconds", reduce_alone}});
  }
  if (json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("%s on %s (%s) in %s, seq %lld, %lld examples per slot, %d threads; matmul peak %.1f GFLOP/s\n",
              backbone_dir.c_str(), device_name.c_str(), common::detect_cpu_isa().summary().c_str(),
              std::string(common::dtype_name(dtype)).c_str(), static_cast<long long>(seq),
              static_cast<long long>(batch), at::get_num_threads(), peak / 1e9);
  const double single = out["results"][0]["examples_per_second"].get<double>();
  for (const auto& r : out["results"]) {
    std::printf("S=%-3lld step %.3f s  %8.1f examples/s  x%.2f vs S single-slot steps  %.1f%% of peak\n",
                static_cast<long long>(r["slots"].get<int64_t>()), r["step_seconds"].get<double>(),
                r["examples_per_second"].get<double>(), r["examples_per_second"].get<double>() / single,
                100.0 * r["share_of_peak"].get<double>());
  }
  return 0;
}
