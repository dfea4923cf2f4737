#include "worker/comm/communicator.h"

#include <cstdlib>
#include <cstring>

#include "worker/comm/mpi_communicator.h"
#include "worker/comm/nccl_communicator.h"

namespace bitfleet::comm {
namespace {

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string_view backend() const override { return "local"; }
  Status all_reduce_sum(float*, size_t, void*) override { return Status::ok(); }
  Status broadcast(std::string&) override { return Status::ok(); }
  [[noreturn]] void abort_group(int code) override { std::_Exit(code); }
};

}  // namespace

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_STEP_NUM_TASKS"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

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
