// BITFLEET_CUDA_CHECK and BITFLEET_NCCL_CHECK: every CUDA runtime and NCCL call goes through one
// of them; a failure returns a Status naming the file, line, call and the library's error string.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

#include "common/status.h"

#define BITFLEET_CUDA_CHECK(call)                                                                    \
  do {                                                                                               \
    cudaError_t bitfleet_cuda_rc_ = (call);                                                          \
    if (bitfleet_cuda_rc_ != cudaSuccess) {                                                          \
      return ::bitfleet::unavailable(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": "    \
                                     #call ": " + cudaGetErrorString(bitfleet_cuda_rc_));            \
    }                                                                                                \
  } while (false)

// ncclInProgress is success for a non-blocking communicator: completion is polled separately.
#define BITFLEET_NCCL_CHECK(call)                                                                    \
  do {                                                                                               \
    ncclResult_t bitfleet_nccl_rc_ = (call);                                                         \
    if (bitfleet_nccl_rc_ != ncclSuccess && bitfleet_nccl_rc_ != ncclInProgress) {                   \
      return ::bitfleet::unavailable(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": "    \
                                     #call ": " + ncclGetErrorString(bitfleet_nccl_rc_) + " (" +     \
                                     ncclGetLastError(nullptr) + ")");                               \
    }                                                                                                \
  } while (false)
