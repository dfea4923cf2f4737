// GELU (the erf form, BERT's and RoBERTa's) for the bf16 step on the CPU: LibTorch's forward, and
// a backward of our own — bf16 in and out, fp32 arithmetic inside, one vectorised pass.
//
//   gelu(x)  = x·Φ(x),   Φ(x) = (1 + erf(x/√2)) / 2
//   gelu'(x) = Φ(x) + x·φ(x),   φ(x) = e^(−x²/2) / √(2π)
//
// Why (measured, docs/performance.md): LibTorch's bf16 gelu_backward evaluates erf, with its own
// exponential, and then e^(−x²/2) again; in the step it took twice its forward. erf here is
// Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, the approximation LibTorch's vectorised erf
// uses), whose exponential is e^(−x²/2) itself: one exponential serves Φ and φ, and for x < 0,
// 1 + erf is erfc(|x|/√2) directly, without the cancellation of 1 − erf. The same evaluation as a
// forward ran 1.5× LibTorch's gelu (AMD EPYC Zen 4: its chain of ~50 vector operations a block is
// longer than LibTorch's), so the forward stays LibTorch's.
//
// Elementwise: an element's result depends on nothing else, on any thread. Thread-safety: pure
// functions of their arguments.
#pragma once

#include <cstdint>

#include <ATen/Tensor.h>

namespace bitfleet::engine {

// The kernel runs on CPUs with AVX-512F (where block_attention_available() holds, the same test).
bool gelu_kernel_available();

// dx = dy·gelu'(x) for n bf16 values (raw bits). Call only where gelu_kernel_available().
void gelu_erf_backward(const uint16_t* x, const uint16_t* dy, uint16_t* dx, int64_t n);

// GELU (erf) of a bf16 tensor: at::gelu, differentiable by gelu_erf_backward (spread over
// LibTorch's intra-op threads) where the kernel is available, else at::gelu's own backward.
at::Tensor cpu_bf16_gelu(const at::Tensor& x);

}  // namespace bitfleet::engine
