// Successive halving's decisions (Service::next_rungs), from variants' states alone: when a rung
// is decided, who goes on, and how a variant that reaches a decided rung late is judged.
#include <gtest/gtest.h>

#include "coordinator/service.h"

namespace bitfleet::coordinator {
namespace {

using nlohmann::json;

JobRecord variant(const std::string& id, const std::string& status, std::vector<double> accuracy) {
  JobRecord v;
  v.id = id;
  v.status = status;
  for (size_t k = 0; k < accuracy.size(); ++k) {
    v.evaluations.push_back({{"step", 2 * (k + 1)}, {"epoch", 0}, {"metrics", {{"accuracy", accuracy[k]}, {"mse", accuracy[k]}}}});
  }
  return v;
}

json spec(const std::string& metric = "accuracy", const std::string& mode = "max", int eta = 3) {
  return {{"strategy", "successive_halving"}, {"eta", eta}, {"objective", {{"metric", metric}, {"mode", mode}}}};
}

std::vector<std::string> ids(const json& list) { return list.get<std::vector<std::string>>(); }

TEST(HalvingTest, ARungWaitsForEveryStartedVariantThenKeepsTheTopThird) {
  std::vector<JobRecord> v = {variant("a", kRunning, {0.5}), variant("b", kRunning, {0.9}), variant("c", kRunning, {}),
                              variant("d", kQueued, {})};
  json rungs = json::array();
  std::vector<std::pair<std::string, std::string>> stop;
  EXPECT_FALSE(Service::next_rungs(spec(), v, rungs, stop)) << "c has started but not reached rung 1";
  EXPECT_TRUE(rungs.empty());

  v[2] = variant("c", kRunning, {0.7});
  ASSERT_TRUE(Service::next_rungs(spec(), v, rungs, stop));
  ASSERT_EQ(rungs.size(), 1u);
  EXPECT_EQ(rungs[0]["rung"], 1);
  EXPECT_EQ(ids(rungs[0]["kept"]), (std::vector<std::string>{"b"}));            // ceil(3 / 3) = 1
  EXPECT_EQ(ids(rungs[0]["stopped"]), (std::vector<std::string>{"c", "a"}));     // best first
  EXPECT_DOUBLE_EQ(rungs[0]["threshold"].get<double>(), 0.9);
  ASSERT_EQ(stop.size(), 2u);
  EXPECT_NE(stop[0].second.find("successive halving at rung 1"), std::string::npos);
  // The queued variant was not judged: it has no rung-1 value yet.
  stop.clear();
  EXPECT_FALSE(Service::next_rungs(spec(), v, rungs, stop));
}

TEST(HalvingTest, ALateVariantIsJudgedAgainstTheRungsThreshold) {
  json rungs = json::array({{{"rung", 1}, {"metric", "accuracy"}, {"threshold", 0.8}, {"kept", {"b"}}, {"stopped", {"a"}}}});
  std::vector<JobRecord> v = {variant("a", kCancelled, {0.5}), variant("b", kRunning, {0.9, 0.95}),
                              variant("d", kRunning, {0.85}), variant("e", kRunning, {0.6})};
  std::vector<std::pair<std::string, std::string>> stop;
  ASSERT_TRUE(Service::next_rungs(spec(), v, rungs, stop));
  EXPECT_EQ(ids(rungs[0]["kept"]), (std::vector<std::string>{"b", "d"}));
  EXPECT_EQ(ids(rungs[0]["stopped"]), (std::vector<std::string>{"a", "e"}));
  ASSERT_EQ(stop.size(), 1u);
  EXPECT_EQ(stop[0].first, "e");
  // Rung 2 waits for d, which is still in the running and has not reached it.
  EXPECT_EQ(rungs.size(), 1u);
}

TEST(HalvingTest, MinimisedObjectivesKeepTheLowestAndFinishedVariantsDoNotBlock) {
  std::vector<JobRecord> v = {variant("a", kSucceeded, {0.2}), variant("b", kRunning, {0.1}), variant("c", kRunning, {0.3}),
                              variant("d", kFailed, {})};
  json rungs = json::array();
  std::vector<std::pair<std::string, std::string>> stop;
  ASSERT_TRUE(Service::next_rungs(spec("mse", "min", 2), v, rungs, stop));
  EXPECT_EQ(ids(rungs[0]["kept"]), (std::vector<std::string>{"b", "a"}));  // ceil(3 / 2) = 2, lowest first
  EXPECT_EQ(ids(rungs[0]["stopped"]), (std::vector<std::string>{"c"}));
  ASSERT_EQ(stop.size(), 1u);
  EXPECT_EQ(stop[0].first, "c");
}

}  // namespace
}  // namespace bitfleet::coordinator
