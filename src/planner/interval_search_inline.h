// Internal (not installed): what the files evaluating IntervalSearch's
// candidate moves share (interval_search_moves.cc, interval_search_prepared.cc):
// kInf, excluded_rank, bridge_to_pool, max_excluding, pool_pair_max, replace_terms, swap_from and swap_from_at, defined here so that each file inlines
// them into its evaluations.
#pragma once

#include <algorithm>
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

// Per-batch: a new replica of an expert with in_pool of its load in the pool
// (n ranks at `level`) on a rank outside it loaded bridge_load links that
// rank to the pool: the pool spreads onto the rank as far as that load
// allows; otherwise the rank stands outside the pool.
inline void bridge_to_pool(double n, double in_pool, double bridge_load, double& level, double& outside) {
  if (in_pool > 0 && bridge_load < level) {
    const double merged = (n * level + bridge_load) / (n + 1);
    level = std::max(merged, level - in_pool / n);
  } else {
    outside = std::max(outside, bridge_load);
  }
}

}  // namespace interval_search_internal

using interval_search_internal::bridge_to_pool;
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

inline double IntervalSearch::swap_price(int32_t ra, int32_t rb, ExpertId a, ExpertId b) const {
  double dcost = 0;
  if (a >= 0) dcost += price(rb, a) - price(ra, a);
  if (b >= 0) dcost += price(ra, b) - price(rb, b);
  return dcost;
}

inline IntervalSearch::ReplaceTerms IntervalSearch::replace_terms(int32_t k, int32_t rj, int32_t bridge_rank, ExpertId y,
                                                                 const std::vector<int32_t>& ry, double cy,
                                                                 const double* py) const {
  const char* pool = &in_pool_[at(k, 0)];
  const double n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
  ReplaceTerms t{peak_[static_cast<size_t>(k)],
                 max_excluding(k, touched_.data(), static_cast<int32_t>(touched_.size()), out_top_), -1};
  auto visit = [&](int32_t r, double d) {
    if (pool[r]) {
      t.level += d / n;
    } else if (r == bridge_rank) {
      t.bridge_load = load_[at(k, r)] + d;
    } else {
      t.outside = std::max(t.outside, load_[at(k, r)] + d);
    }
  };
  const double on_rj = y >= 0 && py != nullptr ? py[static_cast<size_t>(k) * ry.size()] : 0.0;
  double d0 = 0.0;
  if (y >= 0) d0 -= on_rj;
  visit(rj, d0);
  if (y >= 0 && ry.size() > 1) {
    const double dy = 0.0 + on_rj / (cy - 1);
    for (int32_t q : ry)
      if (q != rj) visit(q, dy);
  }
  return t;
}

inline IntervalSearch::SwapFrom IntervalSearch::swap_from(int32_t i, int32_t rb, bool priced) const {
  const ExpertId a = slot_[static_cast<size_t>(i)];
  return swap_from_at(replica_amounts(a, i / S_), ranks_[static_cast<size_t>(a)].size(), i, rb, priced);
}

inline IntervalSearch::SwapFrom IntervalSearch::swap_from_at(const double* pa, size_t na, int32_t i, int32_t rb,
                                                             bool priced) const {
  const int32_t ra = i / S_;
  const ExpertId a = slot_[static_cast<size_t>(i)];
  SwapFrom f{pa, na, 0.0};
  // swap_price's first term (a >= 0): from 0, += the difference.
  if (priced) f.dcost_a += price(rb, a) - price(ra, a);
  return f;
}

}  // namespace omni::detail
