// Internal (not installed): what the files evaluating IntervalSearch's
// candidate moves share (interval_search_moves.cc, interval_search_prepared.cc):
// kInf, excluded_rank and max_excluding, defined here so that each file inlines
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

}  // namespace omni::detail
