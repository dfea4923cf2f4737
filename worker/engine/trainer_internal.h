// Helpers shared by the trainer's files (trainer.cpp, trainer_eval.cpp, trainer_checkpoint.cpp);
// internal to the engine.
#pragma once

#include <algorithm>
#include <cstdint>

#include <ATen/Tensor.h>
#if BITFLEET_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include "worker/text/dataset.h"

namespace bitfleet::engine::internal {

// The CUDA stream a collective on `on` must wait for; null on the CPU.
inline void* compute_stream(const at::Tensor& on) {
#if BITFLEET_WITH_CUDA
  if (on.is_cuda()) return c10::cuda::getCurrentCUDAStream(on.device().index()).stream();
#endif
  (void)on;
  return nullptr;
}

// Tokens of a token-classification example that carry a label (-100: none).
inline int64_t labelled_tokens(const text::Example& e) {
  return std::count_if(e.token_labels.begin(), e.token_labels.end(), [](int32_t l) { return l != -100; });
}

}  // namespace bitfleet::engine::internal
