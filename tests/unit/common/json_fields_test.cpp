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

}  // namespace
}  // namespace bitfleet::common
