// Internal (not installed): what the files evaluating IntervalSearch's
// candidate moves share (interval_search_moves.cc, interval_search_prepared.cc):
// kInf, excluded_rank, max_excluding and pool_pair_max, defined here so that each file inlines
// them into its evaluations.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "interval_search.h"

namespace omni::detail {

namespace interval_search_internal {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

inline bool excluded_rank(int32_t r, const int32_t* ranks, int32_t n) {
  for (int32_t i = 0; i < n; ++i)
    if (ranks[i] == r) return true;
  return false;
}

}  // namespace interval_search_internal

using interval_search_internal::excluded_rank;
using interval_search_internal::kInf;

// The common case (one of the three busiest untouched) stays small enough to
// inline into the evaluations; the scan is out of line.
inline double IntervalSearch::max_excluding(int32_t k, const int32_t* ranks, int32_t n,
                                            const std::vector<int32_t>& top) const {
  const int32_t* t = &top[static_cast<size_t>(k) * 3];
  for (int32_t i = 0; i < 3; ++i)
    if (t[i] >= 0 && !excluded_rank(t[i], ranks, n)) return load_[at(k, t[i])];
  if (t[2] < 0) return 0.0;  // fewer than three candidates, all touched
  return max_excluding_scan(k, ranks, n, top);
}

// Per-batch: the busiest of scenario k's pool level and the ranks outside it
// after ra's load changes by d0 and rb's by d1; `outside` is the busiest
// untouched rank outside the pool (or a bound on it).
inline double IntervalSearch::pool_pair_max(int32_t k, int32_t ra, double d0, int32_t rb, double d1,
                                            double outside) const {
  const char* pool = &in_pool_[at(k, 0)];
  const double n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
  double level = peak_[static_cast<size_t>(k)];
  if (pool[ra]) {
    level += d0 / n;
  } else {
    outside = std::max(outside, load_[at(k, ra)] + d0);
  }
  if (pool[rb]) {
    level += d1 / n;
  } else {
    outside = std::max(outside, load_[at(k, rb)] + d1);
  }
  return std::max(level, outside);
}

}  // namespace omni::detail
