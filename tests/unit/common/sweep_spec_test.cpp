#include "common/sweep_spec.h"

#include <gtest/gtest.h>

namespace bitfleet::common {
namespace {

using nlohmann::json;

json sweep(json grid, json extra = json::object()) {
  json body = {{"base", json::parse(R"({
    "backbone": "minilm-l6", "train_file": "file-0123456789abcdef01234567",
    "validation_file": "file-89abcdef0123456789abcdef",
    "task": {"type": "classification", "text_fields": ["sentence"], "label_field": "label", "labels": ["neg", "pos"]},
    "hyperparameters": {"epochs": 3, "batch_size": 16}})")},
               {"grid", std::move(grid)}};
  for (const auto& [k, v] : extra.items()) body[k] = v;
  return body;
}

Status parse(const json& body, int64_t max_variants = 64) {
  return parse_sweep_request(body, FileRefs::kFileIds, max_variants).status();
}

TEST(SweepSpecTest, TheGridExpandsToItsProductEachVariantTheBaseWithItsPoint) {
  auto spec = parse_sweep_request(sweep({{"learning_rate", {1e-4, 1e-3, 3e-3}}, {"epochs", {5, 10}}},
                                        {{"objective", {{"metric", "mcc"}}}, {"strategy", "successive_halving"}}),
                                  FileRefs::kFileIds, 64);
  ASSERT_TRUE(spec.is_ok()) << spec.status().to_string();
  EXPECT_EQ(spec->metric, "mcc");
  EXPECT_FALSE(spec->minimise);
  EXPECT_EQ(spec->strategy, SweepStrategy::kSuccessiveHalving);
  EXPECT_EQ(spec->eta, 3);
  const auto points = spec->points();
  ASSERT_EQ(points.size(), 6u);
  EXPECT_EQ(points[0], json({{"epochs", 5}, {"learning_rate", 1e-4}}));
  EXPECT_EQ(points[5], json({{"epochs", 10}, {"learning_rate", 3e-3}}));
  auto job = spec->variant(points[4]);
  ASSERT_TRUE(job.is_ok()) << job.status().to_string();
  EXPECT_EQ(job->hyperparameters.epochs, 10);
  EXPECT_DOUBLE_EQ(job->hyperparameters.learning_rate, 1e-3);
  EXPECT_EQ(job->hyperparameters.batch_size, 16) << "the base's other hyperparameters stay";
  EXPECT_EQ(job->hyperparameters.metric_for_best, "mcc") << "the objective chooses each variant's best";
  EXPECT_EQ(job->validation_file, "file-89abcdef0123456789abcdef");
  // The canonical form parses back to the same spec.
  auto again = parse_sweep_request(to_json(*spec), FileRefs::kFileIds, 64);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(to_json(*again), to_json(*spec));
}

TEST(SweepSpecTest, TheObjectiveDefaultsToTheTasksMetricAndMseIsMinimised) {
  auto spec = parse_sweep_request(sweep({{"seed", {1, 2}}}), FileRefs::kFileIds, 64);
  ASSERT_TRUE(spec.is_ok()) << spec.status().to_string();
  EXPECT_EQ(spec->metric, "accuracy");
  json regression = sweep({{"seed", {1, 2}}}, {{"objective", {{"metric", "mse"}, {"mode", "min"}}}});
  regression["base"]["task"] = {{"type", "regression"}, {"text_fields", {"sentence"}}, {"label_field", "score"}};
  auto r = parse_sweep_request(regression, FileRefs::kFileIds, 64);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->minimise);
}

TEST(SweepSpecTest, BadSweepsNameTheirField) {
  const std::vector<std::pair<json, std::string>> cases = {
      {sweep(json::object()), "grid"},
      {sweep({{"learning_rate", json::array()}}), "grid.learning_rate"},
      {sweep({{"learning_rate", 0.1}}), "grid.learning_rate"},
      {sweep({{"dropout", {0.1, 0.2}}}), "grid.dropout"},
      {sweep({{"metric_for_best", {"f1"}}}), "grid.metric_for_best"},
      {sweep({{"learning_rate", {1e-3, 5.0}}}), "grid.learning_rate[1]"},
      {sweep({{"seed", {1, 1}}}), "grid.seed[1]"},
      {sweep({{"seed", {1, 2, 3, 4, 5}}, {"epochs", {1, 2, 3}}}), "grid"},  // 15 > 8
      {sweep({{"seed", {1}}}, {{"objective", {{"metric", "pearson"}}}}), "objective.metric"},
      {sweep({{"seed", {1}}}, {{"objective", {{"metric", "accuracy"}, {"mode", "min"}}}}), "objective.mode"},
      {sweep({{"seed", {1}}}, {{"strategy", "random"}}), "strategy"},
      {sweep({{"seed", {1}}}, {{"eta", 1}}), "eta"},
      {sweep({{"seed", {1}}}, {{"budget", 3}}), "budget"},
  };
  for (const auto& [body, field] : cases) {
    Status s = parse(body, 8);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << body.dump();
    EXPECT_EQ(s.field(), field) << body.dump() << " -> " << s.to_string();
  }
  json no_validation = sweep({{"seed", {1, 2}}}, {{"strategy", "successive_halving"}});
  no_validation["base"].erase("validation_file");
  EXPECT_EQ(parse(no_validation).field(), "strategy");
  json bad_base = sweep({{"seed", {1}}});
  bad_base["base"]["task"]["labels"] = json::array();
  EXPECT_EQ(parse(bad_base).field().rfind("base.task", 0), 0u) << parse(bad_base).to_string();
}

}  // namespace
}  // namespace bitfleet::common
