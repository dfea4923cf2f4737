// AVX-512 helpers shared by the bf16 CPU kernels (block_attention.cpp, cpu_gelu.cpp,
// cpu_layer_norm.cpp): bf16 <-> fp32 conversions that match c10::BFloat16 bit for bit, and e^x for
// x ≤ 0.
//
// Include only in a kernel's .cpp. Every function here is static (no symbol another translation
// unit's non-AVX-512 code could be linked against) and carries BITFLEET_AVX512, so it may be called
// only from functions with that attribute, on a CPU where common::detect_cpu_isa().avx512f holds.
#pragma once

// GCC 12's AVX-512 intrinsics start their results from _mm512_undefined_*(), which it then warns
// may be (or is) used uninitialised (GCC bug 105593): a false positive, silenced in the kernels.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#define BITFLEET_AVX512 __attribute__((target("avx512f,fma")))

namespace bitfleet::engine::avx512 {

constexpr int kLanes = 16;  // floats in a 512-bit register

// bf16 is the high half of an fp32: widening is exact.
BITFLEET_AVX512 static inline __m512 widen16(const uint16_t* src) {
  const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}

static inline float widen1(uint16_t bits) {
  const uint32_t word = static_cast<uint32_t>(bits) << 16;
  float out;
  std::memcpy(&out, &word, sizeof(out));
  return out;
}

// Round to nearest even, NaN to the quiet NaN 0x7fc0: c10::BFloat16's rounding, bit for bit.
BITFLEET_AVX512 static inline void narrow16(__m512 x, uint16_t* dst) {
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc0));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_cvtepi32_epi16(rounded));
}

static inline uint16_t narrow1(float x) {
  if (std::isnan(x)) return 0x7fc0;
  uint32_t word;
  std::memcpy(&word, &x, sizeof(word));
  return static_cast<uint16_t>((word + 0x7fff + ((word >> 16) & 1)) >> 16);
}

// e^x for x ≤ 0 (Cephes' expf: range reduction by ln 2 in two parts, a degree-5 polynomial, the
// exponent by scalef; ~1 ulp). Below -87.3, where e^x is no longer a normal float, and at -inf: 0;
// NaN stays NaN (a diverged slot must still look non-finite to the trainer).
BITFLEET_AVX512 static inline __m512 exp_nonpositive(__m512 x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_NLT_UQ);
  x = _mm512_max_ps(_mm512_set1_ps(-87.3f), x);  // max returns its second operand where one is NaN
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(y, n));
}

}  // namespace bitfleet::engine::avx512
