// Backbone: the frozen pretrained encoder weights, loaded once per worker and shared by every
// task slot.
//
// Reads a Hugging Face directory: config.json plus model.safetensors, or the shards listed in
// model.safetensors.index.json. Names may carry the task model's prefix ("bert.", "roberta.")
// or not; other tensors (pre-training or task heads, position_ids buffers) are ignored. The pooler
// is optional (token-classification checkpoints have none); every other expected tensor
// must be present with its exact shape; F32, F16 and BF16 are accepted and converted to the
// requested dtype on the requested device. No weight here ever requires a gradient.
// Thread-safety: immutable after load().
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

#include "common/precision.h"
#include "common/status.h"
#include "worker/engine/backbone_config.h"

namespace bitfleet::engine {

struct EncoderLayerWeights {
  // The query, key and value weights stacked, [3 * hidden, hidden]; query_w, key_w and value_w are
  // views of its three row blocks (no second copy). The bf16 CPU step projects with it in one GEMM.
  at::Tensor qkv_w;
  at::Tensor query_w, query_b, key_w, key_b, value_w, value_b;
  at::Tensor attn_out_w, attn_out_b, attn_ln_w, attn_ln_b;
  at::Tensor inter_w, inter_b, out_w, out_b, out_ln_w, out_ln_b;
};

inline c10::ScalarType scalar_type(common::Dtype dtype) {
  return dtype == common::Dtype::kBf16 ? c10::kBFloat16 : c10::kFloat;
}

class Backbone {
 public:
  static Result<std::unique_ptr<Backbone>> load(const std::string& dir, c10::Device device,
                                                c10::ScalarType dtype);

  const BackboneConfig& config() const { return config_; }
  c10::Device device() const { return device_; }
  c10::ScalarType dtype() const { return dtype_; }
  common::Dtype precision() const { return dtype_ == c10::kBFloat16 ? common::Dtype::kBf16 : common::Dtype::kFp32; }
  // False for checkpoints saved without a pooler: BERT sequence tasks then cannot run on it.
  bool has_pooler() const { return pooler_w.defined(); }

  // The pretrained value of a bias (the row a new slot starts from), fp32 on the CPU.
  at::Tensor pretrained_bias(common::BiasKind kind, int layer) const;

  at::Tensor word_embeddings, position_embeddings, token_type_embeddings;
  at::Tensor embeddings_ln_w, embeddings_ln_b;
  std::vector<EncoderLayerWeights> layers;
  at::Tensor pooler_w, pooler_b;

 private:
  BackboneConfig config_;
  c10::Device device_{c10::kCPU};
  c10::ScalarType dtype_ = c10::kFloat;
  std::map<std::string, at::Tensor> pretrained_biases_;  // by Hugging Face name
};

}  // namespace bitfleet::engine
