#include "worker/engine/backbone.h"

#include <gtest/gtest.h>

#include <fstream>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/safetensors.h"
#include "tests/unit/engine/engine_fixture.h"

namespace bitfleet::engine {
namespace {

using testing::TempDir;

void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto text = common::read_file(dir + "/config.json");
  ASSERT_TRUE(text.is_ok());
  auto j = nlohmann::json::parse(*text);
  edit(j);
  std::ofstream(dir + "/config.json") << j.dump();
}

TEST(BackboneTest, LoadsRandomBertAndRoberta) {
  TempDir dir;
  auto bert = testing::random_backbone(dir, Architecture::kBert);
  ASSERT_NE(bert, nullptr);
  EXPECT_EQ(bert->layers.size(), 2u);
  EXPECT_FALSE(bert->word_embeddings.requires_grad());
  auto roberta = testing::random_backbone(dir, Architecture::kRoberta);
  ASSERT_NE(roberta, nullptr);
  EXPECT_EQ(roberta->config().max_sequence_length(), 64);
}

TEST(BackboneTest, BfloatWeightsKeepExactPretrainedBiases) {
  TempDir dir;
  ASSERT_NE(testing::random_backbone(dir), nullptr);
  auto fp32 = Backbone::load(dir.sub("bert"), c10::kCPU, at::kFloat);
  auto bf16 = Backbone::load(dir.sub("bert"), c10::kCPU, at::kBFloat16);
  ASSERT_TRUE(fp32.is_ok() && bf16.is_ok());
  EXPECT_EQ((*bf16)->layers[0].query_w.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal((*bf16)->pretrained_bias(common::BiasKind::kQuery, 1),
                        (*fp32)->pretrained_bias(common::BiasKind::kQuery, 1)));
}

// The bf16 CPU step projects q, k and v with one GEMM on the stacked weight: its three row blocks are
// the checkpoint's tensors, and query_w, key_w and value_w are views of them, not copies.
TEST(BackboneTest, QueryKeyAndValueWeightsAreViewsOfTheStackedWeight) {
  TempDir dir;
  ASSERT_NE(testing::random_backbone(dir), nullptr);
  auto loaded = Backbone::load(dir.sub("bert"), c10::kCPU, at::kFloat);
  ASSERT_TRUE(loaded.is_ok());
  auto file = safetensors::File::open(dir.sub("bert/model.safetensors"));
  ASSERT_TRUE(file.is_ok());
  auto in_file = [&](const std::string& name) {
    for (const auto& t : file->tensors()) {
      if (t.name == name) return at::from_blob(const_cast<std::byte*>(t.data.data()), t.shape, at::kFloat).clone();
    }
    ADD_FAILURE() << "no tensor " << name;
    return at::Tensor();
  };
  const EncoderLayerWeights& layer = (*loaded)->layers[1];
  const int64_t hidden = (*loaded)->config().hidden;
  ASSERT_EQ(layer.qkv_w.sizes(), (std::vector<int64_t>{3 * hidden, hidden}));
  int block = 0;
  for (auto [name, view] : {std::pair{"query", &layer.query_w}, std::pair{"key", &layer.key_w},
                            std::pair{"value", &layer.value_w}}) {
    EXPECT_TRUE(at::equal(*view, in_file(std::string("encoder.layer.1.attention.self.") + name + ".weight"))) << name;
    EXPECT_EQ(view->const_data_ptr<float>(), layer.qkv_w.const_data_ptr<float>() + block++ * hidden * hidden) << name;
  }
}

struct RefusedConfig {
  const char* name;
  const char* key;
  nlohmann::json value;
  const char* must_mention;
};

class BackboneRefusesTest : public ::testing::TestWithParam<RefusedConfig> {};

TEST_P(BackboneRefusesTest, NamesWhatIsUnsupported) {
  TempDir dir;
  ASSERT_NE(testing::random_backbone(dir), nullptr);
  edit_config(dir.sub("bert"), [&](nlohmann::json& j) { j[GetParam().key] = GetParam().value; });
  auto loaded = Backbone::load(dir.sub("bert"), c10::kCPU, at::kFloat);
  ASSERT_FALSE(loaded.is_ok());
  EXPECT_NE(loaded.status().message().find(GetParam().must_mention), std::string::npos) << loaded.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Configs, BackboneRefusesTest,
    ::testing::Values(RefusedConfig{"ModelType", "model_type", "gpt2", "model_type \"gpt2\""},
                      RefusedConfig{"Architecture", "architectures", {"BertLMHeadModel"}, "BertLMHeadModel"},
                      RefusedConfig{"Activation", "hidden_act", "silu", "hidden_act \"silu\""},
                      RefusedConfig{"PositionEmbedding", "position_embedding_type", "relative_key", "relative_key"},
                      RefusedConfig{"Decoder", "is_decoder", true, "decoder"},
                      RefusedConfig{"HeadsDoNotDivide", "num_attention_heads", 5, "not a multiple"},
                      RefusedConfig{"ShapeMismatch", "intermediate_size", 40, "has shape"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(BackboneTest, MissingTensorIsNamed) {
  TempDir dir;
  ASSERT_NE(testing::random_backbone(dir), nullptr);
  std::string bytes;
  {
    auto file = safetensors::File::open(dir.sub("bert/model.safetensors"));
    ASSERT_TRUE(file.is_ok());
    safetensors::Writer w;
    for (const auto& t : file->tensors()) {
      if (t.name != "encoder.layer.1.output.dense.weight") w.add(t.name, t.dtype, t.shape, t.data);
    }
    bytes = w.to_bytes();
  }
  ASSERT_TRUE(common::write_file_atomic(dir.sub("bert/model.safetensors"), bytes).is_ok());
  auto loaded = Backbone::load(dir.sub("bert"), c10::kCPU, at::kFloat);
  ASSERT_FALSE(loaded.is_ok());
  EXPECT_NE(loaded.status().message().find("encoder.layer.1.output.dense.weight"), std::string::npos);
}

TEST(BackboneTest, ShardedCheckpointLoadsLikeOneFile) {
  TempDir dir;
  ASSERT_NE(testing::random_backbone(dir), nullptr);
  auto whole = Backbone::load(dir.sub("bert"), c10::kCPU, at::kFloat);
  ASSERT_TRUE(whole.is_ok());
  {
    auto file = safetensors::File::open(dir.sub("bert/model.safetensors"));
    ASSERT_TRUE(file.is_ok());
    safetensors::Writer a, b;
    nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
    int i = 0;
    for (const auto& t : file->tensors()) {
      // Shards store names with the task model's prefix, as transformers writes them.
      const std::string name = "bert." + t.name;
      const bool first = i++ % 2 == 0;
      (first ? a : b).add(name, t.dtype, t.shape, t.data);
      index["weight_map"][name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    ASSERT_TRUE(a.write_file(dir.sub("bert/model-00001-of-00002.safetensors")).is_ok());
    ASSERT_TRUE(b.write_file(dir.sub("bert/model-00002-of-00002.safetensors")).is_ok());
    std::ofstream(dir.sub("bert/model.safetensors.index.json")) << index.dump();
  }
  std::remove(dir.sub("bert/model.safetensors").c_str());
  auto sharded = Backbone::load(dir.sub("bert"), c10::kCPU, at::kFloat);
  ASSERT_TRUE(sharded.is_ok()) << sharded.status().to_string();
  EXPECT_TRUE(at::equal((*sharded)->layers[1].out_w, (*whole)->layers[1].out_w));
  EXPECT_TRUE(at::equal((*sharded)->word_embeddings, (*whole)->word_embeddings));
}

}  // namespace
}  // namespace bitfleet::engine
