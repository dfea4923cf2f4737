// MpiWorld: MPI_COMM_WORLD with deadline-bounded collectives. Shared by the MPI communicator and
// the NCCL communicator's bootstrap and plan broadcasts.
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"

namespace bitfleet::comm {

class MpiWorld {
 public:
  // Initialises MPI (if nobody has) and owns its finalisation.
  static Result<std::unique_ptr<MpiWorld>> init(int* argc, char*** argv, std::chrono::milliseconds timeout);
  ~MpiWorld();

  int rank() const { return rank_; }
  int size() const { return size_; }
  Status all_reduce_sum(float* data, size_t count);
  Status broadcast(std::string& bytes);
  [[noreturn]] void abort(int code);

 private:
  MpiWorld() = default;
  // Drives a non-blocking request to completion, or fails at the deadline.
  Status wait(MPI_Request& request, const char* what);

  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds timeout_{0};
  bool owns_init_ = false;
};

}  // namespace bitfleet::comm
