// The toolchain: bitfleet's C++ links the torch wheel's LibTorch and runs its ops.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

TEST(TorchToolchainTest, MatmulFromCppGivesTheKnownProduct) {
  at::Tensor a = at::arange(4, at::kFloat).view({2, 2});  // [[0, 1], [2, 3]]
  at::Tensor p = at::matmul(a, a);                          // [[2, 3], [6, 11]]
  EXPECT_FLOAT_EQ(p[0][0].item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(p[1][1].item<float>(), 11.0f);
}

// The BLAS property packed passes (--rows-per-pass > 1) rely on for neighbour-independent bits
// (worker/engine/batch.h): a GEMM's rows are bit-identical whatever the row count, for row counts
// that are multiples of 16 — with ONE intra-op thread. It holds at 1 thread on AMD EPYC and Intel
// Xeon alike; with 2 threads on AMD EPYC but not on an Intel Xeon with AVX-512 (1536x384, M = 128
// differs; MKL splits the work by M there), which is why the CPU trainer's default is one segment
// per pass, whose bits need no such property. If a LibTorch or MKL upgrade breaks even the
// 1-thread property, this says so.
TEST(TorchToolchainTest, LinearRowsDoNotDependOnRowCountAtMultiplesOf16) {
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  at::manual_seed(0);
  for (auto [k, n] : {std::pair<int64_t, int64_t>{32, 37}, {384, 1536}, {1536, 384}}) {
    at::Tensor w = at::randn({n, k}), x = at::randn({512, k});
    at::Tensor all = at::linear(x, w);
    for (int64_t m : {16, 32, 48, 128, 496}) {
      EXPECT_TRUE(at::equal(at::linear(x.narrow(0, 0, m), w), all.narrow(0, 0, m))) << k << "x" << n << " M=" << m;
      EXPECT_TRUE(at::equal(at::linear(x.narrow(0, 16, m), w), all.narrow(0, 16, m))) << "offset rows, M=" << m;
    }
  }
  at::set_num_threads(threads);
}
