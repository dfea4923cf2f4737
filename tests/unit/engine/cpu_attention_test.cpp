// The bf16 CPU attention (worker/engine/cpu_attention.h): its forward is LibTorch's bf16 SDPA, bit
// for bit; its gradients are as accurate as the all-fp32 kernel's against a float64 reference;
// padded keys get no gradient at all.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "worker/engine/cpu_attention.h"

namespace bitfleet::engine {
namespace {

constexpr int64_t kExamples = 6, kHeads = 4, kTokens = 24, kHeadDim = 16;

struct Inputs {
  at::Tensor q, k, v, dout;  // [examples, heads, T, d] bf16, as [rows, hidden] views like the model's
  at::Tensor mask;           // [examples, 1, 1, T] bool: true for real tokens
};

Inputs make_inputs() {
  at::manual_seed(7);
  auto heads = [](const at::Tensor& rows) {
    return rows.view({kExamples, kTokens, kHeads, kHeadDim}).transpose(1, 2);
  };
  auto rows = [] { return at::randn({kExamples * kTokens, kHeads * kHeadDim}).to(at::kBFloat16); };
  Inputs in{heads(rows()), heads(rows()), heads(rows()), heads(rows()), {}};
  // Example e has kTokens - 3e real tokens (the first is full length).
  in.mask = (at::arange(kTokens).unsqueeze(0) < (kTokens - 3 * at::arange(kExamples)).unsqueeze(1))
                .view({kExamples, 1, 1, kTokens});
  return in;
}

// Output and gradients of SDPA in `dtype` on the inputs widened to it.
std::vector<at::Tensor> reference(const Inputs& in, at::ScalarType dtype) {
  std::vector<at::Tensor> leaves;
  for (const auto& t : {in.q, in.k, in.v}) leaves.push_back(t.to(dtype).detach().requires_grad_(true));
  at::Tensor out = at::scaled_dot_product_attention(leaves[0], leaves[1], leaves[2],
                                                    in.mask);
  auto grads = torch::autograd::grad({out}, leaves, {in.dout.to(dtype)});
  return {out.detach(), grads[0], grads[1], grads[2]};
}

double relative_error(const at::Tensor& got, const at::Tensor& want) {
  at::Tensor g = got.to(at::kDouble), w = want.to(at::kDouble);
  return (g - w).norm().item<double>() / w.norm().item<double>();
}

TEST(CpuAttentionTest, ForwardIsLibTorchsBf16AttentionBitForBit) {
  const Inputs in = make_inputs();
  at::Tensor ours = cpu_bf16_attention(in.q, in.k, in.v, in.mask);
  at::Tensor sdpa = at::scaled_dot_product_attention(in.q, in.k, in.v, in.mask);
  ASSERT_EQ(ours.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(ours, sdpa));
}

TEST(CpuAttentionTest, GradientsAreAsAccurateAsTheFp32Kernels) {
  const Inputs in = make_inputs();
  std::vector<at::Tensor> leaves;
  for (const auto& t : {in.q, in.k, in.v}) leaves.push_back(t.detach().requires_grad_(true));
  at::Tensor out = cpu_bf16_attention(leaves[0], leaves[1], leaves[2], in.mask);
  auto grads = torch::autograd::grad({out}, leaves, {in.dout});
  const auto exact = reference(in, at::kDouble), fp32 = reference(in, at::kFloat);
  const char* names[] = {"dq", "dk", "dv"};
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(grads[i].scalar_type(), at::kBFloat16);
    // The fp32 kernel's gradients, rounded to bf16 as ours are: the accuracy bf16 allows.
    const double ours = relative_error(grads[i], exact[i + 1]);
    const double best = relative_error(fp32[i + 1].to(at::kBFloat16), exact[i + 1]);
    EXPECT_LE(ours, 1.25 * best + 1e-4) << names[i] << ": ours " << ours << ", fp32 kernel " << best;
  }
  EXPECT_LE(relative_error(out, exact[0]), 1.25 * relative_error(fp32[0].to(at::kBFloat16), exact[0]) + 1e-3);
}

TEST(CpuAttentionTest, PaddedKeysGetNoGradient) {
  const Inputs in = make_inputs();
  at::Tensor k = in.k.detach().requires_grad_(true), v = in.v.detach().requires_grad_(true);
  at::Tensor out = cpu_bf16_attention(in.q, k, v, in.mask);
  auto grads = torch::autograd::grad({out}, {k, v}, {in.dout});
  const at::Tensor padded = in.mask.logical_not().view({kExamples, 1, kTokens, 1}).expand_as(grads[0]);
  ASSERT_GT(padded.sum().item<int64_t>(), 0);
  for (const auto& g : grads) {
    EXPECT_EQ(g.masked_select(padded).abs().max().item<float>(), 0.0f);
    EXPECT_GT(g.masked_select(padded.logical_not()).abs().max().item<float>(), 0.0f);
  }
}

}  // namespace
}  // namespace bitfleet::engine
