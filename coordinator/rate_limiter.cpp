#include "coordinator/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace bitfleet::coordinator {

std::optional<int> RateLimiter::admit(const std::string& key, Clock::time_point now) {
  if (rate_ <= 0) return std::nullopt;
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, fresh] = buckets_.try_emplace(key, Bucket{burst_, now});
  Bucket& b = it->second;
  if (!fresh) {
    const double elapsed = std::chrono::duration<double>(now - b.updated).count();
    b.tokens = std::min(burst_, b.tokens + std::max(0.0, elapsed) * rate_);
    b.updated = now;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return std::nullopt;
  }
  return std::max(1, static_cast<int>(std::ceil((1 - b.tokens) / rate_)));
}

}  // namespace bitfleet::coordinator
