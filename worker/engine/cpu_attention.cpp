#include "worker/engine/cpu_attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include "worker/engine/block_attention.h"

namespace bitfleet::engine {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// 0 for a key a query may attend to, -inf for padding: [examples, 1, 1, T] fp32.
at::Tensor key_bias(const at::Tensor& mask, const at::Tensor& like) {
  return at::zeros(mask.sizes(), like.options().dtype(at::kFloat))
      .masked_fill_(mask.logical_not(), -std::numeric_limits<float>::infinity());
}

// [examples, heads, T, d] bf16 laid out as [examples, T, heads, d] — the model's [rows, hidden] —
// so that the caller's transpose and reshape back to rows is a view.
at::Tensor empty_heads(const at::Tensor& like) {
  return at::empty({like.size(0), like.size(2), like.size(1), like.size(3)}, like.options()).transpose(1, 2);
}

Bf16Rows rows_of(const at::Tensor& t, int64_t e, int64_t h) {
  return {reinterpret_cast<const uint16_t*>(t.const_data_ptr<at::BFloat16>()) + e * t.stride(0) + h * t.stride(1),
          t.stride(2)};
}

MutableBf16Rows mutable_rows_of(at::Tensor& t, int64_t e, int64_t h) {
  return {reinterpret_cast<uint16_t*>(t.mutable_data_ptr<at::BFloat16>()) + e * t.stride(0) + h * t.stride(1),
          t.stride(2)};
}

// Runs `block(e, h, workspace)` for every (example, head) block, spread over LibTorch's intra-op
// threads; each thread keeps one workspace for the calls it makes.
template <typename Block>
void for_each_block(int64_t examples, int64_t heads, int64_t floats, const Block& block) {
  at::parallel_for(0, examples * heads, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> workspace;
    if (static_cast<int64_t>(workspace.size()) < floats) workspace.resize(floats);
    for (int64_t b = begin; b < end; ++b) block(b / heads, b % heads, workspace.data());
  });
}

float default_scale(int64_t head_dim) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim))); }

// block_attention.h's kernels: forward and backward per block, from the bf16 values themselves.
class BlockAttention : public torch::autograd::Function<BlockAttention> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& mask) {
    RECORD_FUNCTION("bitfleet::block_attention_forward", std::vector<c10::IValue>());
    const int64_t E = q.size(0), H = q.size(1), Tq = q.size(2), T = k.size(2), D = q.size(3);
    const at::Tensor bias = key_bias(mask, q).view({E, T});
    at::Tensor out = empty_heads(q);
    at::Tensor stats = at::empty({E, H, Tq, 2}, q.options().dtype(at::kFloat));  // RowStats per query
    const float* bias_data = bias.const_data_ptr<float>();
    auto* stats_data = reinterpret_cast<RowStats*>(stats.mutable_data_ptr<float>());
    for_each_block(E, H, block_attention_workspace_floats(Tq, T, D), [&](int64_t e, int64_t h, float* ws) {
      block_attention_forward(Tq, T, D, default_scale(D), rows_of(q, e, h), rows_of(k, e, h), rows_of(v, e, h),
                              bias_data + e * T, mutable_rows_of(out, e, h), stats_data + (e * H + h) * Tq, ws);
    });
    ctx->save_for_backward({q, k, v, stats, bias});
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    RECORD_FUNCTION("bitfleet::block_attention_backward", std::vector<c10::IValue>());
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &stats = saved[3], &bias = saved[4];
    const at::Tensor dout = grads[0].stride(3) == 1 ? grads[0] : grads[0].contiguous();
    const int64_t E = q.size(0), H = q.size(1), Tq = q.size(2), T = k.size(2), D = q.size(3);
    at::Tensor dq = empty_heads(q), dk = empty_heads(k), dv = empty_heads(k);
    const float* bias_data = bias.const_data_ptr<float>();
    const auto* stats_data = reinterpret_cast<const RowStats*>(stats.const_data_ptr<float>());
    for_each_block(E, H, block_attention_workspace_floats(Tq, T, D), [&](int64_t e, int64_t h, float* ws) {
      block_attention_backward(Tq, T, D, default_scale(D), rows_of(q, e, h), rows_of(k, e, h), rows_of(v, e, h),
                               rows_of(dout, e, h), bias_data + e * T, stats_data + (e * H + h) * Tq,
                               mutable_rows_of(dq, e, h), mutable_rows_of(dk, e, h), mutable_rows_of(dv, e, h), ws);
    });
    return {dq, dk, dv, at::Tensor()};
  }
};

// LibTorch's flash kernels: the bf16 forward, and the fp32 backward on the exactly widened values.
class FlashAttention : public torch::autograd::Function<FlashAttention> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& mask) {
    // The flash kernels take an additive mask in their inputs' dtype: 0 or -inf (exact in bf16).
    const at::Tensor bias = key_bias(mask, q);
    auto [out, lse] = at::_scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, false, bias.to(at::kBFloat16));
    ctx->save_for_backward({q, k, v, out, lse, bias});
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto fp32 = [](const at::Tensor& t) { return t.to(at::kFloat); };
    auto [dq, dk, dv] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
        fp32(grads[0]), fp32(saved[0]), fp32(saved[1]), fp32(saved[2]), fp32(saved[3]), saved[4], 0.0, false,
        saved[5]);
    return {dq.to(at::kBFloat16), dk.to(at::kBFloat16), dv.to(at::kBFloat16), at::Tensor()};
  }
};

}  // namespace

CpuAttentionKernel cpu_attention_kernel(int64_t tokens, int64_t head_dim) {
  const bool fits = tokens <= kBlockAttentionMaxTokens && head_dim <= kBlockAttentionMaxHeadDim;
  return fits && block_attention_available() ? CpuAttentionKernel::kBlock : CpuAttentionKernel::kFlash;
}

at::Tensor cpu_bf16_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                              CpuAttentionKernel kernel) {
  if (kernel == CpuAttentionKernel::kAuto) kernel = cpu_attention_kernel(k.size(2), q.size(3));
  if (kernel == CpuAttentionKernel::kFlash) return FlashAttention::apply(q, k, v, mask);
  TORCH_CHECK(block_attention_available(), "the block attention kernel needs AVX-512F");
  TORCH_CHECK(q.size(2) <= k.size(2) && k.size(2) <= kBlockAttentionMaxTokens && q.size(3) <= kBlockAttentionMaxHeadDim,
              "the block attention kernel takes at most ", kBlockAttentionMaxTokens, " keys, no more queries than keys, ",
              "and head dim ", kBlockAttentionMaxHeadDim);
  auto unit_stride = [](const at::Tensor& t) { return t.stride(3) == 1 ? t : t.contiguous(); };
  return BlockAttention::apply(unit_stride(q), unit_stride(k), unit_stride(v), mask);
}

}  // namespace bitfleet::engine
