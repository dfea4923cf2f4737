// Attention of one (example, head) block on the CPU, held in cache: bf16 inputs widened exactly to
// fp32, every product and the softmax in fp32, each output rounded to bf16 once. The bf16 step's
// attention on AVX-512 CPUs (cpu_attention.h calls these per block, blocks spread over threads).
//
//   forward:  S = q·kᵀ·scale + key_bias,  P = softmax(S) by rows,  out = P·v
//   backward: P again, the same bits, from S and the forward's row statistics;  dv = Pᵀ·dout;
//             dP = dout·vᵀ;  δᵢ = Σⱼ Pᵢⱼ·dPᵢⱼ;
//             dS = P ⊙ (dP − δ)·scale;  dq = dS·k;  dk = dSᵀ·q
//
// Why a kernel of our own (measured, docs/performance.md): at BitFit's short sequences a block is
// 64 × 32, and LibTorch's CPU flash kernels spend more on per-tile calls than on arithmetic; its
// bf16 backward is ~10× its fp32 one, so the step widened everything to fp32 around it. Here a
// block's operands (~40 KB at T = 64, d = 32) stay in L1/L2, and the products run as register-tiled
// FMAs with no library call per tile. δ comes from P and dP, not from the rounded output, so the
// gradients are those of the forward's exact-arithmetic values, to fp32 rounding.
//
// A block's numbers depend only on its own rows and key bias, on any thread: an example's output
// and gradients are the same bits alone or beside others, at any thread count.
//
// No LibTorch here. The kernels are compiled for AVX-512F (a function attribute, so nothing else
// in the program needs it); call them only where block_attention_available() says so.
// Thread-safety: pure functions of their arguments; each call needs its own workspace.
#pragma once

#include <cstdint>

namespace bitfleet::engine {

// A block's rows in bf16 bits: element (t, d) at data[t * row_stride + d].
struct Bf16Rows {
  const uint16_t* data;
  int64_t row_stride;
};
struct MutableBf16Rows {
  uint16_t* data;
  int64_t row_stride;
};

// Longer sequences keep LibTorch's flash kernels. Up to 512 tokens (BERT's positions) this kernel
// was measured faster at every length, its T × T scores in L2 (a call of 16 examples × 12 heads,
// 2 threads, AMD EPYC Zen 4, forward / backward in ms: T = 64 d = 32 1.03 / 1.84 against flash's
// 1.97 / 5.26 with its casts; T = 128 d = 64 6.4 / 13.8 against 9.4 / 22.6; T = 512 d = 64
// 76 / 175 against 106 / 256); longer ones were not measured.
constexpr int64_t kBlockAttentionMaxTokens = 512;
constexpr int64_t kBlockAttentionMaxHeadDim = 256;

// AVX-512F on this CPU, enabled by the OS.
bool block_attention_available();

// What the forward keeps of a query's row for the backward: max S and 1 / Σ exp(S − max).
struct RowStats {
  float max, inv_sum;
};

// fp32 workspace a block of `queries` query rows over `keys` keys needs (forward or backward).
int64_t block_attention_workspace_floats(int64_t queries, int64_t keys, int64_t head_dim);

// A block: `queries` rows of q (the self-attention's first rows, or all `keys` of them) over `keys`
// rows of k and v. A query row's output is the same bits whatever the number of query rows beside
// it (each row's products and softmax are its own), which the last layer's head rows rely on
// (bitfit_model.h).
//
// key_bias: [keys] fp32, 0 for a key the queries may attend to and -inf for padding. Writes out
// and stats[queries]. A query with no key to attend to gets zero output (and zero gradients).
void block_attention_forward(int64_t queries, int64_t keys, int64_t head_dim, float scale, Bf16Rows q, Bf16Rows k,
                             Bf16Rows v, const float* key_bias, MutableBf16Rows out, RowStats* stats,
                             float* workspace);

// stats: the forward's. Writes dq ([queries] rows), dk and dv ([keys] rows, bf16); padded keys get
// exactly zero dk and dv.
void block_attention_backward(int64_t queries, int64_t keys, int64_t head_dim, float scale, Bf16Rows q, Bf16Rows k,
                              Bf16Rows v, Bf16Rows dout, const float* key_bias, const RowStats* stats,
                              MutableBf16Rows dq, MutableBf16Rows dk, MutableBf16Rows dv,
                              float* workspace);

}  // namespace bitfleet::engine
