#include "worker/engine/cpu_attention.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace bitfleet::engine {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

class CpuBf16Attention : public torch::autograd::Function<CpuBf16Attention> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& key_bias) {
    const int64_t n = q.size(0), T = q.size(2);
    // The flash kernel takes an additive mask in the query's dtype (0 and -inf are exact in bf16).
    auto [out, lse] = at::_scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, false, key_bias.to(at::kBFloat16).view({n, 1, 1, T}));
    ctx->save_for_backward({q, k, v, out, lse, key_bias});
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const int64_t n = saved[0].size(0), T = saved[0].size(2);
    auto fp32 = [](const at::Tensor& t) { return t.to(at::kFloat); };
    auto [dq, dk, dv] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
        fp32(grads[0]), fp32(saved[0]), fp32(saved[1]), fp32(saved[2]), fp32(saved[3]), saved[4], 0.0, false,
        saved[5].view({n, 1, 1, T}));
    return {dq.to(at::kBFloat16), dk.to(at::kBFloat16), dv.to(at::kBFloat16), at::Tensor()};
  }
};

}  // namespace

at::Tensor cpu_bf16_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& key_bias) {
  return CpuBf16Attention::apply(q, k, v, key_bias);
}

}  // namespace bitfleet::engine
