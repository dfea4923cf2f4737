// AdamW over rows of the flat parameter buffer: the update torch.optim.AdamW computes (bias
// correction, decoupled weight decay), with each row's own step count, learning rate and
// gradient-clipping scale, for all updating slots in one set of tensor ops.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/Tensor.h>

namespace bitfleet::engine {

// The rows to update and each row's scalars for this step.
struct AdamWRows {
  std::vector<int64_t> slots;      // rows of the flat buffers
  std::vector<double> decay;       // 1 - lr * weight_decay
  std::vector<double> step_size;   // lr / (1 - beta1^t)
  std::vector<double> bc2_sqrt;    // sqrt(1 - beta2^t)
  std::vector<double> clip;        // the gradient's scale from global-norm clipping (<= 1)

  // Adds a row: its learning rate, weight decay, step t (1-based) and clipping scale.
  void add(int64_t slot, double learning_rate, double weight_decay, int64_t t, double clip_scale);
  bool empty() const { return slots.empty(); }
};

// torch.nn.utils.clip_grad_norm_'s scale for a gradient of this norm: max_norm / (norm + 1e-6),
// never above 1; 1 when max_norm is 0 (no clipping).
double clip_scale(double norm, double max_norm);

// Updates rows.slots of params, m and v ([S, row] fp32) in place. grads: [rows.slots.size(), row],
// the masked gradients of those slots in that order; mask: [S, row], 1 where a slot trains (rows a
// job does not train have gradient 0 and mask 0, so they never move — weight decay included).
void adamw_update(const AdamWRows& rows, const at::Tensor& grads, const at::Tensor& mask, const at::Tensor& params,
                  const at::Tensor& m, const at::Tensor& v);

}  // namespace bitfleet::engine
