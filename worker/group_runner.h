// The worker group's loop: every rank of the MPI world runs it; rank 0 also runs the Agent.
//
// Each iteration rank 0 turns what the agent learnt (new leases, jobs to drop, a stop request)
// into a plan and broadcasts it; every rank applies the plan in the same order — releases, then
// admissions (each rank fetches and tokenizes the job's files itself, and an all-reduce of
// per-admission failure flags makes every rank agree) — and runs one training step. So all ranks
// always run the same collectives. Rank 0 alone reports: training loss events, checkpoints every
// K steps or T seconds, the artifact and metrics at the end, failures. On SIGTERM every slot
// checkpoints, its lease is given back, and the group leaves; a collective that times out (a
// hung rank) aborts the whole group so that the coordinator requeues its jobs.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "worker/comm/communicator.h"
#include "worker/engine/session_options.h"

namespace bitfleet::worker {

struct GroupOptions {
  std::string coordinator_url;
  std::string token;
  std::string backbone_name;
  engine::SessionOptions session;  // backbone directory, device, threads, slots, max labels, rows per pass
  int metrics_port = 0;
  int64_t checkpoint_every_steps = 50;
  double checkpoint_every_seconds = 60;
  int64_t events_every_steps = 10;
  int64_t rows_per_pass = -1;
  std::string cache_dir;
};

// Returns the process exit code.
int run_worker_group(const GroupOptions& options, comm::Communicator& comm, const std::atomic<bool>& stop_requested);

}  // namespace bitfleet::worker
