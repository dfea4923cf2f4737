// bitfleet-serve --listen HOST:PORT --backbone DIR --token-file F
//     [--coordinator URL] [--artifact-dir DIR] [--device cpu|cuda] [--dtype auto|fp32|bf16]
//     [--threads N] [--max-tasks N] [--max-labels N] [--max-batch-rows N] [--max-wait-ms MS]
//     [--max-queue-rows N] [--deadline-ms MS] [--auth-cache-seconds S] [--auth-stale-seconds S]
//     [--handler-threads N] [--backbone-name NAME]
// Serves tuned tasks of one backbone (docs/serving.md). Parses flags and wires the parts together;
// listens first (so /healthz answers while the backbone loads), then loads it and turns ready.
// SIGTERM/SIGINT: stops accepting, answers what is in flight, exits 0.
#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <thread>

#include <ATen/Parallel.h>

#include "common/file_util.h"
#include "common/flags.h"
#include "common/json_fields.h"
#include "common/log.h"
#include "common/precision.h"
#include "common/net/http_client.h"
#include "common/net/http_server.h"
#include "common/net/sha256.h"
#include "serve/batcher.h"
#include "serve/serve_api.h"
#include "serve/task_source.h"
#include "serve/task_table.h"
#include "worker/engine/backbone.h"
#include "worker/engine/bitfit_model.h"

namespace {

using namespace bitfleet;

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

int usage_error(const std::string& message) {
  std::cerr << "bitfleet-serve: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  common::Flags flags(argc, argv);
  const std::string listen = flags.string("listen", "127.0.0.1:8090");
  const std::string backbone_dir = flags.string("backbone");
  const std::string token_file = flags.string("token-file");
  const std::string coordinator = flags.string("coordinator", "");
  std::string artifact_dir = flags.string("artifact-dir", "");
  const std::string device_name = flags.string("device", "cpu");
  const std::string dtype_flag = flags.string("dtype", "auto");
  const int threads = static_cast<int>(flags.integer("threads", 1, 256, std::max(1u, std::thread::hardware_concurrency())));
  const int64_t max_tasks = flags.integer("max-tasks", 1, 100'000, 64);
  const int64_t max_labels = flags.integer("max-labels", 2, common::kMaxLabels, common::kMaxLabels);
  serve::BatcherOptions batching;
  batching.max_batch_rows = flags.integer("max-batch-rows", 1, 4096, 64);
  batching.max_wait = std::chrono::microseconds(
      static_cast<int64_t>(flags.number("max-wait-ms", 0, 10'000, 5) * 1000));
  batching.max_queue_rows = flags.integer("max-queue-rows", 1, 1 << 24, 4096);
  serve::ServeApiOptions api_options;
  api_options.deadline = std::chrono::milliseconds(flags.integer("deadline-ms", 1, 600'000, 10'000));
  const int64_t auth_cache = flags.integer("auth-cache-seconds", 0, 3600, 10);
  const int64_t auth_stale = flags.integer("auth-stale-seconds", 0, 86'400, 300);
  const int handler_threads = static_cast<int>(flags.integer("handler-threads", 1, 4096, 64));
  const std::string backbone_name = flags.string("backbone-name", std::filesystem::path(backbone_dir).filename().string());
  if (Status s = flags.finish(); !s.is_ok()) return usage_error(s.message());
  if (device_name != "cpu" && device_name != "cuda") return usage_error("--device must be cpu or cuda");
  const common::CpuIsa& isa = common::detect_cpu_isa();
  auto dtype = common::choose_dtype(dtype_flag, device_name == "cuda", isa, "--dtype");
  if (!dtype.is_ok()) return usage_error(dtype.status().message());
  const auto colon = listen.rfind(':');
  int64_t port = -1;
  if (colon != std::string::npos) {
    auto p = common::parse_int64(listen.substr(colon + 1), "--listen");
    if (p.is_ok() && *p >= 0 && *p <= 65535) port = *p;
  }
  if (port < 0) return usage_error("--listen must be HOST:PORT, got \"" + listen + "\"");
  if (coordinator.empty() && artifact_dir.empty()) {
    return usage_error("give --coordinator URL (tasks by job or sweep id) or --artifact-dir DIR (tasks by file name)");
  }
  if (!coordinator.empty() && artifact_dir.empty()) {
    artifact_dir = (std::filesystem::temp_directory_path() / ("bitfleet-serve-" + std::to_string(::getuid()))).string();
  }
  auto token = common::read_file(token_file);
  if (!token.is_ok()) return usage_error(token.status().message());
  std::string own_token = *token;
  while (!own_token.empty() && (own_token.back() == '\n' || own_token.back() == ' ')) own_token.pop_back();
  if (own_token.empty()) return usage_error("--token-file " + token_file + " is empty");
  set_log_role("serve");

  std::unique_ptr<serve::TaskSource> source;
  if (!coordinator.empty()) {
    auto s = serve::CoordinatorSource::create({.url = coordinator, .token = own_token, .artifact_dir = artifact_dir,
                                               .auth_ttl = std::chrono::seconds(auth_cache),
                                               .stale_ttl = std::chrono::seconds(auth_stale)});
    if (!s.is_ok()) return usage_error("--coordinator: " + s.status().message());
    source = std::move(s).value();
  } else {
    source = std::make_unique<serve::DirectorySource>(artifact_dir, own_token);
  }

  serve::ServeMetrics metrics(backbone_name, device_name, std::string(common::dtype_name(*dtype)),
                              batching.max_batch_rows);
  serve::ServeApi api(metrics, api_options);
  net::ServerOptions server_options;
  server_options.host = listen.substr(0, colon);
  server_options.port = static_cast<uint16_t>(port);
  server_options.handler_threads = handler_threads;
  server_options.max_body_bytes = 8u << 20;
  server_options.handle = [&api](net::Request& r) { return api.handle(r); };
  server_options.observe = [&metrics](const net::Request& r, int status, double seconds) {
    if (r.path == "/v1/predict") metrics.request(status, seconds);
  };
  net::HttpServer server(server_options);
  if (Status s = server.start(); !s.is_ok()) {
    std::cerr << "bitfleet-serve: listening on " << listen << ": " << s.message() << "\n";
    return 1;
  }
  std::cout << "bitfleet-serve listening on " << server_options.host << ":" << server.port() << std::endl;
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  // The engine: the backbone once, a slot per resident task (forward only: no trainer).
  at::set_num_threads(threads);
  const c10::Device device = device_name == "cuda" ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  auto backbone = engine::Backbone::load(backbone_dir, device, engine::scalar_type(*dtype));
  if (!backbone.is_ok()) {
    std::cerr << "bitfleet-serve: " << backbone.status().message() << "\n";
    return 1;
  }
  auto tokenizer = text::Tokenizer::load(backbone_dir);
  if (!tokenizer.is_ok()) {
    std::cerr << "bitfleet-serve: " << tokenizer.status().message() << "\n";
    return 1;
  }
  engine::BitFitModel model(**backbone, {.slots = max_tasks, .max_labels = max_labels});
  serve::Batcher batcher(model, (*tokenizer)->pad_id(), batching, &metrics);
  const std::vector<float> pristine = batcher.pristine_row();
  const serve::BackboneIdentity identity{.layout = &model.layout(), .pristine_row = &pristine,
                                         .sha256 = net::weights_sha256(backbone_dir),
                                         .sequence_tasks = model.supports(common::TaskType::kClassification).is_ok()};
  serve::TaskTable table(
      max_tasks,
      [&](const std::string& key) -> Result<serve::LoadedTask> {
        BITFLEET_ASSIGN_OR_RETURN(std::string bytes, source->fetch(key));
        return serve::read_artifact(std::move(bytes), key, identity);
      },
      [&](int slot, std::vector<float> row) { batcher.install(slot, std::move(row)); }, &metrics);
  const serve::Engine engine{.source = source.get(), .table = &table, .batcher = &batcher,
                             .tokenizer = tokenizer->get()};
  api.set_ready(&engine);
  BITFLEET_LOG(kInfo) << "ready: backbone " << backbone_name << " on " << device_name << " in "
                      << common::dtype_name(*dtype) << " (--dtype " << dtype_flag << "), " << max_tasks
                      << " task slots, " << threads << " threads; CPU " << isa.summary();

  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  BITFLEET_LOG(kInfo) << "stopping";
  server.stop(std::chrono::seconds(5));
  api.set_ready(nullptr);
  return 0;
}
