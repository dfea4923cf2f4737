// RateLimiter: a token bucket per caller (per bearer token) — `rate` requests a second on
// average, bursts of up to `burst`. admit() says whether a request may go ahead now, and if not,
// how long until it could: the Retry-After of the 429.
// Memory: one bucket per distinct key; keys are the digests of configured tokens (only requests
// that authenticated are counted), so the table is bounded by the token file.
// Thread-safety: admit() may be called from any thread.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace bitfleet::coordinator {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  // rate <= 0: no limit.
  RateLimiter(double rate, double burst) : rate_(rate), burst_(burst < 1 ? 1 : burst) {}

  // nullopt: admitted. Otherwise the whole seconds (at least 1) after which one request will be.
  std::optional<int> admit(const std::string& key, Clock::time_point now = Clock::now());
  bool enabled() const { return rate_ > 0; }

 private:
  struct Bucket {
    double tokens;
    Clock::time_point updated;
  };
  const double rate_, burst_;
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace bitfleet::coordinator
