#include "worker/engine/adamw.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>

#include "worker/engine/batch_builder.h"

namespace bitfleet::engine {
namespace {

constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEpsilon = 1e-8;

// Per-row scalars as a [n, 1] float tensor on `like`'s device.
at::Tensor column(const std::vector<double>& values, const at::Tensor& like) {
  const std::vector<float> floats(values.begin(), values.end());
  return upload(floats, like.device()).view({-1, 1});
}

}  // namespace

void AdamWRows::add(int64_t slot, double learning_rate, double weight_decay, int64_t t, double clip_scale) {
  slots.push_back(slot);
  decay.push_back(1.0 - learning_rate * weight_decay);
  step_size.push_back(learning_rate / (1.0 - std::pow(kBeta1, static_cast<double>(t))));
  bc2_sqrt.push_back(std::sqrt(1.0 - std::pow(kBeta2, static_cast<double>(t))));
  clip.push_back(clip_scale);
}

double clip_scale(double norm, double max_norm) { return max_norm > 0 ? std::min(1.0, max_norm / (norm + 1e-6)) : 1.0; }

void adamw_update(const AdamWRows& rows, const at::Tensor& grads, const at::Tensor& mask_all, const at::Tensor& params,
                  const at::Tensor& m_all, const at::Tensor& v_all) {
  at::Tensor idx = upload(rows.slots, params.device());
  at::Tensor mask = mask_all.index_select(0, idx);
  at::Tensor grad = grads.mul(column(rows.clip, grads));
  at::Tensor p = params.index_select(0, idx);
  at::Tensor m = m_all.index_select(0, idx);
  at::Tensor v = v_all.index_select(0, idx);
  at::Tensor keep = at::ones_like(mask).sub_(mask).add_(mask.mul(column(rows.decay, mask)));  // 1 - lr*wd where trained
  p.mul_(keep);
  m.lerp_(grad, 1.0 - kBeta1);
  v.mul_(kBeta2).addcmul_(grad, grad, 1.0 - kBeta2);
  at::Tensor denom = v.sqrt().div_(column(rows.bc2_sqrt, v)).add_(kEpsilon);
  p.add_(m.mul(column(rows.step_size, m).neg_()).div_(denom));  // addcdiv's (value * m) / denom
  params.index_copy_(0, idx, p);
  m_all.index_copy_(0, idx, m);
  v_all.index_copy_(0, idx, v);
}

}  // namespace bitfleet::engine
