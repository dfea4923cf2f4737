// BackboneConfig: a Hugging Face BERT/RoBERTa encoder's config.json, and the list of parameters
// the engine builds from it.
//
// backbone_parameters() is the single source of truth for the backbone's shape: the loader
// reads exactly these tensors from model.safetensors, and `bitfleet-train describe` counts them
// (so describe needs only config.json). Each parameter carries its Hugging Face name (without the
// "bert."/"roberta." prefix) and, for biases, the BitFit bias kind it belongs to.
// Anything the engine does not implement exactly is refused with its name.
// Thread-safety: values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/job_spec.h"
#include "common/status.h"

namespace bitfleet::engine {

enum class Architecture { kBert, kRoberta };
enum class Activation { kGeluErf, kGeluTanh, kRelu };

struct BackboneConfig {
  Architecture architecture = Architecture::kBert;
  int64_t vocab_size = 0;
  int64_t hidden = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t intermediate = 0;
  int64_t max_positions = 0;
  int64_t type_vocab_size = 0;
  double layer_norm_eps = 1e-12;
  int64_t pad_token_id = 0;
  Activation activation = Activation::kGeluErf;

  // The prefix Hugging Face puts before backbone names in task models ("bert", "roberta").
  std::string prefix() const { return architecture == Architecture::kBert ? "bert" : "roberta"; }
  int64_t head_dim() const { return hidden / heads; }
  // The longest input the position embeddings allow (RoBERTa reserves pad_token_id + 1 rows).
  int64_t max_sequence_length() const {
    return architecture == Architecture::kRoberta ? max_positions - pad_token_id - 1 : max_positions;
  }

  static Result<BackboneConfig> from_json_text(const std::string& text, const std::string& origin);
  static Result<BackboneConfig> load(const std::string& dir);
};

struct ParameterSpec {
  std::string name;  // Hugging Face name without the model prefix: "encoder.layer.0.attention.self.query.bias"
  std::vector<int64_t> shape;
  std::optional<common::BiasKind> bias_kind;  // set for the biases BitFit can train
  int layer = -1;                              // encoder layer, -1 for embeddings and pooler

  int64_t numel() const;
};

// Every parameter of the backbone (BertModel / RobertaModel, with pooler), in a fixed order.
std::vector<ParameterSpec> backbone_parameters(const BackboneConfig& config);

// The Hugging Face name of the bias of `kind` in `layer` (layer ignored for embeddings/pooler).
std::string bias_parameter_name(common::BiasKind kind, int layer);
// The width of a bias kind's vector.
int64_t bias_width(const BackboneConfig& config, common::BiasKind kind);
// Whether `kind` exists in the layers (true) or once per model (embeddings LayerNorm, pooler).
bool is_per_layer(common::BiasKind kind);

struct ParameterCounts {
  int64_t total = 0;
  int64_t biases = 0;  // biases of the requested kinds
};
ParameterCounts count_parameters(const BackboneConfig& config, common::BiasKindSet kinds);

}  // namespace bitfleet::engine
