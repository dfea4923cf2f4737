#include "cli/manifest.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace bitfleet::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class ManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bitfleet-manifest-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "data");
    write("data/train.tsv", "sentence\tlabel\nfine\tpos\n");
    write("data/pairs.csv", "premise,hypothesis,label\na,b,yes\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }

  fs::path dir_;
};

TEST_F(ManifestTest, CsvRowsBecomeRequestsWithTypedOverridesAndAbsolutePaths) {
  auto tasks = read_manifest(write("tasks.csv",
                                   "name,train_file,text_fields,label_field,labels,learning_rate,epochs,bias_terms,metadata.team\n"
                                   "a,data/train.tsv,sentence,label,neg|pos,2e-3,4,query|intermediate,nlp\n"
                                   "b,data/pairs.csv,premise | hypothesis,label,yes|no,,,,\n"),
                             json{{"backbone", "minilm"}, {"task", {{"type", "classification"}}}, {"hyperparameters", {{"epochs", 2}}}});
  ASSERT_TRUE(tasks.is_ok()) << tasks.status().message();
  ASSERT_EQ(tasks->size(), 2u);
  const json& a = (*tasks)[0].request;
  EXPECT_EQ((*tasks)[0].name, "a");
  EXPECT_EQ(a["backbone"], "minilm");
  EXPECT_EQ(a["train_file"], fs::weakly_canonical(dir_ / "data/train.tsv").string());
  EXPECT_EQ(a["task"]["labels"], json({"neg", "pos"}));
  EXPECT_DOUBLE_EQ(a["hyperparameters"]["learning_rate"].get<double>(), 2e-3);
  EXPECT_EQ(a["hyperparameters"]["epochs"], 4);
  EXPECT_EQ(a["hyperparameters"]["bias_terms"], json({"query", "intermediate"}));
  EXPECT_EQ(a["metadata"], json({{"name", "a"}, {"team", "nlp"}}));
  const json& b = (*tasks)[1].request;
  EXPECT_EQ(b["task"]["text_fields"], json({"premise", "hypothesis"}));  // spaces around '|' trimmed
  EXPECT_EQ(b["hyperparameters"]["epochs"], 2);  // an empty cell keeps the default
  EXPECT_FALSE(b["hyperparameters"].contains("learning_rate"));
  EXPECT_EQ((*tasks)[1].line, 3);
}

TEST_F(ManifestTest, JsonlCellsMayAlreadyBeTyped) {
  auto tasks = read_manifest(write("tasks.jsonl",
                                   R"({"train_file": "data/train.tsv", "text_fields": ["sentence"], "label_field": "label",)"
                                   R"( "labels": ["neg", "pos"], "seed": 7, "warmup_ratio": 0.1, "priority": 3})"
                                   "\n"),
                             json{{"backbone", "minilm"}, {"task", {{"type", "classification"}}}});
  ASSERT_TRUE(tasks.is_ok()) << tasks.status().message();
  EXPECT_EQ((*tasks)[0].request["hyperparameters"]["seed"], 7);
  EXPECT_EQ((*tasks)[0].request["priority"], 3);
  EXPECT_EQ((*tasks)[0].name, "");
}

TEST_F(ManifestTest, EveryBadRowIsReportedWithLineRowAndColumn) {
  auto tasks = read_manifest(write("tasks.csv",
                                   "train_file,text_fields,label_field,labels,batch_size,max_seq_len\n"
                                   "data/train.tsv,sentence,label,neg|pos,8,64\n"
                                   "data/train.tsv,sentence,label,neg|pos,eight,64\n"
                                   "data/train.tsv,sentence,label,neg|pos,8,4096\n"
                                   "data/train.tsv,sentense,label,neg|pos,8,64\n"),
                             json{{"backbone", "minilm"}, {"task", {{"type", "classification"}}}});
  ASSERT_FALSE(tasks.is_ok());
  const std::string& m = tasks.status().message();
  EXPECT_NE(m.find("3 of 4 rows"), std::string::npos) << m;
  EXPECT_NE(m.find("tasks.csv:3: row 2, column \"batch_size\": must be a whole number, got \"eight\""), std::string::npos) << m;
  EXPECT_NE(m.find("tasks.csv:4: row 3, column \"max_seq_len\": must be"), std::string::npos) << m;
  EXPECT_NE(m.find("tasks.csv:5: row 4, column \"text_fields\": column \"sentense\" is not in"), std::string::npos) << m;
  EXPECT_EQ(m.find("row 1,"), std::string::npos) << m;
}

TEST_F(ManifestTest, UnknownColumnsAndEmptyManifestsAreRefused) {
  auto unknown = read_manifest(write("a.csv", "train_file,epoch\ndata/train.tsv,3\n"), json::object());
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_NE(unknown.status().message().find("a.csv:1: column \"epoch\" is not a manifest column"), std::string::npos);
  auto empty = read_manifest(write("b.csv", "train_file\n"), json::object());
  ASSERT_FALSE(empty.is_ok());
  EXPECT_NE(empty.status().message().find("no tasks"), std::string::npos);
}

TEST(ManifestColumnTest, MapsRequestFieldsBackToColumns) {
  EXPECT_EQ(manifest_column("hyperparameters.learning_rate"), "learning_rate");
  EXPECT_EQ(manifest_column("task.text_fields[1]"), "text_fields");
  EXPECT_EQ(manifest_column("task.type"), "task_type");
  EXPECT_EQ(manifest_column("metadata"), "");
}

}  // namespace
}  // namespace bitfleet::cli
