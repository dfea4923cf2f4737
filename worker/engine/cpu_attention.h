// Self-attention for the bf16 step on the CPU: LibTorch's flash kernel in bf16 forward, and its
// fp32 kernel backward, on the bf16 values widened (exactly) to fp32.
//
// Why (measured 2026-12-03, torch 2.11, 2 threads, MiniLM's 12 heads, 16 x 64 tokens, with the
// padding mask): on an Intel Xeon with AMX-BF16 the bf16 flash forward is the fastest form (0.76 ms
// against fp32's 0.99 plus casts), but the bf16 flash backward takes 24-27 ms per call against
// fp32's 2.3 (19-22 against 2.6 on an Intel Xeon with AVX512-BF16 and no AMX). SDPA's math form in bf16 was fast but its bf16 softmax
// made the step's logits 5x less accurate than autocast's, and a backward of batched bf16 matmuls
// around an fp32 softmax (tried) spent more in its passes over [blocks, T, T] than it saved. The
// forward's log-sum-exp is computed in fp32 from the same (bf16-exact) values the fp32 backward
// sees, so the backward is the exact-arithmetic gradient of the forward it follows, to fp32
// rounding: its gradients are as accurate as the all-fp32 kernel's (docs/performance.md).
#pragma once

#include <ATen/Tensor.h>

namespace bitfleet::engine {

// q, k, v: [examples, heads, T, head_dim] bf16 (any strides); mask: [examples, 1, 1, T] bool, true
// for a key a query may attend to (the model's padding mask). Returns [examples, heads, T,
// head_dim] bf16, differentiable in q, k and v.
at::Tensor cpu_bf16_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask);

}  // namespace bitfleet::engine
