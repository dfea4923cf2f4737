#include "worker/engine/cpu_layer_norm.h"

#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include "common/precision.h"
#include "worker/engine/avx512_math.h"

namespace bitfleet::engine {

namespace {

using avx512::kLanes;
using avx512::narrow16;
using avx512::widen16;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// s = a + x for a row into `s` (fp32), returning Σ s.
BITFLEET_AVX512 inline float sum_row(const uint16_t* a, const uint16_t* x, int64_t width, float* s) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < width; j += kLanes) {
    __m512 v = widen16(x + j);
    if (a != nullptr) v = _mm512_add_ps(widen16(a + j), v);
    _mm512_storeu_ps(s + j, v);
    acc = _mm512_add_ps(acc, v);
  }
  return _mm512_reduce_add_ps(acc);
}

// Rows per chunk of β's gradient: its partial sums do not depend on the thread count.
constexpr int64_t kChunkRows = 64;

const uint16_t* bits(const at::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.const_data_ptr<at::BFloat16>()); }
uint16_t* mutable_bits(at::Tensor& t) { return reinterpret_cast<uint16_t*>(t.mutable_data_ptr<at::BFloat16>()); }

class AddLayerNorm : public torch::autograd::Function<AddLayerNorm> {
 public:
  // Autograd takes no undefined input: without a residual, `a` is x again and `residual` false.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& x, const at::Tensor& gamma,
                            const at::Tensor& beta, double eps, bool residual) {
    RECORD_FUNCTION("bitfleet::add_layer_norm_forward", std::vector<c10::IValue>());
    const int64_t rows = x.size(0), width = x.size(1);
    at::Tensor y = at::empty_like(x);
    at::Tensor mean = at::empty({rows}, x.options().dtype(at::kFloat));
    at::Tensor rstd = at::empty({rows}, x.options().dtype(at::kFloat));
    const uint16_t *pa = residual ? bits(a) : nullptr, *px = bits(x), *pg = bits(gamma), *pb = bits(beta);
    uint16_t* py = mutable_bits(y);
    float *pm = mean.mutable_data_ptr<float>(), *pr = rstd.mutable_data_ptr<float>();
    at::parallel_for(0, rows, kChunkRows, [&](int64_t begin, int64_t end) {
      add_layer_norm_forward(pa ? pa + begin * width : nullptr, px + begin * width, pg, pb, end - begin, width,
                             static_cast<float>(eps), py + begin * width, pm + begin, pr + begin);
    });
    ctx->save_for_backward({a, x, gamma, mean, rstd});
    ctx->saved_data["beta_needs_grad"] = beta.requires_grad();
    ctx->saved_data["residual"] = residual;
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    RECORD_FUNCTION("bitfleet::add_layer_norm_backward", std::vector<c10::IValue>());
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &a = saved[0], &x = saved[1], &gamma = saved[2], &mean = saved[3], &rstd = saved[4];
    const at::Tensor dy = grads[0].contiguous();
    const int64_t rows = x.size(0), width = x.size(1), chunks = (rows + kChunkRows - 1) / kChunkRows;
    at::Tensor ds = at::empty_like(x);
    at::Tensor partials = at::empty({chunks, width}, x.options().dtype(at::kFloat));
    const bool residual = ctx->saved_data["residual"].toBool();
    const uint16_t *pa = residual ? bits(a) : nullptr, *px = bits(x), *pdy = bits(dy), *pg = bits(gamma);
    const float *pm = mean.const_data_ptr<float>(), *pr = rstd.const_data_ptr<float>();
    uint16_t* pds = mutable_bits(ds);
    float* pp = partials.mutable_data_ptr<float>();
    at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
      for (int64_t c = first; c < last; ++c) {
        const int64_t begin = c * kChunkRows, n = std::min(kChunkRows, rows - begin);
        add_layer_norm_backward(pa ? pa + begin * width : nullptr, px + begin * width, pdy + begin * width, pg,
                                pm + begin, pr + begin, n, width, pds + begin * width, pp + c * width);
      }
    });
    at::Tensor dbeta;
    if (ctx->saved_data["beta_needs_grad"].toBool()) {
      // The chunks' partial sums added in chunk order, here: fixed whatever the threads were.
      at::Tensor sum = partials[0].clone();
      float* total = sum.mutable_data_ptr<float>();
      for (int64_t c = 1; c < chunks; ++c) {
        for (int64_t j = 0; j < width; ++j) total[j] += pp[c * width + j];
      }
      dbeta = sum.to(at::kBFloat16);
    }
    return {residual ? ds : at::Tensor(), ds, at::Tensor(), dbeta, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool layer_norm_kernel_available(int64_t width) {
  return common::detect_cpu_isa().avx512f && width % kLanes == 0 && width <= kLayerNormMaxWidth;
}

BITFLEET_AVX512 void add_layer_norm_forward(const uint16_t* a, const uint16_t* x, const uint16_t* gamma,
                                            const uint16_t* beta, int64_t rows, int64_t width, float eps,
                                            uint16_t* y, float* mean, float* rstd) {
  alignas(64) float s[kLayerNormMaxWidth];
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* ar = a ? a + r * width : nullptr;
    const float mu = sum_row(ar, x + r * width, width, s) / static_cast<float>(width);
    const __m512 mv = _mm512_set1_ps(mu);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < width; j += kLanes) {
      const __m512 d = _mm512_sub_ps(_mm512_load_ps(s + j), mv);
      acc = _mm512_fmadd_ps(d, d, acc);
    }
    const float rho = 1.0f / std::sqrt(_mm512_reduce_add_ps(acc) / static_cast<float>(width) + eps);
    const __m512 rv = _mm512_set1_ps(rho);
    for (int64_t j = 0; j < width; j += kLanes) {
      const __m512 normed = _mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(s + j), mv), rv);
      narrow16(_mm512_fmadd_ps(normed, widen16(gamma + j), widen16(beta + j)), y + r * width + j);
    }
    mean[r] = mu;
    rstd[r] = rho;
  }
}

BITFLEET_AVX512 void add_layer_norm_backward(const uint16_t* a, const uint16_t* x, const uint16_t* dy,
                                             const uint16_t* gamma, const float* mean, const float* rstd,
                                             int64_t rows, int64_t width, uint16_t* ds, float* dbeta_partial) {
  alignas(64) float normed[kLayerNormMaxWidth], g[kLayerNormMaxWidth];
  for (int64_t j = 0; j < width; ++j) dbeta_partial[j] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* ar = a ? a + r * width : nullptr;
    sum_row(ar, x + r * width, width, normed);
    const __m512 mv = _mm512_set1_ps(mean[r]), rv = _mm512_set1_ps(rstd[r]);
    __m512 sum_g = _mm512_setzero_ps(), sum_gn = _mm512_setzero_ps();
    for (int64_t j = 0; j < width; j += kLanes) {
      const __m512 n = _mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(normed + j), mv), rv);
      const __m512 d = widen16(dy + r * width + j);
      const __m512 gj = _mm512_mul_ps(d, widen16(gamma + j));
      _mm512_store_ps(normed + j, n);
      _mm512_store_ps(g + j, gj);
      sum_g = _mm512_add_ps(sum_g, gj);
      sum_gn = _mm512_fmadd_ps(gj, n, sum_gn);
      _mm512_storeu_ps(dbeta_partial + j, _mm512_add_ps(_mm512_loadu_ps(dbeta_partial + j), d));
    }
    const __m512 c1 = _mm512_set1_ps(_mm512_reduce_add_ps(sum_g) / static_cast<float>(width));
    const __m512 c2 = _mm512_set1_ps(_mm512_reduce_add_ps(sum_gn) / static_cast<float>(width));
    for (int64_t j = 0; j < width; j += kLanes) {
      const __m512 inner = _mm512_sub_ps(_mm512_sub_ps(_mm512_load_ps(g + j), c1),
                                         _mm512_mul_ps(_mm512_load_ps(normed + j), c2));
      narrow16(_mm512_mul_ps(rv, inner), ds + r * width + j);
    }
  }
}

at::Tensor cpu_bf16_add_layer_norm(const at::Tensor& a, const at::Tensor& x, const at::Tensor& gamma,
                                   const at::Tensor& beta, double eps) {
  TORCH_CHECK(layer_norm_kernel_available(x.size(-1)), "the LayerNorm kernel does not take this width here");
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kBFloat16 && gamma.dim() == 1 && beta.dim() == 1,
              "cpu_bf16_add_layer_norm takes bf16 [rows, width] inputs and [width] gamma and beta");
  const at::Tensor xs = x.contiguous();
  return AddLayerNorm::apply(a.defined() ? a.contiguous() : xs, xs, gamma.contiguous(), beta.contiguous(), eps,
                             a.defined());
}

}  // namespace bitfleet::engine
