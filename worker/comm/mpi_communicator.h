// The MPI communicator (CPU buffers), and the MPI world that the NCCL communicator bootstraps from.
// MPI is initialised once per process with MPI_THREAD_FUNNELED (only the training loop's thread
// calls MPI) and finalised when the last communicator goes.
#pragma once

#include <chrono>
#include <memory>

#include "worker/comm/communicator.h"

namespace bitfleet::comm {

#if BITFLEET_WITH_MPI
Result<std::unique_ptr<Communicator>> make_mpi_communicator(int* argc, char*** argv, std::chrono::milliseconds timeout);
#endif

}  // namespace bitfleet::comm
