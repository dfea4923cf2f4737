// mpirun -np R bitfleet-worker --coordinator URL --backbone DIR --slots S --token-file FILE
//     [--backbone-name NAME] [--device cpu|cuda] [--dtype auto|fp32|bf16] [--metrics-port P]
//     [--threads N] [--max-labels N]
//     [--checkpoint-every-steps K] [--checkpoint-every-seconds T] [--events-every-steps N]
//     [--collective-timeout SECONDS] [--cache-dir DIR] [--rows-per-pass N]
// One MPI world is one worker group. Parses flags, makes the communicator, and runs the group until
// SIGTERM/SIGINT, on which it checkpoints every slot, gives the leases back and leaves.
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "common/file_util.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/precision.h"
#include "common/net/http_client.h"
#include "worker/comm/factory.h"
#include "worker/group_runner.h"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop = true; }

}  // namespace

int main(int argc, char** argv) {
  using namespace bitfleet;
  common::Flags flags(argc, argv);
  worker::GroupOptions options;
  options.coordinator_url = flags.string("coordinator");
  options.session.backbone_dir = flags.string("backbone");
  options.session.slots = flags.integer("slots", 1, 1024, 8);
  const std::string token_file = flags.string("token-file");
  options.backbone_name = flags.string("backbone-name", std::filesystem::path(options.session.backbone_dir).filename().string());
  options.session.device = flags.string("device", "cpu");
  options.session.dtype = flags.string("dtype", "auto");
  options.metrics_port = static_cast<int>(flags.integer("metrics-port", 0, 65000, 0));
  options.session.threads = static_cast<int>(flags.integer("threads", 0, 256, 0));
  options.session.max_labels = flags.integer("max-labels", 2, 64, 64);
  options.checkpoint_every_steps = flags.integer("checkpoint-every-steps", 1, 1'000'000, 50);
  options.checkpoint_every_seconds = flags.number("checkpoint-every-seconds", 1, 86400, 60);
  options.events_every_steps = flags.integer("events-every-steps", 1, 1'000'000, 10);
  options.session.rows_per_pass = flags.integer("rows-per-pass", -1, 1 << 30, -1);
  options.cache_dir = flags.string("cache-dir", (std::filesystem::temp_directory_path() /
                                                 ("bitfleet-cache-" + std::to_string(::getuid()))).string());
  const int64_t timeout = flags.integer("collective-timeout", 1, 86400, 300);
  if (Status s = flags.finish(); !s.is_ok()) {
    std::cerr << "bitfleet-worker: " << s.message() << "\n";
    return 2;
  }
  if (options.session.device != "cpu" && options.session.device != "cuda") {
    std::cerr << "bitfleet-worker: --device must be cpu or cuda\n";
    return 2;
  }
  if (auto d = common::choose_dtype(options.session.dtype, false, {}, "--dtype"); !d.is_ok()) {
    std::cerr << "bitfleet-worker: " << d.status().message() << "\n";
    return 2;
  }
  if (auto url = net::parse_url(options.coordinator_url); !url.is_ok()) {
    std::cerr << "bitfleet-worker: --coordinator: " << url.status().message() << "\n";
    return 2;
  }
  auto token = common::read_file(token_file);
  if (!token.is_ok()) {
    std::cerr << "bitfleet-worker: " << token.status().message() << "\n";
    return 2;
  }
  options.token = *token;
  while (!options.token.empty() && (options.token.back() == '\n' || options.token.back() == ' ')) options.token.pop_back();

  comm::CommunicatorOptions copts;
  copts.timeout = std::chrono::seconds(timeout);
  if (options.session.device == "cuda" && comm::launched_by_mpi()) copts.backend = "nccl";
  auto communicator = comm::make_communicator(copts, &argc, &argv);
  if (!communicator.is_ok()) {
    std::cerr << "bitfleet-worker: " << communicator.status().message() << "\n";
    return 1;
  }
  set_log_role("worker rank " + std::to_string((*communicator)->rank()));
  // Every rank records the signal; rank 0 turns it into the plan that stops them all together.
  // Installed after MPI_Init, which sets handlers of its own.
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  return worker::run_worker_group(options, **communicator, g_stop);
}
