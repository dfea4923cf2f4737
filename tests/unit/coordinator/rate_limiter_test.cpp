// The per-token rate limit: a token bucket, time passed in explicitly.
#include "coordinator/rate_limiter.h"

#include <gtest/gtest.h>

namespace bitfleet::coordinator {
namespace {

using namespace std::chrono_literals;

TEST(RateLimiterTest, AdmitsABurstThenTheRateAndSaysWhenToRetry) {
  RateLimiter limiter(2, 4);  // 2 a second, bursts of 4
  const auto t0 = RateLimiter::Clock::time_point{} + 1000s;
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(limiter.admit("k", t0).has_value()) << i;
  auto refused = limiter.admit("k", t0);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(*refused, 1);  // half a second for the next token, rounded up to whole seconds
  EXPECT_FALSE(limiter.admit("k", t0 + 500ms).has_value());
  EXPECT_TRUE(limiter.admit("k", t0 + 500ms).has_value());
  // Idle time refills up to the burst, not beyond.
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(limiter.admit("k", t0 + 60s).has_value()) << i;
  EXPECT_TRUE(limiter.admit("k", t0 + 60s).has_value());
}

TEST(RateLimiterTest, EachKeyHasItsOwnBucketAndZeroRateIsNoLimit) {
  RateLimiter limiter(1, 1);
  const auto t0 = RateLimiter::Clock::time_point{} + 1000s;
  EXPECT_FALSE(limiter.admit("a", t0).has_value());
  EXPECT_TRUE(limiter.admit("a", t0).has_value());
  EXPECT_FALSE(limiter.admit("b", t0).has_value());
  RateLimiter off(0, 0);
  for (int i = 0; i < 1000; ++i) ASSERT_FALSE(off.admit("a", t0).has_value());
}

}  // namespace
}  // namespace bitfleet::coordinator
