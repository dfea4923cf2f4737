#include "common/job_spec.h"

#include <gtest/gtest.h>

#include <functional>

namespace bitfleet::common {
namespace {

using nlohmann::json;

json valid_request() {
  return json::parse(R"({
    "backbone": "minilm-l6",
    "train_file": "file-0123456789abcdef01234567",
    "validation_file": "file-89abcdef0123456789abcdef",
    "task": {"type": "classification", "text_fields": ["sentence1", "sentence2"],
             "label_field": "label", "labels": ["entailment", "not_entailment"]},
    "hyperparameters": {"epochs": 3, "batch_size": 16, "learning_rate": 1e-3,
                        "warmup_ratio": 0.06, "weight_decay": 0.0, "max_seq_len": 128,
                        "seed": 42, "bias_terms": "all"},
    "priority": 0, "metadata": {"team": "search"}
  })");
}

TEST(JobSpecTest, ValidRequestParsesEveryField) {
  auto r = parse_job_request(valid_request(), FileRefs::kFileIds);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->backbone, "minilm-l6");
  EXPECT_EQ(r->task.type, TaskType::kClassification);
  EXPECT_EQ(r->task.labels.size(), 2u);
  EXPECT_EQ(r->task.num_outputs(), 2);
  EXPECT_EQ(r->hyperparameters.batch_size, 16);
  EXPECT_DOUBLE_EQ(r->hyperparameters.learning_rate, 1e-3);
  EXPECT_EQ(r->hyperparameters.bias_terms, all_bias_kinds());
  EXPECT_EQ(r->metadata["team"], "search");
}

TEST(JobSpecTest, DefaultsFillOmittedHyperparameters) {
  json j = valid_request();
  j.erase("hyperparameters");
  j.erase("validation_file");
  auto r = parse_job_request(j, FileRefs::kFileIds);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  Hyperparameters defaults;
  EXPECT_EQ(r->hyperparameters.epochs, defaults.epochs);
  EXPECT_EQ(r->hyperparameters.max_seq_len, defaults.max_seq_len);
  EXPECT_TRUE(r->validation_file.empty());
}

TEST(JobSpecTest, CanonicalJsonRoundTrips) {
  json j = valid_request();
  j["hyperparameters"]["bias_terms"] = json::array({"value", "query"});
  auto first = parse_job_request(j, FileRefs::kFileIds);
  ASSERT_TRUE(first.is_ok());
  json canonical = to_json(*first);
  EXPECT_EQ(canonical["hyperparameters"]["bias_terms"], json::array({"query", "value"}));
  auto second = parse_job_request(canonical, FileRefs::kFileIds);
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_EQ(to_json(*second), canonical);
}

// A job may require the precision it trains in; by default it takes the group's.
TEST(JobSpecTest, DtypeRequirementRoundTripsAndDefaultsToAny) {
  json j = valid_request();
  auto plain = parse_job_request(j, FileRefs::kFileIds);
  ASSERT_TRUE(plain.is_ok());
  EXPECT_FALSE(plain->hyperparameters.dtype.has_value());
  EXPECT_EQ(to_json(*plain)["hyperparameters"]["dtype"], "any");
  for (const char* name : {"fp32", "bf16"}) {
    j["hyperparameters"]["dtype"] = name;
    auto r = parse_job_request(j, FileRefs::kFileIds);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    ASSERT_TRUE(r->hyperparameters.dtype.has_value());
    EXPECT_EQ(dtype_name(*r->hyperparameters.dtype), name);
    EXPECT_EQ(to_json(*r)["hyperparameters"]["dtype"], name);
  }
}

TEST(JobSpecTest, QueryIntermediateSubsetIsNamed) {
  json j = valid_request();
  j["hyperparameters"]["bias_terms"] = "query+intermediate";
  auto r = parse_job_request(j, FileRefs::kFileIds);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->hyperparameters.bias_terms.count(), 2u);
  EXPECT_EQ(bias_terms_name(r->hyperparameters.bias_terms), "query+intermediate");
}

TEST(JobSpecTest, RegressionTaskNeedsNoLabels) {
  json j = valid_request();
  j["task"] = {{"type", "regression"}, {"text_fields", {"sentence1", "sentence2"}}, {"label_field", "score"}};
  auto r = parse_job_request(j, FileRefs::kFileIds);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->task.num_outputs(), 1);
}

TEST(JobSpecTest, LocalPathsAreAcceptedForLocalSpecs) {
  json j = valid_request();
  j["train_file"] = "/data/rte/train.tsv";
  EXPECT_FALSE(parse_job_request(j, FileRefs::kFileIds).is_ok());
  EXPECT_TRUE(parse_job_request(j, FileRefs::kLocalPaths).is_ok());
}

struct BadRequest {
  std::string name;
  std::function<void(json&)> mutate;
  std::string field;        // the field the error must name
  std::string must_mention;  // and a fragment of its message (the allowed range)
};

void PrintTo(const BadRequest& bad, std::ostream* os) { *os << bad.name; }

class JobSpecRejectsTest : public ::testing::TestWithParam<BadRequest> {};

TEST_P(JobSpecRejectsTest, NamesTheOffendingField) {
  json j = valid_request();
  GetParam().mutate(j);
  auto r = parse_job_request(j, FileRefs::kFileIds);
  ASSERT_FALSE(r.is_ok()) << "accepted: " << j.dump();
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().field(), GetParam().field) << r.status().message();
  EXPECT_NE(r.status().message().find(GetParam().must_mention), std::string::npos)
      << r.status().message();
}

// Each case breaks one thing in an otherwise valid request.
const BadRequest kBadRequests[] = {
    {"NotAnObject", [](json& j) { j = json::array(); }, "", "must be an object"},
    {"MissingBackbone", [](json& j) { j.erase("backbone"); }, "backbone", "required"},
    {"BackboneWithSlash", [](json& j) { j["backbone"] = "../etc"; }, "backbone", "letters, digits"},
    {"BackboneNotString", [](json& j) { j["backbone"] = 7; }, "backbone", "must be a string"},
    {"MissingTrainFile", [](json& j) { j.erase("train_file"); }, "train_file", "required"},
    {"TrainFileNotAnId", [](json& j) { j["train_file"] = "train.tsv"; }, "train_file", "file id"},
    {"ValidationFileNotAnId", [](json& j) { j["validation_file"] = "file-XYZ"; }, "validation_file", "file id"},
    {"UnknownTopLevelField", [](json& j) { j["gpu"] = "a100"; }, "gpu", "unknown field"},
    {"MissingTask", [](json& j) { j.erase("task"); }, "task", "required"},
    {"TaskNotObject", [](json& j) { j["task"] = "classification"; }, "task", "must be an object"},
    {"UnknownTaskType", [](json& j) { j["task"]["type"] = "generation"; }, "task.type", "classification, regression"},
    {"NoTextFields", [](json& j) { j["task"]["text_fields"] = json::array(); }, "task.text_fields", "1 to 2"},
    {"ThreeTextFields", [](json& j) { j["task"]["text_fields"] = {"a", "b", "c"}; }, "task.text_fields", "1 to 2"},
    {"TextFieldNotString", [](json& j) { j["task"]["text_fields"] = {"a", 3}; }, "task.text_fields[1]", "must be a string"},
    {"DuplicateTextField", [](json& j) { j["task"]["text_fields"] = {"a", "a"}; }, "task.text_fields[1]", "unique"},
    {"MissingLabelField", [](json& j) { j["task"].erase("label_field"); }, "task.label_field", "required"},
    {"LabelFieldIsTextField", [](json& j) { j["task"]["label_field"] = "sentence1"; }, "task.label_field", "also a text field"},
    {"OneLabel", [](json& j) { j["task"]["labels"] = {"yes"}; }, "task.labels", "2 to 64"},
    {"DuplicateLabel", [](json& j) { j["task"]["labels"] = {"yes", "no", "yes"}; }, "task.labels[2]", "unique"},
    {"EmptyLabelName", [](json& j) { j["task"]["labels"] = {"yes", ""}; }, "task.labels[1]", "non-empty"},
    {"TooManyLabels", [](json& j) {
       json labels = json::array();
       for (int i = 0; i < 65; ++i) labels.push_back("l" + std::to_string(i));
       j["task"]["labels"] = labels;
     }, "task.labels", "2 to 64"},
    {"RegressionWithLabels", [](json& j) { j["task"]["type"] = "regression"; }, "task.labels", "absent for a regression"},
    {"TokenTaskWithPair", [](json& j) { j["task"]["type"] = "token_classification"; }, "task.text_fields", "1 to 1"},
    {"UnknownTaskField", [](json& j) { j["task"]["label_map"] = json::object(); }, "task.label_map", "unknown field"},
    {"EpochsZero", [](json& j) { j["hyperparameters"]["epochs"] = 0; }, "hyperparameters.epochs", "[1, 100]"},
    {"EpochsFractional", [](json& j) { j["hyperparameters"]["epochs"] = 2.5; }, "hyperparameters.epochs", "integer"},
    {"EpochsString", [](json& j) { j["hyperparameters"]["epochs"] = "3"; }, "hyperparameters.epochs", "integer"},
    {"BatchSizeTooLarge", [](json& j) { j["hyperparameters"]["batch_size"] = 4096; }, "hyperparameters.batch_size", "[1, 1024]"},
    {"BatchSizeNegative", [](json& j) { j["hyperparameters"]["batch_size"] = -1; }, "hyperparameters.batch_size", "[1, 1024]"},
    {"LearningRateZero", [](json& j) { j["hyperparameters"]["learning_rate"] = 0; }, "hyperparameters.learning_rate", "(0, 1]"},
    {"LearningRateTooHigh", [](json& j) { j["hyperparameters"]["learning_rate"] = 3; }, "hyperparameters.learning_rate", "(0, 1]"},
    {"WarmupRatioOne", [](json& j) { j["hyperparameters"]["warmup_ratio"] = 1.0; }, "hyperparameters.warmup_ratio", "[0, 1)"},
    {"WeightDecayNegative", [](json& j) { j["hyperparameters"]["weight_decay"] = -0.1; }, "hyperparameters.weight_decay", "[0, 1]"},
    {"MaxSeqLenTooShort", [](json& j) { j["hyperparameters"]["max_seq_len"] = 4; }, "hyperparameters.max_seq_len", "[8, 512]"},
    {"MaxSeqLenTooLong", [](json& j) { j["hyperparameters"]["max_seq_len"] = 1024; }, "hyperparameters.max_seq_len", "[8, 512]"},
    {"SeedNegative", [](json& j) { j["hyperparameters"]["seed"] = -5; }, "hyperparameters.seed", "integer in [0,"},
    {"SeedBeyondSafeInteger", [](json& j) { j["hyperparameters"]["seed"] = 18446744073709551615ull; }, "hyperparameters.seed", "integer in [0,"},
    {"BiasTermsUnknownName", [](json& j) { j["hyperparameters"]["bias_terms"] = "some"; }, "hyperparameters.bias_terms", "query+intermediate"},
    {"BiasTermsEmptyList", [](json& j) { j["hyperparameters"]["bias_terms"] = json::array(); }, "hyperparameters.bias_terms", "non-empty list"},
    {"BiasTermsUnknownKind", [](json& j) { j["hyperparameters"]["bias_terms"] = {"query", "gate"}; }, "hyperparameters.bias_terms[1]", "must be one of"},
    {"BiasTermsDuplicateKind", [](json& j) { j["hyperparameters"]["bias_terms"] = {"key", "key"}; }, "hyperparameters.bias_terms[1]", "unique"},
    {"DtypeUnknown", [](json& j) { j["hyperparameters"]["dtype"] = "fp16"; }, "hyperparameters.dtype", "any, fp32, bf16"},
    {"DtypeNotString", [](json& j) { j["hyperparameters"]["dtype"] = 32; }, "hyperparameters.dtype", "string"},
    {"MaxGradNormNegative", [](json& j) { j["hyperparameters"]["max_grad_norm"] = -1; }, "hyperparameters.max_grad_norm", "[0, 1e+06]"},
    {"UnknownHyperparameter", [](json& j) { j["hyperparameters"]["momentum"] = 0.9; }, "hyperparameters.momentum", "unknown field"},
    {"HyperparametersNotObject", [](json& j) { j["hyperparameters"] = json::array(); }, "hyperparameters", "must be an object"},
    {"PriorityTooHigh", [](json& j) { j["priority"] = 5000; }, "priority", "[-1000, 1000]"},
    {"MetadataNotObject", [](json& j) { j["metadata"] = "x"; }, "metadata", "must be an object"},
    {"MetadataTooLarge", [](json& j) { j["metadata"] = {{"blob", std::string(20000, 'x')}}; }, "metadata", "at most 16384 bytes"},
};

INSTANTIATE_TEST_SUITE_P(BadRequests, JobSpecRejectsTest, ::testing::ValuesIn(kBadRequests),
                         [](const ::testing::TestParamInfo<BadRequest>& info) { return info.param.name; });

TEST(ResourceIdTest, AcceptsOnlyPrefixAndTwentyFourHexDigits) {
  EXPECT_TRUE(is_file_id("file-0123456789abcdef01234567"));
  EXPECT_FALSE(is_file_id("file-0123456789ABCDEF01234567"));
  EXPECT_FALSE(is_file_id("file-0123456789abcdef0123456"));
  EXPECT_FALSE(is_file_id("job-0123456789abcdef01234567"));
  EXPECT_TRUE(is_job_id("job-0123456789abcdef01234567"));
}

}  // namespace
}  // namespace bitfleet::common
