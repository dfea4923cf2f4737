// The bf16 CPU residual + LayerNorm + β (worker/engine/cpu_layer_norm.h): its output is the float64
// value rounded to bf16 or one step away, and its output and gradients (of a, x and β) are closer
// to float64 than LibTorch's bf16 ops unfused (a + x, layer_norm, + β); without a residual it is
// LayerNorm(x); a row's results do not depend on the other rows, nor any result on the thread
// count; a NaN stays in its row. Skipped on CPUs without AVX-512F, where the model keeps
// LibTorch's ops (the width rule is checked everywhere).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include "common/precision.h"
#include "worker/engine/cpu_layer_norm.h"

namespace bitfleet::engine {
namespace {

constexpr double kEps = 1e-12;  // MiniLM's and BERT's
constexpr int64_t kWidth = 384;

struct Inputs {
  at::Tensor a, x, gamma, beta, dy;  // bf16
};

Inputs make_inputs(int64_t rows) {
  at::manual_seed(11);
  auto bf16 = [](const at::Tensor& t) { return t.to(at::kBFloat16); };
  // Rows with a mean and a spread of their own, as a residual stream has.
  const at::Tensor offset = at::randn({rows, 1}) * 3, spread = at::rand({rows, 1}) * 4 + 0.5;
  return {bf16(at::randn({rows, kWidth}) * spread), bf16(at::randn({rows, kWidth}) * spread + offset),
          bf16(at::randn({kWidth}) * 0.2 + 1), bf16(at::randn({kWidth}) * 0.1), bf16(at::randn({rows, kWidth}))};
}

struct Result {
  at::Tensor y, da, dx, dbeta;
};

// LN(a + x)·γ + β and its gradients for dy, by `f` on leaves of dtype `dtype` made from the inputs.
template <typename F>
Result run(const Inputs& in, at::ScalarType dtype, F f) {
  const at::Tensor a = in.a.to(dtype).requires_grad_(true), x = in.x.to(dtype).requires_grad_(true);
  const at::Tensor beta = in.beta.to(dtype).requires_grad_(true);
  const at::Tensor y = f(a, x, in.gamma.to(dtype), beta);
  auto g = torch::autograd::grad({y}, {a, x, beta}, {in.dy.to(dtype)});
  return {y.detach(), g[0], g[1], g[2]};
}

Result exact(const Inputs& in) {
  return run(in, at::kDouble, [](const at::Tensor& a, const at::Tensor& x, const at::Tensor& g, const at::Tensor& b) {
    return at::layer_norm(a + x, {kWidth}, g, b, kEps);
  });
}

Result libtorch_bf16(const Inputs& in) {
  return run(in, at::kBFloat16, [](const at::Tensor& a, const at::Tensor& x, const at::Tensor& g, const at::Tensor& b) {
    return at::layer_norm(a + x, {kWidth}, g, {}, kEps) + b;
  });
}

Result ours(const Inputs& in) {
  return run(in, at::kBFloat16, [](const at::Tensor& a, const at::Tensor& x, const at::Tensor& g, const at::Tensor& b) {
    return cpu_bf16_add_layer_norm(a, x, g, b, kEps);
  });
}

double relative_error(const at::Tensor& got, const at::Tensor& want) {
  return (got.to(at::kDouble) - want).norm().item<double>() / want.norm().item<double>();
}

class CpuLayerNormTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!layer_norm_kernel_available(kWidth)) GTEST_SKIP() << "the LayerNorm kernel needs AVX-512F";
  }
};

TEST(CpuLayerNormWidthTest, TakesMultiplesOfSixteenUpToTheMaximumWhereTheCpuHasAvx512) {
  const bool avx512 = common::detect_cpu_isa().avx512f;
  EXPECT_EQ(layer_norm_kernel_available(384), avx512);
  EXPECT_EQ(layer_norm_kernel_available(kLayerNormMaxWidth), avx512);
  EXPECT_FALSE(layer_norm_kernel_available(100));
  EXPECT_FALSE(layer_norm_kernel_available(kLayerNormMaxWidth + 16));
}

TEST_F(CpuLayerNormTest, OutputIsFloat64RoundedOrOneStepAway) {
  const Inputs in = make_inputs(37);
  const at::Tensor got = ours(in).y.to(at::kDouble), want = exact(in).y;
  // One bf16 step at the exact value (2^(e - 7)), and fp32's own rounding of the normalised value
  // and β where they cancel.
  const at::Tensor normed = want - in.beta.to(at::kDouble);
  const at::Tensor step = at::pow(2.0, at::floor(at::log2(want.abs().clamp_min(1e-30))) - 7);
  const at::Tensor allowed = step + 1e-6 * (normed.abs() + in.beta.to(at::kDouble).abs());
  EXPECT_TRUE(((got - want).abs() <= allowed).all().item<bool>())
      << "worst excess " << ((got - want).abs() - allowed).max().item<double>();
}

TEST_F(CpuLayerNormTest, OutputAndGradientsAreCloserToFloat64ThanLibTorchsUnfusedBf16) {
  const Inputs in = make_inputs(37);
  const Result want = exact(in), got = ours(in), theirs = libtorch_bf16(in);
  for (auto [name, g, t, w] : {std::tuple{"y", got.y, theirs.y, want.y}, std::tuple{"da", got.da, theirs.da, want.da},
                               std::tuple{"dx", got.dx, theirs.dx, want.dx},
                               std::tuple{"dbeta", got.dbeta, theirs.dbeta, want.dbeta}}) {
    EXPECT_LE(relative_error(g, w), relative_error(t, w)) << name;
    EXPECT_LT(relative_error(g, w), 4e-3) << name;  // about bf16's own rounding (2^-9 relative)
  }
}

TEST_F(CpuLayerNormTest, WithoutResidualItIsLayerNormOfX) {
  const Inputs in = make_inputs(20);
  const at::Tensor x = in.x.requires_grad_(true), beta = in.beta.requires_grad_(true);
  const at::Tensor zeros = at::zeros_like(in.x);
  const at::Tensor alone = cpu_bf16_add_layer_norm({}, x, in.gamma, beta, kEps);
  const at::Tensor with_zero = cpu_bf16_add_layer_norm(zeros, x, in.gamma, beta, kEps);
  EXPECT_TRUE(at::equal(alone, with_zero));
  const auto g_alone = torch::autograd::grad({alone}, {x, beta}, {in.dy});
  const auto g_zero = torch::autograd::grad({with_zero}, {x, beta}, {in.dy});
  EXPECT_TRUE(at::equal(g_alone[0], g_zero[0]));
  EXPECT_TRUE(at::equal(g_alone[1], g_zero[1]));
}

// 1,100 rows: 18 chunks of β's gradient (the last one short), split over two threads.
TEST_F(CpuLayerNormTest, ResultsAreTheSameBitsAtOneAndTwoThreadsAndRowsDoNotDependOnOtherRows) {
  const Inputs in = make_inputs(1100);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const Result one = ours(in);
  at::set_num_threads(2);
  const Result two = ours(in);
  at::set_num_threads(threads);
  EXPECT_TRUE(at::equal(one.y, two.y));
  EXPECT_TRUE(at::equal(one.dx, two.dx));
  EXPECT_TRUE(at::equal(one.dbeta, two.dbeta));

  Inputs first{in.a.narrow(0, 0, 10), in.x.narrow(0, 0, 10), in.gamma, in.beta, in.dy.narrow(0, 0, 10)};
  const Result few = ours(first);
  EXPECT_TRUE(at::equal(few.y, two.y.narrow(0, 0, 10)));
  EXPECT_TRUE(at::equal(few.dx, two.dx.narrow(0, 0, 10)));
}

TEST_F(CpuLayerNormTest, NanStaysInItsRow) {
  Inputs in = make_inputs(8);
  in.x[3][5] = std::nanf("");
  const Result got = ours(in);
  EXPECT_TRUE(at::isnan(got.y[3]).all().item<bool>());
  EXPECT_TRUE(at::isnan(got.dx[3]).all().item<bool>());
  const at::Tensor others = at::cat({got.y.narrow(0, 0, 3), got.y.narrow(0, 4, 4)});
  EXPECT_TRUE(at::isfinite(others).all().item<bool>());
}

}  // namespace
}  // namespace bitfleet::engine
