#include "worker/comm/factory.h"

#include "worker/comm/mpi_communicator.h"
#include "worker/comm/nccl_communicator.h"

namespace bitfleet::comm {

Result<std::unique_ptr<Communicator>> make_communicator(const CommunicatorOptions& options, int* argc, char*** argv) {
  std::string backend = options.backend;
  if (backend == "auto") backend = launched_by_mpi() ? "mpi" : "local";
  if (backend == "local") return make_local_communicator();
#if BITFLEET_WITH_MPI
  if (backend == "mpi") return make_mpi_communicator(argc, argv, options.timeout);
#endif
#if BITFLEET_WITH_NCCL
  if (backend == "nccl") return make_nccl_communicator(argc, argv, options.cuda_device, options.timeout);
#endif
  return invalid_argument("communicator backend \"" + backend + "\" is not built into this binary (built with: local" +
#if BITFLEET_WITH_MPI
                          std::string(", mpi") +
#endif
#if BITFLEET_WITH_NCCL
                          std::string(", nccl") +
#endif
                          ")");
}

}  // namespace bitfleet::comm
