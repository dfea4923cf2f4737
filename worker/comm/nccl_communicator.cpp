#include "worker/comm/nccl_communicator.h"

#include <cstring>
#include <thread>

#include "common/log.h"
#include "worker/comm/nccl_check.h"
#if BITFLEET_WITH_MPI
#include "worker/comm/mpi_world.h"
#endif

namespace bitfleet::comm {
namespace {

class NcclCommunicator : public Communicator {
 public:
  ~NcclCommunicator() override {
    if (comm_ != nullptr) {
      if (aborted_) {
        ncclCommAbort(comm_);
      } else {
        ncclCommFinalize(comm_);
        (void)wait_comm("finalize");
        ncclCommDestroy(comm_);
      }
    }
    if (ready_ != nullptr) cudaEventDestroy(ready_);
    if (done_ != nullptr) cudaEventDestroy(done_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

#if BITFLEET_WITH_MPI
  // Several ranks: `world` bootstraps the communicator and carries the broadcasts.
  Status init(std::unique_ptr<MpiWorld> world, int device, std::chrono::milliseconds timeout) {
    world_ = std::move(world);
    if (world_) {
      rank_ = world_->rank();
      size_ = world_->size();
    }
    return init(device, timeout);
  }
#endif

  // One rank, or (after the overload above) every rank of the MPI world.
  Status init(int device, std::chrono::milliseconds timeout) {
    timeout_ = timeout;
    BITFLEET_CUDA_CHECK(cudaSetDevice(device));
    BITFLEET_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    BITFLEET_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    BITFLEET_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    ncclUniqueId id;
    if (rank_ == 0) BITFLEET_NCCL_CHECK(ncclGetUniqueId(&id));
    if (size_ > 1) {  // rank 0's id to every rank, over MPI
      std::string bytes(reinterpret_cast<const char*>(&id), rank_ == 0 ? sizeof(id) : 0);
      BITFLEET_RETURN_IF_ERROR(broadcast(bytes));
      if (bytes.size() != sizeof(id)) return internal_error("ncclUniqueId broadcast has the wrong size");
      std::memcpy(&id, bytes.data(), sizeof(id));
    }
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    BITFLEET_NCCL_CHECK(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config));
    return wait_comm("communicator init");
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "nccl"; }

  Status all_reduce_sum(float* data, size_t count, void* stream) override {
    if (aborted_) return unavailable("the NCCL communicator was aborted");
    auto caller = static_cast<cudaStream_t>(stream);
    BITFLEET_CUDA_CHECK(cudaEventRecord(ready_, caller));
    BITFLEET_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    BITFLEET_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm_, stream_));
    BITFLEET_CUDA_CHECK(cudaEventRecord(done_, stream_));
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (true) {
      cudaError_t state = cudaEventQuery(done_);
      if (state == cudaSuccess) break;
      if (state != cudaErrorNotReady) BITFLEET_CUDA_CHECK(state);
      ncclResult_t async = ncclSuccess;
      BITFLEET_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
      BITFLEET_NCCL_CHECK(async);
      if (std::chrono::steady_clock::now() > deadline) {
        aborted_ = true;
        ncclCommAbort(comm_);
        comm_ = nullptr;
        return {StatusCode::kDeadlineExceeded, "NCCL all-reduce did not finish within " +
                                                   std::to_string(timeout_.count()) + " ms: a peer is gone or hung"};
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    // Work the caller queues next on its stream runs after the reduced values are in place.
    BITFLEET_CUDA_CHECK(cudaStreamWaitEvent(caller, done_, 0));
    return Status::ok();
  }

  Status broadcast(std::string& bytes) override {
#if BITFLEET_WITH_MPI
    if (world_) return world_->broadcast(bytes);
#endif
    return Status::ok();
  }

  [[noreturn]] void abort_group(int code) override {
    if (comm_ != nullptr && !aborted_) ncclCommAbort(comm_);
    comm_ = nullptr;
#if BITFLEET_WITH_MPI
    if (world_) world_->abort(code);
#endif
    std::_Exit(code);
  }

 private:
  // Polls a non-blocking communicator until its pending operation (init, finalize) completes.
  Status wait_comm(const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (true) {
      ncclResult_t state = ncclInProgress;
      BITFLEET_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
      if (state == ncclSuccess) return Status::ok();
      BITFLEET_NCCL_CHECK(state);
      if (std::chrono::steady_clock::now() > deadline) {
        return {StatusCode::kDeadlineExceeded, std::string("NCCL ") + what + " did not finish in time"};
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

#if BITFLEET_WITH_MPI
  std::unique_ptr<MpiWorld> world_;
#endif
  int rank_ = 0, size_ = 1;
  std::chrono::milliseconds timeout_{0};
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  bool aborted_ = false;
};

}  // namespace

Result<std::unique_ptr<Communicator>> make_nccl_communicator(int* argc, char*** argv, int cuda_device,
                                                             std::chrono::milliseconds timeout) {
  auto comm = std::make_unique<NcclCommunicator>();
#if BITFLEET_WITH_MPI
  std::unique_ptr<MpiWorld> world;
  if (launched_by_mpi()) {
    BITFLEET_ASSIGN_OR_RETURN(world, MpiWorld::init(argc, argv, timeout));
  }
  BITFLEET_RETURN_IF_ERROR(comm->init(std::move(world), cuda_device, timeout));
#else
  if (launched_by_mpi()) {
    return unavailable("several NCCL ranks need MPI to bootstrap, and this binary was built without MPI");
  }
  BITFLEET_RETURN_IF_ERROR(comm->init(cuda_device, timeout));
#endif
  return std::unique_ptr<Communicator>(std::move(comm));
}

}  // namespace bitfleet::comm
