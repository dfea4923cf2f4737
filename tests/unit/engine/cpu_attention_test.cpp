// The bf16 CPU attention (worker/engine/cpu_attention.h), each of its two kernels: gradients as
// accurate as the all-fp32 kernel's against a float64 reference, also for an example's first
// queries alone; padded keys get no gradient at all; an example's output and gradients do not
// depend on the other examples of the call or on the thread count. The flash kernel's forward is
// LibTorch's bf16 SDPA, bit for bit; the block kernel's forward is as accurate as fp32 SDPA rounded
// to bf16, a first query alone gets its row of the full output bit for bit, a query with no key
// gets zeros, and a NaN stays a NaN. Shapes: MiniLM's (64 tokens, head dim 32), a small one, an odd one, and a
// longer odd one with BERT-base's head dim. The block kernel's tests skip on CPUs without AVX-512F,
// where kAuto never runs it (checked too).
#include <gtest/gtest.h>

#include <limits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include "worker/engine/block_attention.h"
#include "worker/engine/cpu_attention.h"

namespace bitfleet::engine {
namespace {

constexpr int64_t kExamples = 6, kHeads = 4;

struct Shape {
  int64_t tokens, head_dim;
};

struct Case {
  Shape shape;
  CpuAttentionKernel kernel;
};

struct Inputs {
  Shape shape;
  at::Tensor q, k, v, dout;  // [examples, heads, T, d] bf16, as [rows, hidden] views like the model's
  at::Tensor mask;           // [examples, 1, 1, T] bool: true for real tokens
};

Inputs make_inputs(Shape shape) {
  at::manual_seed(7);
  const int64_t T = shape.tokens, d = shape.head_dim;
  auto heads = [&](const at::Tensor& rows) { return rows.view({kExamples, T, kHeads, d}).transpose(1, 2); };
  auto rows = [&] { return at::randn({kExamples * T, kHeads * d}).to(at::kBFloat16); };
  Inputs in{shape, heads(rows()), heads(rows()), heads(rows()), heads(rows()), {}};
  // Example e has T - 3e real tokens (the first is full length).
  in.mask = (at::arange(T).unsqueeze(0) < (T - 3 * at::arange(kExamples)).unsqueeze(1)).view({kExamples, 1, 1, T});
  return in;
}

// Output and gradients of SDPA in `dtype` on the inputs widened to it.
std::vector<at::Tensor> reference(const Inputs& in, at::ScalarType dtype) {
  std::vector<at::Tensor> leaves;
  for (const auto& t : {in.q, in.k, in.v}) leaves.push_back(t.to(dtype).detach().requires_grad_(true));
  at::Tensor out = at::scaled_dot_product_attention(leaves[0], leaves[1], leaves[2], in.mask);
  auto grads = torch::autograd::grad({out}, leaves, {in.dout.to(dtype)});
  return {out.detach(), grads[0], grads[1], grads[2]};
}

std::vector<at::Tensor> ours(const Inputs& in, CpuAttentionKernel kernel) {
  std::vector<at::Tensor> leaves;
  for (const auto& t : {in.q, in.k, in.v}) leaves.push_back(t.detach().requires_grad_(true));
  at::Tensor out = cpu_bf16_attention(leaves[0], leaves[1], leaves[2], in.mask, kernel);
  auto grads = torch::autograd::grad({out}, leaves, {in.dout});
  return {out.detach(), grads[0], grads[1], grads[2]};
}

double relative_error(const at::Tensor& got, const at::Tensor& want) {
  at::Tensor g = got.to(at::kDouble), w = want.to(at::kDouble);
  return (g - w).norm().item<double>() / w.norm().item<double>();
}

class CpuAttentionTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (GetParam().kernel == CpuAttentionKernel::kBlock && !block_attention_available()) {
      GTEST_SKIP() << "the block kernel needs AVX-512F, which this CPU lacks";
    }
  }
  Inputs inputs() const { return make_inputs(GetParam().shape); }
  std::vector<at::Tensor> ours(const Inputs& in) const { return engine::ours(in, GetParam().kernel); }
};

// The inputs with each example's first `n` queries only (the model's last layer asks for the
// first one of a sequence task's examples).
Inputs first_queries(Inputs in, int64_t n) {
  in.q = in.q.narrow(2, 0, n);
  in.dout = in.dout.narrow(2, 0, n);
  return in;
}

// Within `factor` of the fp32 kernel's error against float64 (1.25 over a whole call).
void expect_as_accurate_as_fp32(const Inputs& in, const std::vector<at::Tensor>& grads, double factor = 1.25) {
  const auto exact = reference(in, at::kDouble), fp32 = reference(in, at::kFloat);
  // The fp32 kernel's gradients, rounded to bf16 as ours are: the accuracy bf16 allows.
  const char* names[] = {"dq", "dk", "dv"};
  for (int i = 1; i < 4; ++i) {
    ASSERT_EQ(grads[i].scalar_type(), at::kBFloat16);
    const double mine = relative_error(grads[i], exact[i]);
    const double best = relative_error(fp32[i].to(at::kBFloat16), exact[i]);
    EXPECT_LE(mine, factor * best + 1e-4) << names[i - 1] << ": ours " << mine << ", fp32 kernel " << best;
  }
  EXPECT_LE(relative_error(grads[0], exact[0]), factor * relative_error(fp32[0].to(at::kBFloat16), exact[0]) + 1e-3);
}

TEST_P(CpuAttentionTest, GradientsAreAsAccurateAsTheFp32Kernels) {
  const Inputs in = inputs();
  expect_as_accurate_as_fp32(in, ours(in));
}

// Fewer queries than keys: each example's first query (and its first five) over all its keys.
// Within 1.5x: over a few queries the norms sum few elements, and the ratio is noisier (the flash
// path, whose backward starts from its rounded output, measured 1.32x at T = 23, d = 15, 5 queries).
TEST_P(CpuAttentionTest, FirstQueriesAloneAreAsAccurateAsTheFp32Kernels) {
  for (int64_t n : {1, 5}) {
    const Inputs in = first_queries(inputs(), n);
    const auto grads = ours(in);
    ASSERT_EQ(grads[0].size(2), n);
    ASSERT_EQ(grads[2].size(2), in.shape.tokens);
    expect_as_accurate_as_fp32(in, grads, 1.5);
  }
}

TEST_P(CpuAttentionTest, PaddedKeysGetNoGradient) {
  const Inputs in = inputs();
  const auto grads = ours(in);
  const int64_t T = in.shape.tokens;
  const at::Tensor padded = in.mask.logical_not().view({kExamples, 1, T, 1}).expand_as(grads[2]);
  ASSERT_GT(padded.sum().item<int64_t>(), 0);
  for (int i = 2; i < 4; ++i) {
    EXPECT_EQ(grads[i].masked_select(padded).abs().max().item<float>(), 0.0f);
    EXPECT_GT(grads[i].masked_select(padded.logical_not()).abs().max().item<float>(), 0.0f);
  }
}

// What together = alone rests on: an example's gradients are the same bits whether the call holds
// it alone or beside others, at any thread count.
TEST_P(CpuAttentionTest, AnExamplesGradientsDoNotDependOnItsNeighboursOrThreads) {
  const Inputs in = inputs();
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto one_thread = ours(in);
  at::set_num_threads(2);
  const auto all = ours(in);
  at::set_num_threads(threads);
  Inputs single = in;
  for (at::Tensor* t : {&single.q, &single.k, &single.v, &single.dout, &single.mask}) *t = t->narrow(0, 2, 1);
  const auto alone = ours(single);
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(at::equal(one_thread[i], all[i])) << i;
    EXPECT_TRUE(at::equal(alone[i], all[i].narrow(0, 2, 1))) << i;
  }
}

constexpr Shape kShapes[] = {{24, 16}, {64, 32}, {23, 15}, {130, 64}};

std::string shape_name(const Shape& s) { return "T" + std::to_string(s.tokens) + "d" + std::to_string(s.head_dim); }

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (auto kernel : {CpuAttentionKernel::kFlash, CpuAttentionKernel::kBlock}) {
    for (const Shape& shape : kShapes) cases.push_back({shape, kernel});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Kernels, CpuAttentionTest, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  return std::string(info.param.kernel == CpuAttentionKernel::kBlock ? "Block" : "Flash") + shape_name(info.param.shape);
});

class FlashAttentionTest : public ::testing::TestWithParam<Shape> {};

TEST_P(FlashAttentionTest, ForwardIsLibTorchsBf16AttentionBitForBit) {
  const Inputs in = make_inputs(GetParam());
  at::Tensor mine = cpu_bf16_attention(in.q, in.k, in.v, in.mask, CpuAttentionKernel::kFlash);
  at::Tensor sdpa = at::scaled_dot_product_attention(in.q, in.k, in.v, in.mask);
  ASSERT_EQ(mine.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(mine, sdpa));
}

INSTANTIATE_TEST_SUITE_P(Shapes, FlashAttentionTest, ::testing::ValuesIn(kShapes),
                         [](const auto& info) { return shape_name(info.param); });

class BlockAttentionTest : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    if (!block_attention_available()) GTEST_SKIP() << "the block kernel needs AVX-512F, which this CPU lacks";
  }
};

// The block kernel computes in fp32 and rounds once: its output is as close to float64 as the fp32
// SDPA's output rounded to bf16 (and closer than LibTorch's bf16 SDPA).
TEST_P(BlockAttentionTest, ForwardIsAsAccurateAsFp32RoundedToBf16) {
  const Inputs in = make_inputs(GetParam());
  at::Tensor mine = cpu_bf16_attention(in.q, in.k, in.v, in.mask, CpuAttentionKernel::kBlock);
  ASSERT_EQ(mine.scalar_type(), at::kBFloat16);
  const auto exact = reference(in, at::kDouble), fp32 = reference(in, at::kFloat);
  const double error = relative_error(mine, exact[0]);
  const double best = relative_error(fp32[0].to(at::kBFloat16), exact[0]);
  EXPECT_LE(error, 1.05 * best) << "ours " << error << ", fp32 rounded " << best;
  EXPECT_LE(error, relative_error(at::scaled_dot_product_attention(in.q, in.k, in.v, in.mask), exact[0]));
}

// A query's output row is its own: computed for the first query alone, it is that row of the full
// block's output, bit for bit (the last layer computes only its head rows' queries).
TEST_P(BlockAttentionTest, AFirstQueryAloneGetsItsRowOfTheFullOutputBitForBit) {
  const Inputs in = make_inputs(GetParam());
  at::Tensor full = cpu_bf16_attention(in.q, in.k, in.v, in.mask, CpuAttentionKernel::kBlock);
  const Inputs first = first_queries(in, 1);
  at::Tensor one = cpu_bf16_attention(first.q, first.k, first.v, first.mask, CpuAttentionKernel::kBlock);
  EXPECT_TRUE(at::equal(one, full.narrow(2, 0, 1)));
}

INSTANTIATE_TEST_SUITE_P(Shapes, BlockAttentionTest, ::testing::ValuesIn(kShapes),
                         [](const auto& info) { return shape_name(info.param); });

// kAuto: the block kernel wherever it can run, flash beyond its length or without AVX-512F.
TEST(CpuAttentionKernelTest, AutoTakesTheBlockKernelWhereItRuns) {
  const CpuAttentionKernel block = block_attention_available() ? CpuAttentionKernel::kBlock : CpuAttentionKernel::kFlash;
  EXPECT_EQ(cpu_attention_kernel(64, 32), block);
  EXPECT_EQ(cpu_attention_kernel(kBlockAttentionMaxTokens, 64), block);
  EXPECT_EQ(cpu_attention_kernel(kBlockAttentionMaxTokens + 1, 64), CpuAttentionKernel::kFlash);
  EXPECT_EQ(cpu_attention_kernel(64, kBlockAttentionMaxHeadDim + 16), CpuAttentionKernel::kFlash);
}

class BlockAttentionEdgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!block_attention_available()) GTEST_SKIP() << "the block kernel needs AVX-512F, which this CPU lacks";
  }
};

// Edge cases the model never sends but the kernel promises: a query with no key to attend to gets
// zero output and zero gradients; a NaN in an example makes that example's output NaN (a diverged
// slot must look non-finite to the trainer) and leaves the other examples as they were.
TEST_F(BlockAttentionEdgeTest, NoKeyGivesZerosAndNanStaysNan) {
  Inputs in = make_inputs({24, 16});
  in.mask[1].fill_(false);
  const auto got = ours(in, CpuAttentionKernel::kBlock);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i][1].abs().max().item<float>(), 0.0f) << i;
  EXPECT_GT(got[0][0].abs().max().item<float>(), 0.0f);

  Inputs bad = make_inputs({24, 16});
  bad.q = bad.q.clone();
  bad.q[3][0][5][2] = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor out = cpu_bf16_attention(bad.q, bad.k, bad.v, bad.mask, CpuAttentionKernel::kBlock);
  EXPECT_TRUE(out[3][0][5].isnan().all().item<bool>());
  const at::Tensor clean = cpu_bf16_attention(in.q, in.k, in.v, bad.mask, CpuAttentionKernel::kBlock);
  EXPECT_TRUE(at::equal(out.narrow(0, 0, 3), clean.narrow(0, 0, 3)));
}

}  // namespace
}  // namespace bitfleet::engine
