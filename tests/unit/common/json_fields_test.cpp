#include "common/json_fields.h"

#include <gtest/gtest.h>

namespace bitfleet::common {
namespace {

TEST(JsonFieldsTest, FirstErrorWinsAndLaterGettersReturnDefaults) {
  auto j = nlohmann::json::parse(R"({"a": "x", "b": 5})");
  JsonFields f(j, "outer");
  EXPECT_EQ(f.integer("a", 0, 10, 3), 3);
  EXPECT_EQ(f.integer("b", 0, 1, 1), 1);
  Status s = f.finish();
  EXPECT_EQ(s.field(), "outer.a");
}

// An empty key is refused as unknown like any other, and the refusal still names a field: "".
TEST(JsonFieldsTest, AnEmptyUnknownKeyIsNamed) {
  auto top = nlohmann::json::parse(R"({"a": 1, "": 50})");
  JsonFields f(top, "");
  EXPECT_EQ(f.integer("a", 0, 10, 0), 1);
  Status s = f.finish();
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.field(), "\"\"");
  EXPECT_EQ(s.message().rfind("\"\": unknown field", 0), 0u) << s.message();

  auto nested = nlohmann::json::parse(R"({"": 50})");
  JsonFields g(nested, "hyperparameters");
  EXPECT_EQ(g.finish().field(), "hyperparameters.\"\"");
}

TEST(JsonFieldsTest, NullCountsAsAbsent) {
  auto j = nlohmann::json::parse(R"({"a": null})");
  JsonFields f(j, "");
  EXPECT_EQ(f.integer("a", 0, 10, 7), 7);
  EXPECT_TRUE(f.finish().is_ok());
}

TEST(JsonFieldsTest, ParseJsonNamesWhatWasRead) {
  auto r = parse_json("{\"a\": ", "request body");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("request body"), std::string::npos);
}

TEST(JsonFieldsTest, ParseInt64TakesWholeDecimalsOnly) {
  EXPECT_EQ(*parse_int64("42", "step"), 42);
  EXPECT_EQ(*parse_int64("-7", "step"), -7);
  EXPECT_EQ(*parse_int64("9223372036854775807", "step"), INT64_MAX);
  for (const char* bad : {"", "12x", " 1", "1.5", "9223372036854775808", "abc", "+"}) {
    auto r = parse_int64(bad, "step");
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().field(), "step") << bad;
  }
}

}  // namespace
}  // namespace bitfleet::common
