#include "worker/text/sampler.h"

#include <algorithm>
#include <numeric>

namespace bitfleet::text {

std::vector<int32_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, int64_t batch_size,
                                 std::span<const int32_t> lengths) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  uint64_t state = seed ^ (0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(epoch + 1));
  auto next = [&state] {
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  };
  for (int64_t i = n - 1; i >= 1; --i) {
    int64_t j = static_cast<int64_t>(next() % static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  if (!lengths.empty()) {
    const int64_t chunk = batch_size * kLengthGroupBatches;
    for (int64_t start = 0; start < n; start += chunk) {
      auto first = order.begin() + start, last = order.begin() + std::min(n, start + chunk);
      std::stable_sort(first, last, [&](int32_t a, int32_t b) { return lengths[a] > lengths[b]; });
    }
  }
  return order;
}

std::span<const int32_t> batch_of(const std::vector<int32_t>& order, int64_t index, int64_t batch_size) {
  const int64_t begin = index * batch_size;
  const int64_t end = std::min<int64_t>(static_cast<int64_t>(order.size()), begin + batch_size);
  return std::span<const int32_t>(order).subspan(begin, end - begin);
}

int64_t batches_per_epoch(int64_t n, int64_t batch_size) { return (n + batch_size - 1) / batch_size; }

}  // namespace bitfleet::text
