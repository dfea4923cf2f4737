// Residual add + LayerNorm + bias for the bf16 step on the CPU, in one pass each way:
//
//   forward:  s = a + x (fp32),  μ, σ² of s by rows,  ρ = 1/√(σ² + eps),
//             y = (s − μ)·ρ·γ + β, rounded to bf16 once
//   backward: ŝ = (s − μ)·ρ (s again from a and x),  g = dy·γ,
//             ds = ρ·(g − mean(g) − ŝ·mean(g·ŝ))  (the gradient of a and of x),  dβ = Σ_rows dy
//
// Why (measured, docs/performance.md): unfused, a layer's residual add, LayerNorm and slot-bias add
// were three LibTorch ops and three passes over [rows, hidden] forward (the sum and the normalised
// rows each rounded to bf16), and LayerNorm's backward plus a column sum for β back — each small
// enough that dispatch and passes, not arithmetic, set its time. Here the sum stays fp32 into the
// statistics (one rounding, at the output: as accurate as fp32 LayerNorm on the bf16 inputs), and
// β's gradient comes out of the backward's own pass. γ is frozen (BitFit), so it gets no gradient.
//
// An element's results depend only on its row (and dβ on the rows, summed in chunks of a fixed
// size in a fixed order): the same bits alone or beside other rows, at any thread count.
// Thread-safety: pure functions of their arguments.
#pragma once

#include <cstdint>

#include <ATen/Tensor.h>

namespace bitfleet::engine {

// AVX-512F, and a width the kernels take (a multiple of 16, at most kLayerNormMaxWidth).
constexpr int64_t kLayerNormMaxWidth = 8192;
bool layer_norm_kernel_available(int64_t width);

// rows × width bf16 (raw bits, rows contiguous). a may be null (y = LN(x)·γ + β). Writes y and
// each row's mean and ρ.
void add_layer_norm_forward(const uint16_t* a, const uint16_t* x, const uint16_t* gamma, const uint16_t* beta,
                            int64_t rows, int64_t width, float eps, uint16_t* y, float* mean, float* rstd);

// ds (bf16) from dy and the forward's inputs and statistics; dbeta_partial[width] (fp32) gets
// Σ dy over these rows (overwritten, in row order).
void add_layer_norm_backward(const uint16_t* a, const uint16_t* x, const uint16_t* dy, const uint16_t* gamma,
                             const float* mean, const float* rstd, int64_t rows, int64_t width, uint16_t* ds,
                             float* dbeta_partial);

// LN(a + x)·γ + β for bf16 CPU tensors: a and x [rows, width] (a may be undefined), γ and β [width].
// Differentiable in a, x and β. Call only where layer_norm_kernel_available(width).
at::Tensor cpu_bf16_add_layer_norm(const at::Tensor& a, const at::Tensor& x, const at::Tensor& gamma,
                                   const at::Tensor& beta, double eps);

}  // namespace bitfleet::engine
