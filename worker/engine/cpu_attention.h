// Self-attention for the bf16 step on the CPU. Two kernels, one contract (softmax(q·kᵀ/√d + mask)·v
// with its gradients in q, k and v, bf16 in and out, fp32 arithmetic inside):
//
//   kBlock: block_attention.h — per (example, head) block in cache, our own AVX-512 code, the
//           forward and backward both from the bf16 values; for T ≤ kBlockAttentionMaxTokens on
//           CPUs with AVX-512F.
//   kFlash: LibTorch's flash kernel in bf16 forward and its fp32 kernel backward on the bf16 values
//           widened (exactly) to fp32; everywhere else.
//
// Why (measured, docs/performance.md): LibTorch's bf16 flash backward takes 19-27 ms per call
// against its fp32 kernel's 2.3-2.6 (Intel Xeons with and without AMX; MiniLM's 12 heads, 16 x 64
// tokens, with the padding mask), which is why kFlash widens; SDPA's math form in bf16 made the
// logits 5x less accurate than autocast's; batched bf16 matmuls around an fp32 softmax, and
// per-block AMX brgemm calls, spent more in passes over [blocks, T, T] or in per-call overhead than
// they saved. At BitFit's short sequences a block is small enough to stay in cache, which kBlock
// uses: see block_attention.h.
//
// Both: an example's output and gradients are the same bits alone or beside other examples, at any
// thread count (what together = alone rests on); padded keys get exactly zero gradient.
#pragma once

#include <cstdint>

#include <ATen/Tensor.h>

namespace bitfleet::engine {

enum class CpuAttentionKernel { kAuto, kBlock, kFlash };

// The kernel kAuto runs for these shapes on this CPU.
CpuAttentionKernel cpu_attention_kernel(int64_t tokens, int64_t head_dim);

// q: [examples, heads, Tq, head_dim], k, v: [examples, heads, T, head_dim] bf16 (any strides; Tq ≤
// T: every query, or the first rows only, as the last layer's head rows are); mask: [examples, 1,
// 1, T] bool, true for a key a query may attend to (the model's padding mask). Returns [examples,
// heads, Tq, head_dim] bf16, differentiable in q, k and v. kBlock where cpu_attention_kernel() would not
// choose it is a programming error.
at::Tensor cpu_bf16_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                              CpuAttentionKernel kernel = CpuAttentionKernel::kAuto);

}  // namespace bitfleet::engine
