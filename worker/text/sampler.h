// The data order of a job: which examples each step takes, from (seed, epoch) alone.
//
// Epoch e of a job with seed s visits its n examples in the permutation that Fisher-Yates draws
// from SplitMix64 started at s ^ (0x9E3779B97F4A7C15 * (e + 1)) (j = next() % (i + 1) for i from
// n-1 down to 1). With grouping by length, each run of 32 batches of that permutation is then
// stably sorted by length, longest first, so a step pads little. Every rank, and a job resumed on
// any worker group, derives the same order; the definition is simple enough that a Python
// baseline reproduces it exactly (tests/pylib/bitfleet_order.py).
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace bitfleet::text {

inline constexpr int kLengthGroupBatches = 32;

std::vector<int32_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, int64_t batch_size,
                                 std::span<const int32_t> lengths_or_empty);

// The examples of step `index` (0-based) of an epoch: a slice of the order.
std::span<const int32_t> batch_of(const std::vector<int32_t>& order, int64_t index, int64_t batch_size);
int64_t batches_per_epoch(int64_t n, int64_t batch_size);

}  // namespace bitfleet::text
