#include "worker/comm/mpi_world.h"

#include <algorithm>
#include <cstdint>
#include <thread>

#include "common/log.h"
#include "worker/comm/mpi_check.h"

namespace bitfleet::comm {

Result<std::unique_ptr<MpiWorld>> MpiWorld::init(int* argc, char*** argv, std::chrono::milliseconds timeout) {
  std::unique_ptr<MpiWorld> world(new MpiWorld());
  int initialised = 0;
  BITFLEET_MPI_CHECK(MPI_Initialized(&initialised));
  if (!initialised) {
    int provided = 0;
    BITFLEET_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    world->owns_init_ = true;
  }
  // Errors come back as codes (checked above), not as an abort inside MPI.
  BITFLEET_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  BITFLEET_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world->rank_));
  BITFLEET_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world->size_));
  world->timeout_ = timeout;
  return world;
}

MpiWorld::~MpiWorld() {
  if (owns_init_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
}

Status MpiWorld::wait(MPI_Request& request, const char* what) {
  // Poll instead of blocking: a blocking MPI call cannot be given up on when a peer hangs. Back
  // off from spinning to 1 ms sleeps so that ranks sharing cores do not starve each other.
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  auto pause = std::chrono::microseconds(0);
  while (true) {
    int done = 0;
    BITFLEET_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return Status::ok();
    if (std::chrono::steady_clock::now() > deadline) {
      return {StatusCode::kDeadlineExceeded,
              std::string(what) + " did not finish within " + std::to_string(timeout_.count()) +
                  " ms on rank " + std::to_string(rank_) + ": a peer is gone or hung"};
    }
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
    pause = std::min(std::chrono::microseconds(1000), pause * 2 + std::chrono::microseconds(5));
  }
}

Status MpiWorld::all_reduce_sum(float* data, size_t count) {
  if (size_ == 1) return Status::ok();
  MPI_Request request;
  BITFLEET_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                                    MPI_COMM_WORLD, &request));
  return wait(request, "all-reduce");
}

Status MpiWorld::broadcast(std::string& bytes) {
  if (size_ == 1) return Status::ok();
  uint64_t length = bytes.size();
  MPI_Request request;
  BITFLEET_MPI_CHECK(MPI_Ibcast(&length, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &request));
  BITFLEET_RETURN_IF_ERROR(wait(request, "broadcast"));
  bytes.resize(length);
  if (length == 0) return Status::ok();
  BITFLEET_MPI_CHECK(MPI_Ibcast(bytes.data(), static_cast<int>(length), MPI_BYTE, 0, MPI_COMM_WORLD, &request));
  return wait(request, "broadcast");
}

void MpiWorld::abort(int code) {
  BITFLEET_LOG(kError) << "aborting the worker group (MPI_Abort " << code << ")";
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace bitfleet::comm
