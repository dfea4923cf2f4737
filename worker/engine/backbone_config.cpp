#include "worker/engine/backbone_config.h"

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/json_fields.h"

namespace bitfleet::engine {

using common::BiasKind;

namespace {

Status refuse(const std::string& origin, const std::string& what) {
  return invalid_argument(origin + ": unsupported " + what +
                          " (bitfleet runs BERT-style and RoBERTa-style encoders with absolute "
                          "position embeddings)");
}

int64_t positive(const nlohmann::json& j, const char* key, const std::string& origin, Status& error) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() <= 0) {
    if (error.is_ok()) error = invalid_argument(origin + ": " + key + " must be a positive integer", key);
    return 0;
  }
  return it->get<int64_t>();
}

}  // namespace

int64_t ParameterSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<BackboneConfig> BackboneConfig::from_json_text(const std::string& text, const std::string& origin) {
  BITFLEET_ASSIGN_OR_RETURN(nlohmann::json j, common::parse_json(text, origin));
  if (!j.is_object()) return invalid_argument(origin + ": not a JSON object");
  BackboneConfig c;
  const std::string model_type = j.value("model_type", "");
  if (model_type == "bert") {
    c.architecture = Architecture::kBert;
  } else if (model_type == "roberta" || model_type == "xlm-roberta") {
    c.architecture = Architecture::kRoberta;
  } else {
    return refuse(origin, "model_type \"" + model_type + "\"");
  }
  for (const auto& arch : j.value("architectures", std::vector<std::string>{})) {
    bool known = arch.rfind("Bert", 0) == 0 || arch.rfind("Roberta", 0) == 0 || arch.rfind("XLMRoberta", 0) == 0;
    bool decoder = arch.find("Causal") != std::string::npos || arch.find("Generation") != std::string::npos ||
                   arch.find("LMHead") != std::string::npos;
    if (!known || decoder) {
      return refuse(origin, "architecture \"" + arch + "\"");
    }
  }
  if (j.value("position_embedding_type", "absolute") != "absolute") {
    return refuse(origin, "position_embedding_type \"" + j.value("position_embedding_type", "") + "\"");
  }
  if (j.value("is_decoder", false) || j.value("add_cross_attention", false)) {
    return refuse(origin, "decoder configuration (is_decoder/add_cross_attention)");
  }
  const std::string act = j.value("hidden_act", "gelu");
  if (act == "gelu") {
    c.activation = Activation::kGeluErf;
  } else if (act == "gelu_new" || act == "gelu_pytorch_tanh") {
    c.activation = Activation::kGeluTanh;
  } else if (act == "relu") {
    c.activation = Activation::kRelu;
  } else {
    return refuse(origin, "hidden_act \"" + act + "\"");
  }
  Status error;
  c.vocab_size = positive(j, "vocab_size", origin, error);
  c.hidden = positive(j, "hidden_size", origin, error);
  c.layers = positive(j, "num_hidden_layers", origin, error);
  c.heads = positive(j, "num_attention_heads", origin, error);
  c.intermediate = positive(j, "intermediate_size", origin, error);
  c.max_positions = positive(j, "max_position_embeddings", origin, error);
  c.type_vocab_size = positive(j, "type_vocab_size", origin, error);
  BITFLEET_RETURN_IF_ERROR(error);
  if (c.hidden % c.heads != 0) {
    return invalid_argument(origin + ": hidden_size " + std::to_string(c.hidden) +
                            " is not a multiple of num_attention_heads " + std::to_string(c.heads));
  }
  c.layer_norm_eps = j.value("layer_norm_eps", 1e-12);
  c.pad_token_id = j.value("pad_token_id", c.architecture == Architecture::kRoberta ? 1 : 0);
  if (c.max_sequence_length() < 8) return invalid_argument(origin + ": max_position_embeddings is too small");
  return c;
}

Result<BackboneConfig> BackboneConfig::load(const std::string& dir) {
  const std::string path = dir + "/config.json";
  BITFLEET_ASSIGN_OR_RETURN(std::string text, common::read_file(path));
  return from_json_text(text, path);
}

bool is_per_layer(BiasKind kind) {
  return kind != BiasKind::kEmbeddingsLayerNorm && kind != BiasKind::kPooler;
}

std::string bias_parameter_name(BiasKind kind, int layer) {
  const std::string l = "encoder.layer." + std::to_string(layer) + ".";
  switch (kind) {
    case BiasKind::kQuery: return l + "attention.self.query.bias";
    case BiasKind::kKey: return l + "attention.self.key.bias";
    case BiasKind::kValue: return l + "attention.self.value.bias";
    case BiasKind::kAttentionOutput: return l + "attention.output.dense.bias";
    case BiasKind::kAttentionLayerNorm: return l + "attention.output.LayerNorm.bias";
    case BiasKind::kIntermediate: return l + "intermediate.dense.bias";
    case BiasKind::kOutput: return l + "output.dense.bias";
    case BiasKind::kOutputLayerNorm: return l + "output.LayerNorm.bias";
    case BiasKind::kEmbeddingsLayerNorm: return "embeddings.LayerNorm.bias";
    case BiasKind::kPooler: return "pooler.dense.bias";
  }
  return "";
}

int64_t bias_width(const BackboneConfig& config, BiasKind kind) {
  return kind == BiasKind::kIntermediate ? config.intermediate : config.hidden;
}

std::vector<ParameterSpec> backbone_parameters(const BackboneConfig& c) {
  const int64_t H = c.hidden, I = c.intermediate;
  std::vector<ParameterSpec> p;
  auto weight = [&](std::string name, std::vector<int64_t> shape, int layer = -1) {
    p.push_back({std::move(name), std::move(shape), std::nullopt, layer});
  };
  auto bias = [&](BiasKind kind, int layer = -1) {
    p.push_back({bias_parameter_name(kind, layer), {bias_width(c, kind)}, kind, layer});
  };
  weight("embeddings.word_embeddings.weight", {c.vocab_size, H});
  weight("embeddings.position_embeddings.weight", {c.max_positions, H});
  weight("embeddings.token_type_embeddings.weight", {c.type_vocab_size, H});
  weight("embeddings.LayerNorm.weight", {H});
  bias(BiasKind::kEmbeddingsLayerNorm);
  for (int l = 0; l < c.layers; ++l) {
    const std::string prefix = "encoder.layer." + std::to_string(l) + ".";
    weight(prefix + "attention.self.query.weight", {H, H}, l);
    bias(BiasKind::kQuery, l);
    weight(prefix + "attention.self.key.weight", {H, H}, l);
    bias(BiasKind::kKey, l);
    weight(prefix + "attention.self.value.weight", {H, H}, l);
    bias(BiasKind::kValue, l);
    weight(prefix + "attention.output.dense.weight", {H, H}, l);
    bias(BiasKind::kAttentionOutput, l);
    weight(prefix + "attention.output.LayerNorm.weight", {H}, l);
    bias(BiasKind::kAttentionLayerNorm, l);
    weight(prefix + "intermediate.dense.weight", {I, H}, l);
    bias(BiasKind::kIntermediate, l);
    weight(prefix + "output.dense.weight", {H, I}, l);
    bias(BiasKind::kOutput, l);
    weight(prefix + "output.LayerNorm.weight", {H}, l);
    bias(BiasKind::kOutputLayerNorm, l);
  }
  weight("pooler.dense.weight", {H, H});
  bias(BiasKind::kPooler);
  return p;
}

ParameterCounts count_parameters(const BackboneConfig& config, common::BiasKindSet kinds) {
  ParameterCounts counts;
  for (const auto& spec : backbone_parameters(config)) {
    counts.total += spec.numel();
    if (spec.bias_kind && kinds.test(static_cast<int>(*spec.bias_kind))) counts.biases += spec.numel();
  }
  return counts;
}

}  // namespace bitfleet::engine
