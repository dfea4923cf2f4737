#include "worker/engine/slot_layout.h"

#include <gtest/gtest.h>

#include <set>

namespace bitfleet::engine {
namespace {

using common::BiasKind;
using common::TaskType;

BackboneConfig small_config(Architecture arch) {
  return {.architecture = arch, .vocab_size = 100, .hidden = 32, .layers = 3, .heads = 4, .intermediate = 37,
          .max_positions = 64, .type_vocab_size = 2};
}

TEST(SlotLayoutTest, SegmentsTileTheRowWithoutOverlapAndRowsAreAligned) {
  SlotLayout layout(small_config(Architecture::kBert), common::all_bias_kinds(), 7);
  int64_t end = 0;
  for (const auto& s : layout.segments()) {
    EXPECT_EQ(s.offset, end);
    end += s.numel();
  }
  EXPECT_GT(layout.row_size(), end);  // room for the loss float
  EXPECT_EQ(layout.loss_offset(), layout.row_size() - 1);
  EXPECT_EQ(layout.row_size() % SlotLayout::kRowAlignment, 0);
  // 3 layers x (7 x 32 + 37) + 2 x 32 biases, then a 7 x 32 classifier and its 7 biases.
  EXPECT_EQ(end, 3 * (7 * 32 + 37) + 2 * 32 + 7 * 32 + 7);
}

TEST(SlotLayoutTest, SubsetOfKindsLeavesOthersShared) {
  SlotLayout layout(small_config(Architecture::kBert), common::query_intermediate_bias_kinds(), 2);
  EXPECT_NE(layout.bias(BiasKind::kQuery, 2), nullptr);
  EXPECT_NE(layout.bias(BiasKind::kIntermediate, 0), nullptr);
  EXPECT_EQ(layout.bias(BiasKind::kKey, 0), nullptr);
  EXPECT_EQ(layout.bias(BiasKind::kPooler, -1), nullptr);
}

TEST(SlotLayoutTest, HuggingFaceNamesFollowTheTaskModel) {
  SlotLayout bert(small_config(Architecture::kBert), common::all_bias_kinds(), 4);
  EXPECT_EQ(bert.hf_name(*bert.bias(BiasKind::kAttentionLayerNorm, 1), TaskType::kClassification),
            "bert.encoder.layer.1.attention.output.LayerNorm.bias");
  EXPECT_EQ(bert.hf_name(*bert.head(HeadPart::kClassifierWeight), TaskType::kClassification), "classifier.weight");
  SlotLayout roberta(small_config(Architecture::kRoberta), common::all_bias_kinds(), 4);
  EXPECT_EQ(roberta.hf_name(*roberta.head(HeadPart::kClassifierWeight), TaskType::kRegression),
            "classifier.out_proj.weight");
  EXPECT_EQ(roberta.hf_name(*roberta.head(HeadPart::kClassifierWeight), TaskType::kTokenClassification),
            "classifier.weight");
  EXPECT_EQ(roberta.hf_name(*roberta.bias(BiasKind::kEmbeddingsLayerNorm, -1), TaskType::kRegression),
            "roberta.embeddings.LayerNorm.bias");
}

TEST(SlotLayoutTest, PoolerOnlyFeedsBertSequenceHeads) {
  SlotLayout bert(small_config(Architecture::kBert), common::all_bias_kinds(), 4);
  EXPECT_TRUE(bert.task_uses(TaskType::kClassification, BiasKind::kPooler));
  EXPECT_FALSE(bert.task_uses(TaskType::kTokenClassification, BiasKind::kPooler));
  SlotLayout roberta(small_config(Architecture::kRoberta), common::all_bias_kinds(), 4);
  EXPECT_FALSE(roberta.task_uses(TaskType::kClassification, BiasKind::kPooler));
  EXPECT_TRUE(roberta.task_uses(TaskType::kClassification, HeadPart::kDenseWeight));
}

TEST(ParameterCountTest, BertBaseMatchesThePaper) {
  const BackboneConfig c{.architecture = Architecture::kBert, .vocab_size = 30522, .hidden = 768, .layers = 12,
                         .heads = 12, .intermediate = 3072, .max_positions = 512, .type_vocab_size = 2};
  EXPECT_EQ(count_parameters(c, {}).total, 109'482'240);
  EXPECT_EQ(count_parameters(c, common::all_bias_kinds()).biases, 102'912);
  EXPECT_EQ(count_parameters(c, common::query_intermediate_bias_kinds()).biases, 46'080);
}

}  // namespace
}  // namespace bitfleet::engine
