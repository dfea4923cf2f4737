// The bf16 CPU GELU (worker/engine/cpu_gelu.h): on every finite bf16 input the gradient kernel's
// result is the float64 value rounded to bf16, or one bf16 step away, never further from it than
// LibTorch's bf16 gelu_backward, and correctly rounded at least as often; NaN stays NaN; a tail
// shorter than a vector gives the vector path's bits and writes nothing past its end; through
// autograd the op's forward is at::gelu and its gradient the kernel's, the same bits at 1 and 2
// threads. Skipped on CPUs without AVX-512F, where the op is at::gelu with its own backward
// (checked there).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include "worker/engine/cpu_gelu.h"

namespace bitfleet::engine {
namespace {

float bits_to_float(uint16_t bits) {
  const uint32_t word = static_cast<uint32_t>(bits) << 16;
  float out;
  std::memcpy(&out, &word, sizeof(out));
  return out;
}

// Every finite bf16 value, as raw bits.
std::vector<uint16_t> every_finite_bf16() {
  std::vector<uint16_t> out;
  for (uint32_t b = 0; b < 0x10000; ++b) {
    if (std::isfinite(bits_to_float(static_cast<uint16_t>(b)))) out.push_back(static_cast<uint16_t>(b));
  }
  return out;
}

double exact_gelu_grad(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
}

// How far bf16 results are from exact values: the worst distance in bf16 steps at the exact value
// (2^(e - 7) for an exact value of exponent e; values below 1e-8 in magnitude, GELU's far negative
// tail, count in 1e-8's steps, ~6e-11), and how many are the exact value correctly rounded.
struct Accuracy {
  double worst_steps = 0;
  int64_t correctly_rounded = 0;
};

Accuracy accuracy(const uint16_t* got, const std::vector<double>& exact) {
  Accuracy a;
  for (size_t i = 0; i < exact.size(); ++i) {
    const double magnitude = std::max(std::abs(exact[i]), 1e-8);
    const double step = std::ldexp(1.0, std::ilogb(magnitude) - 7);
    const double g = bits_to_float(got[i]);
    a.worst_steps = std::max(a.worst_steps, std::abs(g - exact[i]) / step);
    a.correctly_rounded += g == static_cast<double>(c10::BFloat16(static_cast<float>(exact[i])));
  }
  return a;
}

at::Tensor as_tensor(const std::vector<uint16_t>& bits) {
  return at::from_blob(const_cast<uint16_t*>(bits.data()), {static_cast<int64_t>(bits.size())}, at::kShort)
      .clone()
      .view(at::kBFloat16);
}

const uint16_t* raw(const at::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.const_data_ptr<at::BFloat16>()); }

class CpuGeluTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!gelu_kernel_available()) GTEST_SKIP() << "the GELU kernel needs AVX-512F, which this CPU lacks";
  }
};

TEST(CpuGeluDispatchTest, WithoutTheKernelTheOpIsLibTorchsGeluWithItsBackward) {
  if (gelu_kernel_available()) GTEST_SKIP() << "this CPU runs the kernel";
  const at::Tensor x = at::randn({1000}).to(at::kBFloat16).requires_grad_(true);
  const at::Tensor dy = at::randn({1000}).to(at::kBFloat16);
  const at::Tensor out = cpu_bf16_gelu(x);
  EXPECT_TRUE(at::equal(out, at::gelu(x)));
  EXPECT_TRUE(at::equal(torch::autograd::grad({out}, {x}, {dy})[0], at::gelu_backward(dy, x)));
}

TEST_F(CpuGeluTest, GradientOnEveryFiniteBf16IsWithinOneStepOfExactAndNoWorseThanLibTorch) {
  const std::vector<uint16_t> x = every_finite_bf16();
  // dy = 1, and dy = 3: the product with the derivative is rounded once.
  for (float scale : {1.0f, 3.0f}) {
    std::vector<double> exact;
    for (uint16_t b : x) exact.push_back(scale * exact_gelu_grad(bits_to_float(b)));
    const at::Tensor dy = at::full({static_cast<int64_t>(x.size())}, scale, at::kBFloat16);
    std::vector<uint16_t> dx(x.size());
    gelu_erf_backward(x.data(), raw(dy), dx.data(), static_cast<int64_t>(x.size()));
    const Accuracy ours = accuracy(dx.data(), exact);
    const Accuracy libtorch = accuracy(raw(at::gelu_backward(dy, as_tensor(x))), exact);
    EXPECT_LE(ours.worst_steps, 1.0) << "dy = " << scale;
    EXPECT_LE(ours.worst_steps, libtorch.worst_steps) << "dy = " << scale;
    EXPECT_GE(ours.correctly_rounded, libtorch.correctly_rounded) << "dy = " << scale;
  }
}

TEST_F(CpuGeluTest, NanStaysNan) {
  const uint16_t nan = 0x7fc0, one = 0x3f80;
  uint16_t dx = 0, dx_of_nan_dy = 0;
  gelu_erf_backward(&nan, &one, &dx, 1);
  gelu_erf_backward(&one, &nan, &dx_of_nan_dy, 1);
  EXPECT_TRUE(std::isnan(bits_to_float(dx)));
  EXPECT_TRUE(std::isnan(bits_to_float(dx_of_nan_dy)));
}

// n from 1 to 40: every length of tail, after zero, one and two full vectors.
TEST_F(CpuGeluTest, AnyLengthGivesTheVectorPathsBitsAndWritesNothingPastTheEnd) {
  const at::Tensor x = at::randn({48}).mul_(3).to(at::kBFloat16), dy = at::randn({48}).to(at::kBFloat16);
  std::vector<uint16_t> whole_dx(48);
  gelu_erf_backward(raw(x), raw(dy), whole_dx.data(), 48);
  constexpr uint16_t kCanary = 0x1234;
  for (int64_t n = 1; n <= 40; ++n) {
    std::vector<uint16_t> dx(48, kCanary);
    gelu_erf_backward(raw(x), raw(dy), dx.data(), n);
    for (int64_t i = 0; i < 48; ++i) {
      ASSERT_EQ(dx[i], i < n ? whole_dx[i] : kCanary) << "n = " << n << ", element " << i;
    }
  }
}

// The op as the model uses it: a [rows, 4 * hidden] activation, large enough to be split over the
// threads, with a length that leaves a tail.
TEST_F(CpuGeluTest, TheOpIsLibTorchsForwardAndTheKernelsGradientAtOneAndTwoThreads) {
  const at::Tensor x = at::randn({517, 1536}).mul_(2).to(at::kBFloat16);
  const at::Tensor dy = at::randn({517, 1536}).to(at::kBFloat16);
  std::vector<uint16_t> dx(x.numel());
  gelu_erf_backward(raw(x), raw(dy), dx.data(), x.numel());
  const int threads = at::get_num_threads();
  for (int n : {1, 2}) {
    at::set_num_threads(n);
    const at::Tensor leaf = x.detach().requires_grad_(true);
    const at::Tensor out = cpu_bf16_gelu(leaf);
    const at::Tensor grad = torch::autograd::grad({out}, {leaf}, {dy})[0];
    EXPECT_TRUE(at::equal(out, at::gelu(x))) << n << " threads";
    EXPECT_EQ(std::memcmp(raw(grad), dx.data(), dx.size() * 2), 0) << n << " threads";
  }
  at::set_num_threads(threads);
}

}  // namespace
}  // namespace bitfleet::engine
