#include "serve/predict_request.h"

#include <gtest/gtest.h>

namespace bitfleet::serve {
namespace {

using nlohmann::json;

Status error_of(const json& body) {
  auto r = parse_predict_request(body, RequestLimits{});
  return r.is_ok() ? Status::ok() : r.status();
}

TEST(PredictRequestTest, ReadsTextsPairsAndWords) {
  auto r = parse_predict_request(json::parse(R"({"task": "job-0123", "timeout_ms": 250, "inputs": [
      {"text": "a"}, {"text": "b", "text_pair": "c"}, {"tokens": ["the", "dog"]}]})"), RequestLimits{});
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->task, "job-0123");
  EXPECT_EQ(r->timeout_ms, 250);
  ASSERT_EQ(r->inputs.size(), 3u);
  EXPECT_EQ(r->inputs[0].text, "a");
  EXPECT_FALSE(r->inputs[0].has_pair);
  EXPECT_TRUE(r->inputs[1].has_pair);
  EXPECT_EQ(r->inputs[1].text_pair, "c");
  EXPECT_TRUE(r->inputs[2].has_tokens);
  EXPECT_EQ(r->inputs[2].tokens, (std::vector<std::string>{"the", "dog"}));
}

TEST(PredictRequestTest, EveryErrorNamesItsField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"inputs": [{"text": "x"}]})", "task"},
      {R"({"task": "../x", "inputs": [{"text": "x"}]})", "task"},
      {R"({"task": "job-1"})", "inputs"},
      {R"({"task": "job-1", "inputs": {}})", "inputs"},
      {R"({"task": "job-1", "inputs": [{"text": "x"}, 7]})", "inputs[1]"},
      {R"({"task": "job-1", "inputs": [{"text": "x"}, {}]})", "inputs[1].text"},
      {R"({"task": "job-1", "inputs": [{"text": "x", "extra": 1}]})", "inputs[0].extra"},
      {R"({"task": "job-1", "inputs": [{"tokens": []}]})", "inputs[0].tokens"},
      {R"({"task": "job-1", "inputs": [{"tokens": ["a"], "text": "b"}]})", "inputs[0].tokens"},
      {R"({"task": "job-1", "inputs": [{"text": "x", "text_pair": null}]})", "inputs[0].text_pair"},
      {R"({"task": "job-1", "inputs": [{"text": "x"}], "timeout_ms": -1})", "timeout_ms"},
      {R"({"task": "job-1", "inputs": [{"text": "x"}], "stream": true})", "stream"},
  };
  for (const auto& [body, field] : cases) {
    Status s = error_of(json::parse(body));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << body;
    EXPECT_EQ(s.field(), field) << body << ": " << s.message();
  }
  EXPECT_EQ(error_of(json::array()).field(), "body");
}

TEST(PredictRequestTest, LimitsAreEnforced) {
  RequestLimits limits{.max_inputs = 2, .max_text_bytes = 4, .max_words = 2};
  auto many = parse_predict_request(json::parse(R"({"task": "t", "inputs": [{"text": "a"}, {"text": "b"}, {"text": "c"}]})"), limits);
  EXPECT_EQ(many.status().field(), "inputs");
  auto long_text = parse_predict_request(json::parse(R"({"task": "t", "inputs": [{"text": "hello"}]})"), limits);
  EXPECT_EQ(long_text.status().field(), "inputs[0].text");
  auto words = parse_predict_request(json::parse(R"({"task": "t", "inputs": [{"tokens": ["a", "b", "c"]}]})"), limits);
  EXPECT_EQ(words.status().field(), "inputs[0].tokens");
}

TEST(PredictRequestTest, TaskNames) {
  EXPECT_TRUE(is_task_name("job-0123abcd"));
  EXPECT_TRUE(is_task_name("sweep-01"));
  EXPECT_TRUE(is_task_name("sentiment-qi.v2"));
  EXPECT_FALSE(is_task_name(""));
  EXPECT_FALSE(is_task_name(".hidden"));
  EXPECT_FALSE(is_task_name("a/b"));
  EXPECT_FALSE(is_task_name(std::string(129, 'a')));
}

}  // namespace
}  // namespace bitfleet::serve
