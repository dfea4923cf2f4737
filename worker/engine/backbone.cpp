#include "worker/engine/backbone.h"

#include <filesystem>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/json_fields.h"
#include "common/safetensors.h"

namespace bitfleet::engine {
namespace {

namespace fs = std::filesystem;
using common::BiasKind;

// The safetensors files of a checkpoint: one file, or the shards of an index.
Result<std::vector<std::string>> weight_files(const std::string& dir) {
  if (fs::exists(dir + "/model.safetensors")) return std::vector<std::string>{dir + "/model.safetensors"};
  const std::string index = dir + "/model.safetensors.index.json";
  if (!fs::exists(index)) {
    if (fs::exists(dir + "/pytorch_model.bin")) {
      return invalid_argument(dir + ": has only pytorch_model.bin; bitfleet reads safetensors (convert it "
                              "with transformers: model.save_pretrained(dir, safe_serialization=True))");
    }
    return not_found(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  BITFLEET_ASSIGN_OR_RETURN(std::string text, common::read_file(index));
  BITFLEET_ASSIGN_OR_RETURN(nlohmann::json j, common::parse_json(text, index));
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    return invalid_argument(index + ": has no weight_map object");
  }
  std::set<std::string> shards;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos) {
      return invalid_argument(index + ": weight_map entry \"" + name + "\" is not a file name in the directory");
    }
    shards.insert(file.get<std::string>());
  }
  std::vector<std::string> out;
  for (const auto& s : shards) out.push_back(dir + "/" + s);
  return out;
}

Result<at::ScalarType> torch_dtype(const safetensors::TensorView& t, const std::string& file) {
  switch (t.dtype) {
    case safetensors::DType::kF32: return at::kFloat;
    case safetensors::DType::kF16: return at::kHalf;
    case safetensors::DType::kBF16: return at::kBFloat16;
    default:
      return invalid_argument(file + ": tensor \"" + t.name + "\" has dtype " +
                              std::string(safetensors::dtype_name(t.dtype)) + "; weights must be F32, F16 or BF16");
  }
}

}  // namespace

namespace {

// The loaded tensors, by Hugging Face name, into the backbone's fields.
void assign_weights(Backbone& b, std::map<std::string, at::Tensor>& loaded, int layers) {
  b.word_embeddings = loaded["embeddings.word_embeddings.weight"];
  b.position_embeddings = loaded["embeddings.position_embeddings.weight"];
  b.token_type_embeddings = loaded["embeddings.token_type_embeddings.weight"];
  b.embeddings_ln_w = loaded["embeddings.LayerNorm.weight"];
  b.embeddings_ln_b = loaded["embeddings.LayerNorm.bias"];
  if (loaded.count("pooler.dense.weight") && loaded.count("pooler.dense.bias")) {
    b.pooler_w = loaded["pooler.dense.weight"];
    b.pooler_b = loaded["pooler.dense.bias"];
  }
  for (int l = 0; l < layers; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    EncoderLayerWeights w;
    w.qkv_w = at::cat({loaded[p + "attention.self.query.weight"], loaded[p + "attention.self.key.weight"],
                       loaded[p + "attention.self.value.weight"]});
    const int64_t hidden = w.qkv_w.size(1);
    w.query_w = w.qkv_w.narrow(0, 0, hidden);
    w.key_w = w.qkv_w.narrow(0, hidden, hidden);
    w.value_w = w.qkv_w.narrow(0, 2 * hidden, hidden);
    w.query_b = loaded[p + "attention.self.query.bias"];
    w.key_b = loaded[p + "attention.self.key.bias"];
    w.value_b = loaded[p + "attention.self.value.bias"];
    w.attn_out_w = loaded[p + "attention.output.dense.weight"];
    w.attn_out_b = loaded[p + "attention.output.dense.bias"];
    w.attn_ln_w = loaded[p + "attention.output.LayerNorm.weight"];
    w.attn_ln_b = loaded[p + "attention.output.LayerNorm.bias"];
    w.inter_w = loaded[p + "intermediate.dense.weight"];
    w.inter_b = loaded[p + "intermediate.dense.bias"];
    w.out_w = loaded[p + "output.dense.weight"];
    w.out_b = loaded[p + "output.dense.bias"];
    w.out_ln_w = loaded[p + "output.LayerNorm.weight"];
    w.out_ln_b = loaded[p + "output.LayerNorm.bias"];
    b.layers.push_back(std::move(w));
  }
}

}  // namespace

Result<std::unique_ptr<Backbone>> Backbone::load(const std::string& dir, c10::Device device, c10::ScalarType dtype) {
  BITFLEET_ASSIGN_OR_RETURN(BackboneConfig config, BackboneConfig::load(dir));
  BITFLEET_ASSIGN_OR_RETURN(std::vector<std::string> paths, weight_files(dir));
  std::vector<safetensors::File> files;
  struct Found {
    const safetensors::TensorView* view;
    const std::string* file;
  };
  std::map<std::string, Found> by_name;
  files.reserve(paths.size());
  for (const auto& path : paths) {
    BITFLEET_ASSIGN_OR_RETURN(safetensors::File f, safetensors::File::open(path));
    files.push_back(std::move(f));
  }
  for (size_t i = 0; i < files.size(); ++i) {
    for (const auto& t : files[i].tensors()) by_name[t.name] = {&t, &paths[i]};
  }

  auto to_tensor = [&](const Found& found, c10::ScalarType target, c10::Device on) -> Result<at::Tensor> {
    BITFLEET_ASSIGN_OR_RETURN(at::ScalarType source, torch_dtype(*found.view, *found.file));
    auto cpu = at::from_blob(const_cast<std::byte*>(found.view->data.data()), found.view->shape,
                             at::TensorOptions().dtype(source));
    // copy=true: the mapping goes away when this function returns.
    return cpu.to(at::TensorOptions().dtype(target).device(on), /*non_blocking=*/false, /*copy=*/true);
  };

  auto backbone = std::make_unique<Backbone>();
  backbone->config_ = config;
  backbone->device_ = device;
  backbone->dtype_ = dtype;
  std::map<std::string, at::Tensor> loaded;
  const std::string prefix = config.prefix() + ".";
  for (const auto& spec : backbone_parameters(config)) {
    auto it = by_name.find(spec.name);
    if (it == by_name.end()) it = by_name.find(prefix + spec.name);
    if (it == by_name.end() && spec.name.rfind("pooler.", 0) == 0) continue;  // optional
    if (it == by_name.end()) {
      return invalid_argument(dir + ": the checkpoint has no tensor \"" + spec.name + "\" (nor \"" + prefix +
                              spec.name + "\")");
    }
    if (it->second.view->shape != spec.shape) {
      std::string got, want;
      for (auto d : it->second.view->shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
      for (auto d : spec.shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
      return invalid_argument(*it->second.file + ": tensor \"" + it->first + "\" has shape [" + got +
                              "], config.json implies [" + want + "]");
    }
    BITFLEET_ASSIGN_OR_RETURN(at::Tensor t, to_tensor(it->second, dtype, device));
    loaded[spec.name] = t;
    if (spec.bias_kind) {  // slots start from the exact pretrained value, even when weights are bf16
      BITFLEET_ASSIGN_OR_RETURN(at::Tensor exact, to_tensor(it->second, at::kFloat, at::kCPU));
      backbone->pretrained_biases_[spec.name] = exact;
    }
  }

  assign_weights(*backbone, loaded, config.layers);
  return backbone;
}

at::Tensor Backbone::pretrained_bias(BiasKind kind, int layer) const {
  auto it = pretrained_biases_.find(bias_parameter_name(kind, layer));
  // Only a missing pooler gets here (the loader requires everything else): its row is unused.
  return it != pretrained_biases_.end() ? it->second : at::zeros({config_.hidden}, at::kFloat);
}

}  // namespace bitfleet::engine
