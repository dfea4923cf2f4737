// Communicator: the collectives of one worker group (an MPI world), behind one interface.
//
//   local  one process, nothing to exchange
//   mpi    CPU buffers, MPI_Iallreduce/MPI_Ibcast (OpenMPI)
//   nccl   CUDA buffers, ncclAllReduce on the communicator's own stream; the ncclUniqueId is
//          broadcast over MPI, which also carries the (small) plan broadcasts
//
// The training loop calls exactly one all_reduce_sum per step, on the flat gradient buffer. Every
// collective has a deadline: when a peer hangs (a stopped or wedged rank), the call returns
// DeadlineExceeded instead of blocking forever, the communicator is aborted, and the caller ends
// the group with abort_group() so that its jobs' leases expire and they move elsewhere.
// Thread-safety: one thread (the training loop's) per communicator.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bitfleet::comm {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string_view backend() const = 0;

  // Sums `count` floats across ranks, in place. Host memory for local/mpi; device memory for
  // nccl, produced on the CUDA stream `stream` (the collective waits for it, and the result is
  // complete when this returns).
  virtual Status all_reduce_sum(float* data, size_t count, void* stream) = 0;
  // Rank 0's bytes become every rank's.
  virtual Status broadcast(std::string& bytes) = 0;
  // Ends every process of the group (MPI_Abort). For a hung peer: nothing else can unblock it.
  [[noreturn]] virtual void abort_group(int code) = 0;
};

struct CommunicatorOptions {
  // "auto": mpi when launched by mpirun/srun with more than one rank, else local; "nccl" needs a
  // CUDA build.
  std::string backend = "auto";
  int cuda_device = 0;
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
};

// Whether this process was started by an MPI launcher (mpirun, srun with PMI/PMIx).
bool launched_by_mpi();

// A one-process group (the "local" backend). make_communicator (factory.h) picks a backend.
std::unique_ptr<Communicator> make_local_communicator();

}  // namespace bitfleet::comm
