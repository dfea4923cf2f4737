// LocalRun: `bitfleet-train run` — trains every task of a spec together on one backbone, without
// a coordinator, alone or as every rank of `mpirun -np R`.
//
// Spec (paths relative to the spec file; docs/user-guide.md "Training without a coordinator"):
//   {"backbone": "models/minilm", "slots": 4, "max_labels": 64, "threads": 1, "log_every": 10,
//    "jobs": [{"name": "rte", "start_after_step": 0, <a job request with local file paths>}]}
// A job's name is a file name (letters, digits, '.', '_', '-'); its "backbone" may be left out.
// Jobs beyond the free slots wait and enter as slots free up; "start_after_step" holds a job back
// until the group has run that many steps. Output (rank 0): OUT/<name>.safetensors per finished
// job (Hugging Face names), OUT/metrics.json, and with checkpoints OUT/checkpoints/<name>.safetensors.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "worker/comm/communicator.h"

namespace bitfleet::local {

struct LocalRunOptions {
  std::string spec_path;
  std::string out_dir;
  int threads = 0;                 // 0: the spec's "threads", else 1
  int64_t checkpoint_every = 0;    // steps; 0: never
  int64_t stop_after_steps = 0;    // checkpoint every job and stop after this many group steps
  bool resume = false;             // start jobs from OUT/checkpoints when there
  std::string device = "cpu";
  std::string dtype = "auto";      // auto | fp32 | bf16
  int64_t rows_per_pass = -1;      // -1: one segment per pass on CPU, one pass on a GPU
};

Status run_local(const LocalRunOptions& options, comm::Communicator& comm);

}  // namespace bitfleet::local
