#include "worker/engine/cpu_gelu.h"

#include <algorithm>
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
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// dy·gelu'(x) for 16 values: 2Φ(x) = 1 + erf(x/√2) and e^(−x²/2) from one exponential.
BITFLEET_AVX512 inline __m512 gelu_grad16(__m512 x, __m512 dy) {
  const __m512 gauss = avx512::exp_nonpositive(_mm512_mul_ps(_mm512_mul_ps(x, x), _mm512_set1_ps(-0.5f)));
  // t = 1 / (1 + p·a), a = |x|/√2 capped where e^(−a²) is already 0 (so that ±inf gives no NaN
  // here), by the reciprocal estimate and one Newton step (relative error ~2^-28).
  const __m512 a = _mm512_min_ps(_mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f)),
                                 _mm512_set1_ps(16.0f));
  const __m512 d = _mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f));
  __m512 t = _mm512_rcp14_ps(d);
  t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
  __m512 poly = _mm512_set1_ps(1.061405429f);
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-1.453152027f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(1.421413741f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-0.284496736f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(0.254829592f));
  const __m512 erfc = _mm512_mul_ps(_mm512_mul_ps(poly, t), gauss);  // erfc(a) = 1 − erf(a)
  const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 twice_cdf = _mm512_mask_mov_ps(_mm512_sub_ps(_mm512_set1_ps(2.0f), erfc), negative, erfc);
  const __m512 density = _mm512_mul_ps(gauss, _mm512_set1_ps(0.39894228040143268f));  // φ(x)
  return _mm512_mul_ps(dy, _mm512_fmadd_ps(x, density, _mm512_mul_ps(twice_cdf, _mm512_set1_ps(0.5f))));
}

// Enough elements per task that a thread's share is not eaten by the hand-off (~0.1 ms of work).
constexpr int64_t kGrain = 32768;

class GeluBf16 : public torch::autograd::Function<GeluBf16> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    const at::Tensor in = x.contiguous();
    ctx->save_for_backward({in});
    return at::gelu(in);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    RECORD_FUNCTION("bitfleet::gelu_backward", std::vector<c10::IValue>());
    const at::Tensor x = ctx->get_saved_variables()[0];
    const at::Tensor dy = grads[0].contiguous();
    at::Tensor dx = at::empty_like(x);
    const auto* xs = reinterpret_cast<const uint16_t*>(x.const_data_ptr<at::BFloat16>());
    const auto* dys = reinterpret_cast<const uint16_t*>(dy.const_data_ptr<at::BFloat16>());
    auto* dxs = reinterpret_cast<uint16_t*>(dx.mutable_data_ptr<at::BFloat16>());
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
      gelu_erf_backward(xs + begin, dys + begin, dxs + begin, end - begin);
    });
    return {dx};
  }
};

}  // namespace

bool gelu_kernel_available() { return common::detect_cpu_isa().avx512f; }

BITFLEET_AVX512 void gelu_erf_backward(const uint16_t* x, const uint16_t* dy, uint16_t* dx, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    avx512::narrow16(gelu_grad16(avx512::widen16(x + i), avx512::widen16(dy + i)), dx + i);
  }
  if (i == n) return;
  // The last n - i < 16 values through a zero-padded block of 16.
  uint16_t x_tail[kLanes] = {}, dy_tail[kLanes] = {}, dx_tail[kLanes];
  std::copy(x + i, x + n, x_tail);
  std::copy(dy + i, dy + n, dy_tail);
  avx512::narrow16(gelu_grad16(avx512::widen16(x_tail), avx512::widen16(dy_tail)), dx_tail);
  std::copy(dx_tail, dx_tail + (n - i), dx + i);
}

at::Tensor cpu_bf16_gelu(const at::Tensor& x) {
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && x.device().is_cpu(), "cpu_bf16_gelu takes a bf16 CPU tensor");
  if (!gelu_kernel_available() || !x.requires_grad()) return at::gelu(x);
  return GeluBf16::apply(x);
}

}  // namespace bitfleet::engine
