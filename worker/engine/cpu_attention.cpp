#include "worker/engine/cpu_attention.h"

#include <limits>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace bitfleet::engine {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

class CpuBf16Attention : public torch::autograd::Function<CpuBf16Attention> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& mask) {
    // The flash kernels take an additive mask in their inputs' dtype: 0 or -inf (exact in bf16).
    const at::Tensor bias = at::zeros(mask.sizes(), q.options().dtype(at::kFloat))
                                .masked_fill_(mask.logical_not(), -std::numeric_limits<float>::infinity());
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

at::Tensor cpu_bf16_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  return CpuBf16Attention::apply(q, k, v, mask);
}

}  // namespace bitfleet::engine
