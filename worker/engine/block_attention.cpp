#include "worker/engine/block_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/precision.h"
#include "worker/engine/avx512_math.h"

// Every function that uses AVX-512 carries BITFLEET_AVX512 (never a file-wide -mavx512f), and all
// but the two entry points have internal linkage: no inline library code compiled for AVX-512 can
// be merged into code that runs on other CPUs.

namespace bitfleet::engine {

namespace {

using avx512::kLanes;
using avx512::narrow1;
using avx512::narrow16;
using avx512::widen1;
using avx512::widen16;

int64_t padded(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// rows × cols of bf16 (row stride `stride`) into fp32 rows of `ld` floats, zero past `cols`.
BITFLEET_AVX512 void widen_rows(Bf16Rows src, int64_t rows, int64_t cols, float* dst, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* in = src.data + r * src.row_stride;
    float* out = dst + r * ld;
    int64_t c = 0;
    for (; c + kLanes <= cols; c += kLanes) _mm512_storeu_ps(out + c, widen16(in + c));
    for (; c < cols; ++c) out[c] = widen1(in[c]);
    for (; c < ld; ++c) out[c] = 0.0f;
  }
}

// The transpose: dst[c][r] = src[r][c], columns of `ld` floats, zero past `rows`.
void widen_transposed(Bf16Rows src, int64_t rows, int64_t cols, float* dst, int64_t ld, int64_t dst_rows) {
  for (int64_t c = 0; c < dst_rows; ++c) {
    float* out = dst + c * ld;
    if (c >= cols) {
      std::memset(out, 0, sizeof(float) * ld);
      continue;
    }
    for (int64_t r = 0; r < rows; ++r) out[r] = widen1(src.data[r * src.row_stride + c]);
    for (int64_t r = rows; r < ld; ++r) out[r] = 0.0f;
  }
}

BITFLEET_AVX512 void narrow_rows(const float* src, int64_t ld, int64_t rows, int64_t cols, MutableBf16Rows dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = src + r * ld;
    uint16_t* out = dst.data + r * dst.row_stride;
    int64_t c = 0;
    for (; c + kLanes <= cols; c += kLanes) narrow16(_mm512_loadu_ps(in + c), out + c);
    for (; c < cols; ++c) out[c] = narrow1(in[c]);
  }
}

// --- products ----------------------------------------------------------------------------------

// out[R][16C] = A[R][K] · B[K][16C]: A's element (r, k) at a[r * ars + k * aks], broadcast; B's
// rows `ldb` floats apart. R × C accumulators stay in registers over the whole K loop, and the sum
// over k runs in order 0..K-1 for every element.
template <int R, int C>
BITFLEET_AVX512 void tile(int64_t K, const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb, float* out,
                          int64_t ldo) {
  __m512 acc[R][C];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    __m512 bv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) bv[c] = _mm512_loadu_ps(b + k * ldb + c * kLanes);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * ars + k * aks]);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(av, bv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + r * ldo + c * kLanes, acc[r][c]);
  }
}

template <int R>
BITFLEET_AVX512 void tile_row(int C, int64_t K, const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb,
                              float* out, int64_t ldo) {
  switch (C) {
    case 1: return tile<R, 1>(K, a, ars, aks, b, ldb, out, ldo);
    case 2: return tile<R, 2>(K, a, ars, aks, b, ldb, out, ldo);
    case 3: return tile<R, 3>(K, a, ars, aks, b, ldb, out, ldo);
    default: return tile<R, 4>(K, a, ars, aks, b, ldb, out, ldo);
  }
}

// out[M][N] = A[M][K] · B[K][N], N a multiple of 16. A panel of B (K × 64 floats) stays in L1
// while every row of A passes over it.
BITFLEET_AVX512 void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t ars, int64_t aks, const float* b,
                          int64_t ldb, float* out, int64_t ldo) {
  for (int64_t j = 0; j < N; j += 4 * kLanes) {
    const int C = static_cast<int>(std::min<int64_t>(4, (N - j) / kLanes));
    int64_t i = 0;
    for (; i + 4 <= M; i += 4) tile_row<4>(C, K, a + i * ars, ars, aks, b + j, ldb, out + i * ldo + j, ldo);
    for (; i < M; ++i) tile_row<1>(C, K, a + i * ars, ars, aks, b + j, ldb, out + i * ldo + j, ldo);
  }
}

// --- softmax -----------------------------------------------------------------------------------

using avx512::exp_nonpositive;

// Forward: R rows of raw scores q·k (Tp floats each, `ld` apart) → P = softmax(raw·scale + bias),
// in place, and each row's statistics: its max and 1 / Σ exp(s − max) (0 and 0 where every key is
// masked: P = 0). R rows at a time, so that their chains of reductions overlap: one row alone is
// bound by latency (three passes, two horizontal reductions, a division).
template <int R>
BITFLEET_AVX512 void softmax_rows(float* rows, int64_t ld, int64_t Tp, float scale, const float* bias, RowStats* stats) {
  const __m512 sv = _mm512_set1_ps(scale);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < Tp; j += kLanes) {
    const __m512 b = _mm512_loadu_ps(bias + j);
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_fmadd_ps(_mm512_loadu_ps(rows + r * ld + j), sv, b);
      _mm512_storeu_ps(rows + r * ld + j, x);
      acc[r] = _mm512_max_ps(acc[r], x);
    }
  }
  __m512 shift[R];
  for (int r = 0; r < R; ++r) {
    stats[r].max = _mm512_reduce_max_ps(acc[r]);
    // A row with every key masked: shifting by 0 keeps its exps at exp(-inf) = 0.
    if (stats[r].max == -std::numeric_limits<float>::infinity()) stats[r].max = 0.0f;
    shift[r] = _mm512_set1_ps(stats[r].max);
    acc[r] = _mm512_setzero_ps();
  }
  for (int64_t j = 0; j < Tp; j += kLanes) {
    for (int r = 0; r < R; ++r) {
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(rows + r * ld + j), shift[r]));
      _mm512_storeu_ps(rows + r * ld + j, e);
      acc[r] = _mm512_add_ps(acc[r], e);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float sum = _mm512_reduce_add_ps(acc[r]);
    stats[r].inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
    shift[r] = _mm512_set1_ps(stats[r].inv_sum);
  }
  for (int64_t j = 0; j < Tp; j += kLanes) {
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(rows + r * ld + j, _mm512_mul_ps(_mm512_loadu_ps(rows + r * ld + j), shift[r]));
    }
  }
}

// Backward, R rows: P from the raw scores and the forward's statistics by the forward's own
// operations (the same bits), then dS = P ⊙ (dP − Σⱼ P·dP)·scale in place of dP.
template <int R>
BITFLEET_AVX512 void score_gradient_rows(float* p, float* dp, int64_t ld, int64_t Tp, float scale, const float* bias,
                                         const RowStats* stats) {
  const __m512 sv = _mm512_set1_ps(scale);
  __m512 dot[R];
  for (int r = 0; r < R; ++r) dot[r] = _mm512_setzero_ps();
  for (int64_t j = 0; j < Tp; j += kLanes) {
    const __m512 b = _mm512_loadu_ps(bias + j);
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_fmadd_ps(_mm512_loadu_ps(p + r * ld + j), sv, b);
      const __m512 pj = _mm512_mul_ps(exp_nonpositive(_mm512_sub_ps(x, _mm512_set1_ps(stats[r].max))),
                                      _mm512_set1_ps(stats[r].inv_sum));
      _mm512_storeu_ps(p + r * ld + j, pj);
      dot[r] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(dp + r * ld + j), dot[r]);
    }
  }
  for (int r = 0; r < R; ++r) dot[r] = _mm512_set1_ps(_mm512_reduce_add_ps(dot[r]));
  for (int64_t j = 0; j < Tp; j += kLanes) {
    for (int r = 0; r < R; ++r) {
      const __m512 g = _mm512_sub_ps(_mm512_loadu_ps(dp + r * ld + j), dot[r]);
      _mm512_storeu_ps(dp + r * ld + j, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(p + r * ld + j), g), sv));
    }
  }
}

// Consecutive pieces of a workspace, in the order asked for.
struct Carve {
  float* next;
  float* operator()(int64_t floats) {
    float* piece = next;
    next += floats;
    return piece;
  }
};

// The padded key bias: the caller's T entries, -inf past them.
void pad_bias(const float* key_bias, int64_t T, int64_t Tp, float* out) {
  std::memcpy(out, key_bias, sizeof(float) * T);
  for (int64_t j = T; j < Tp; ++j) out[j] = -std::numeric_limits<float>::infinity();
}

}  // namespace

bool block_attention_available() { return common::detect_cpu_isa().avx512f; }

// The larger of the two kernels' workspaces: the backward's three [Tq][Dp], three [T][Dp], two
// [Dp][Tp], two [Tq][Tp] and the bias (the forward takes two [Tq][Dp], one [T][Dp], one [Dp][Tp],
// one [Tq][Tp] and the bias).
int64_t block_attention_workspace_floats(int64_t queries, int64_t keys, int64_t D) {
  const int64_t Tp = padded(keys), Dp = padded(D);
  return 3 * (queries + keys) * Dp + 2 * Dp * Tp + 2 * queries * Tp + Tp;
}

BITFLEET_AVX512 void block_attention_forward(int64_t Tq, int64_t T, int64_t D, float scale, Bf16Rows q, Bf16Rows k,
                                             Bf16Rows v, const float* key_bias, MutableBf16Rows out, RowStats* stats,
                                             float* workspace) {
  const int64_t Tp = padded(T), Dp = padded(D);
  Carve take{workspace};
  float *qf = take(Tq * Dp), *kt = take(Dp * Tp), *vf = take(T * Dp), *s = take(Tq * Tp), *o = take(Tq * Dp);
  float* bias = take(Tp);
  pad_bias(key_bias, T, Tp, bias);
  widen_rows(q, Tq, D, qf, Dp);
  widen_transposed(k, T, D, kt, Tp, Dp);
  widen_rows(v, T, D, vf, Dp);
  gemm(Tq, Tp, Dp, qf, Dp, 1, kt, Tp, s, Tp);  // q·kᵀ
  int64_t i = 0;
  for (; i + 4 <= Tq; i += 4) softmax_rows<4>(s + i * Tp, Tp, Tp, scale, bias, stats + i);
  for (; i < Tq; ++i) softmax_rows<1>(s + i * Tp, Tp, Tp, scale, bias, stats + i);
  gemm(Tq, Dp, T, s, Tp, 1, vf, Dp, o, Dp);  // P·v, over the T real keys
  narrow_rows(o, Dp, Tq, D, out);
}

BITFLEET_AVX512 void block_attention_backward(int64_t Tq, int64_t T, int64_t D, float scale, Bf16Rows q, Bf16Rows k,
                                              Bf16Rows v, Bf16Rows dout, const float* key_bias, const RowStats* stats,
                                              MutableBf16Rows dq, MutableBf16Rows dk, MutableBf16Rows dv,
                                              float* workspace) {
  const int64_t Tp = padded(T), Dp = padded(D);
  Carve take{workspace};
  float *qf = take(Tq * Dp), *kf = take(T * Dp), *dof = take(Tq * Dp), *dqf = take(Tq * Dp), *dkf = take(T * Dp),
        *dvf = take(T * Dp);
  float *kt = take(Dp * Tp), *vt = take(Dp * Tp), *p = take(Tq * Tp), *ds = take(Tq * Tp), *bias = take(Tp);
  pad_bias(key_bias, T, Tp, bias);
  widen_rows(q, Tq, D, qf, Dp);
  widen_rows(k, T, D, kf, Dp);
  widen_rows(dout, Tq, D, dof, Dp);
  widen_transposed(k, T, D, kt, Tp, Dp);
  widen_transposed(v, T, D, vt, Tp, Dp);
  gemm(Tq, Tp, Dp, qf, Dp, 1, kt, Tp, p, Tp);     // q·kᵀ, as in the forward
  gemm(Tq, Tp, Dp, dof, Dp, 1, vt, Tp, ds, Tp);   // dP = dout·vᵀ
  int64_t i = 0;
  for (; i + 4 <= Tq; i += 4) score_gradient_rows<4>(p + i * Tp, ds + i * Tp, Tp, Tp, scale, bias, stats + i);
  for (; i < Tq; ++i) score_gradient_rows<1>(p + i * Tp, ds + i * Tp, Tp, Tp, scale, bias, stats + i);
  gemm(T, Dp, Tq, p, 1, Tp, dof, Dp, dvf, Dp);   // dv = Pᵀ·dout
  gemm(Tq, Dp, T, ds, Tp, 1, kf, Dp, dqf, Dp);   // dq = dS·k
  gemm(T, Dp, Tq, ds, 1, Tp, qf, Dp, dkf, Dp);   // dk = dSᵀ·q
  narrow_rows(dqf, Dp, Tq, D, dq);
  narrow_rows(dkf, Dp, T, D, dk);
  narrow_rows(dvf, Dp, T, D, dv);
}

}  // namespace bitfleet::engine
