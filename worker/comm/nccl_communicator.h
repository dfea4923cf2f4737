// The NCCL communicator (CUDA buffers): all-reduce on its own CUDA stream, ordered after the
// compute stream with an event; a non-blocking NCCL communicator polled against a deadline, and
// aborted (ncclCommAbort) when a peer hangs. Bootstrapped over MPI when the group has several
// ranks; a single process needs no MPI (single-rank NCCL, for measuring the collective's cost), and
// a build without MPI has only that.
#pragma once

#include <chrono>
#include <memory>

#include "worker/comm/communicator.h"

namespace bitfleet::comm {

#if BITFLEET_WITH_NCCL
Result<std::unique_ptr<Communicator>> make_nccl_communicator(int* argc, char*** argv, int cuda_device,
                                                             std::chrono::milliseconds timeout);
#endif

}  // namespace bitfleet::comm
