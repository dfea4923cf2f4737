#include "worker/text/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "worker/text/sampler.h"

namespace bitfleet::text {
namespace {

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("bitfleet-ds-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "vocab.txt") << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\nsat\ndog\nran\n##s\n.\n";
    auto t = Tokenizer::load(dir_.string());
    ASSERT_TRUE(t.is_ok());
    tokenizer_ = *t;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Result<Dataset> load(const std::string& content, const std::string& name, const common::TaskSpec& task) {
    auto table = common::read_table(content, *common::table_format_from_name(name), name);
    if (!table.is_ok()) return table.status();
    return make_dataset(*table, task, *tokenizer_, 32);
  }

  std::filesystem::path dir_;
  std::shared_ptr<const Tokenizer> tokenizer_;
};

common::TaskSpec classification() {
  return {common::TaskType::kClassification, {"sentence1", "sentence2"}, "label", {"no", "yes"}};
}

TEST_F(DatasetTest, PairsAreTokenizedAndLabelsMapped) {
  auto d = load("sentence1\tsentence2\tlabel\nthe cat sat\tthe dog ran\tyes\n", "t.tsv", classification());
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  ASSERT_EQ(d->examples.size(), 1u);
  EXPECT_EQ(d->examples[0].ids, (std::vector<int32_t>{2, 5, 6, 7, 3, 5, 8, 9, 3}));
  EXPECT_EQ(d->examples[0].label, 1);
  EXPECT_EQ(d->examples[0].line, 2);
}

TEST_F(DatasetTest, UnknownLabelNamesFileLineAndField) {
  auto d = load("sentence1\tsentence2\tlabel\nthe\tcat\tyes\nthe\tcat\tmaybe\n", "train.tsv", classification());
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("train.tsv:3: field \"label\": \"maybe\" is not one of"), std::string::npos)
      << d.status().message();
}

TEST_F(DatasetTest, MissingColumnNamesTheTaskField) {
  auto d = load("premise\tlabel\nthe\tyes\n", "t.tsv", classification());
  ASSERT_FALSE(d.is_ok());
  EXPECT_EQ(d.status().field(), "task.text_fields[0]");
}

TEST_F(DatasetTest, RegressionTargetsMustBeFiniteNumbers) {
  common::TaskSpec reg{common::TaskType::kRegression, {"s"}, "score", {}};
  auto ok = load("s,score\nthe cat,3.5\n", "r.csv", reg);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_FLOAT_EQ(ok->examples[0].target, 3.5f);
  auto bad = load("s,score\nthe cat,3.5\nthe dog,high\n", "r.csv", reg);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("r.csv:3: field \"score\""), std::string::npos);
  EXPECT_FALSE(load("s,score\nthe,nan\n", "r.csv", reg).is_ok());
}

TEST_F(DatasetTest, TokenTagsLabelTheFirstPieceOfEachWord) {
  common::TaskSpec pos{common::TaskType::kTokenClassification, {"tokens"}, "tags", {"DET", "NOUN", "VERB"}};
  auto d = load("{\"tokens\": [\"the\", \"cats\", \"sat\"], \"tags\": [\"DET\", \"NOUN\", \"VERB\"]}\n", "p.jsonl", pos);
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  // [CLS] the cat ##s sat [SEP]
  EXPECT_EQ(d->examples[0].token_labels, (std::vector<int32_t>{-100, 0, 1, -100, 2, -100}));
}

TEST_F(DatasetTest, TagCountMustMatchWordCount) {
  common::TaskSpec pos{common::TaskType::kTokenClassification, {"tokens"}, "tags", {"DET", "NOUN"}};
  auto d = load("tokens\ttags\nthe cat\tDET\n", "p.tsv", pos);
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("1 tags for 2 words"), std::string::npos);
}

TEST_F(DatasetTest, InvalidUtf8IsNamed) {
  auto d = load("sentence1\tsentence2\tlabel\nthe \xff\tcat\tyes\n", "t.tsv", classification());
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("not valid UTF-8"), std::string::npos);
}

TEST(SamplerTest, OrderIsAPermutationDeterminedBySeedAndEpoch) {
  auto a = epoch_order(100, 7, 0, 8, {});
  auto b = epoch_order(100, 7, 0, 8, {});
  auto c = epoch_order(100, 7, 1, 8, {});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::vector<int32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(sorted[i], i);
}

TEST(SamplerTest, GroupingSortsEachRunOfBatchesLongestFirst) {
  std::vector<int32_t> lengths(1000);
  for (int i = 0; i < 1000; ++i) lengths[i] = (i * 37) % 101;
  auto order = epoch_order(1000, 3, 0, 4, lengths);
  for (size_t i = 1; i < 128; ++i) EXPECT_GE(lengths[order[i - 1]], lengths[order[i]]);
  EXPECT_EQ(batches_per_epoch(1000, 4), 250);
  EXPECT_EQ(batch_of(order, 249, 4).size(), 4u);
}

}  // namespace
}  // namespace bitfleet::text
