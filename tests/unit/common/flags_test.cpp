#include "common/flags.h"

#include <gtest/gtest.h>

namespace bitfleet::common {
namespace {

TEST(FlagsTest, ReadsValuesInBothSpellings) {
  Flags f({"run", "--spec", "a.json", "--out=dir", "--slots", "8"}, {});
  EXPECT_EQ(f.string("spec"), "a.json");
  EXPECT_EQ(f.string("out"), "dir");
  EXPECT_EQ(f.integer("slots", 1, 64, 4), 8);
  EXPECT_TRUE(f.finish().is_ok());
  EXPECT_EQ(f.positionals(), std::vector<std::string>{"run"});
}

TEST(FlagsTest, BooleanDoesNotSwallowThePositionalAfterIt) {
  Flags f({"download", "--json", "job-1", "job-2"}, {"json"});
  EXPECT_TRUE(f.boolean("json"));
  EXPECT_TRUE(f.finish().is_ok());
  EXPECT_EQ(f.positionals(), (std::vector<std::string>{"download", "job-1", "job-2"}));
}

TEST(FlagsTest, UnknownFlagIsNamed) {
  Flags f({"--slots", "4", "--slot", "2"}, {});
  f.integer("slots", 1, 64, 1);
  Status s = f.finish();
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.field(), "slot");
}

TEST(FlagsTest, OutOfRangeIntegerNamesFlagAndRange) {
  Flags f({"--slots", "0"}, {});
  f.integer("slots", 1, 64, 1);
  Status s = f.finish();
  EXPECT_EQ(s.field(), "slots");
  EXPECT_NE(s.message().find("[1, 64]"), std::string::npos);
}

TEST(FlagsTest, MissingRequiredFlagIsAnError) {
  Flags f(std::vector<std::string>{}, {});
  f.string("coordinator");
  EXPECT_EQ(f.finish().field(), "coordinator");
}

TEST(FlagsTest, RepeatedFlagCollectsAllValues) {
  Flags f({"--tag", "a", "--tag", "b"}, {});
  EXPECT_EQ(f.strings("tag"), (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace bitfleet::common
