// IntervalSearch, the candidate moves evaluated from what a scan prepares once
// per pair of ranks or per rank (see interval_search.h; static shares unless said):
// prepare_pair and swap_on_pair for the swaps between two ranks (per-batch:
// swap_on_pool_pair from what scan_hot prepares; swap_on_pool_pair_cut stops
// at a value it cannot beat), slot_amounts (a rank's amounts, once per scan),
// prepare_replace_rank and replace_on_rank (with bound_of's terms) for giving a
// slot of a rank to another expert (per-batch: prepare_pool_replace_rank, with
// each slot's floor, and pool_replace_on_rank). The same operations in the
// same order as eval_swap and eval_replace (interval_search_moves.cc), so the
// same values.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "interval_search.h"
#include "interval_search_inline.h"

namespace omni::detail {

// swap_on_pair (static shares) and swap_on_pool_pair (per-batch), with or
// without the cut: the same operations in the same order as eval_swap.
template <bool kPool, bool kCut>
double IntervalSearch::swap_on_pair_terms(const SwapFrom& from, int32_t i, int32_t j, bool priced, const double* rest,
                                          double cut) const {
  const int32_t ra = i / S_, rb = j / S_;
  const ExpertId b = slot_[static_cast<size_t>(j)];
  // swap_price's second term.
  double dcost = from.dcost_a;
  if (priced && b >= 0) dcost += price(ra, b) - price(rb, b);
  const double* pa = from.pa;
  const size_t na = from.na;
  const double* pb = swap_b_rows_ + static_cast<size_t>(j - rb * S_) * static_cast<size_t>(K_);
  const double* la = pair_load_.data();
  const double* lbk = la + K_;
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k) {
    const double aa = pa[static_cast<size_t>(k) * na];
    const double bb = pb[k];
    const double d0 = bb - aa, d1 = aa - bb;
    if constexpr (kPool) {
      // pool_pair_max(k, ra, d0, rb, d1, pair_max_[k]) from pool_pair_.
      const PoolPairTerms& q = pool_pair_[static_cast<size_t>(k)];
      const double m = q.max_after(d0, d1);
      sum += m - q.peak;
    } else {
      double m = pair_max_[static_cast<size_t>(k)];
      m = std::max(m, la[k] + d0);
      m = std::max(m, lbk[k] + d1);
      sum += m - peak_[static_cast<size_t>(k)];
    }
    if constexpr (kCut) {
      // The sum with the terms after k at their bounds: rest[k] found in
      // another order than the loop would add them, so less a slack (1e-12
      // relative) far above the rounding of either order (some K x 1e-16).
      const double bound = (sum + rest[k] - 1e-12 * (1.0 + std::abs(sum) + rest[K_])) / K_ + dcost;
      if (bound >= cut) return bound;
    }
  }
  return sum / K_ + dcost;
}

double IntervalSearch::swap_on_pair(const SwapFrom& from, int32_t i, int32_t j, bool priced) const {
  return swap_on_pair_terms<false, false>(from, i, j, priced, nullptr, 0.0);
}

double IntervalSearch::swap_on_pool_pair(const SwapFrom& from, int32_t i, int32_t j, bool priced) const {
  return swap_on_pair_terms<true, false>(from, i, j, priced, nullptr, 0.0);
}

double IntervalSearch::swap_on_pool_pair_cut(const SwapFrom& from, int32_t i, int32_t j, bool priced,
                                             const double* rest, double cut) const {
  return swap_on_pair_terms<true, true>(from, i, j, priced, rest, cut);
}

void IntervalSearch::prepare_pool_pair(int32_t ra, int32_t rb) {
  for (int32_t k = 0; k < K_; ++k) {
    PoolPairTerms& q = pool_pair_[static_cast<size_t>(k)];
    q.peak = peak_[static_cast<size_t>(k)];
    q.n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
    q.outside = pair_max_[static_cast<size_t>(k)];
    q.load_a = load_[at(k, ra)];
    q.load_b = load_[at(k, rb)];
    q.a_in_pool = in_pool_[at(k, ra)] != 0;
    q.b_in_pool = in_pool_[at(k, rb)] != 0;
  }
}

void IntervalSearch::prepare_pair(int32_t ra, int32_t rb) {
  const int32_t pair[2] = {ra, rb};
  const std::vector<int32_t>& top = per_batch() ? out_top_ : top_;
  for (int32_t k = 0; k < K_; ++k) {
    pair_max_[static_cast<size_t>(k)] = max_excluding(k, pair, 2, top);
    pair_load_[static_cast<size_t>(k)] = load_[at(k, ra)];
    pair_load_[static_cast<size_t>(K_ + k)] = load_[at(k, rb)];
  }
  if (per_batch()) prepare_pool_pair(ra, rb);
  swap_b_rows_ = swap_b_.data();
  for (int32_t t = 0; t < S_; ++t) {
    const ExpertId b = slot_[static_cast<size_t>(rb * S_ + t)];
    if (b >= 0 && holds(ra, b)) continue;
    const double* pb = b >= 0 ? replica_amounts(b, rb) : nullptr;
    const size_t nb = b >= 0 ? ranks_[static_cast<size_t>(b)].size() : 0;
    double* sb = &swap_b_[static_cast<size_t>(t) * static_cast<size_t>(K_)];
    for (int32_t k = 0; k < K_; ++k) sb[k] = pb != nullptr ? pb[static_cast<size_t>(k) * nb] : 0.0;
  }
}

const double* IntervalSearch::slot_amounts(int32_t r) {
  double* rows = &slot_amt_[static_cast<size_t>(r) * static_cast<size_t>(S_) * static_cast<size_t>(K_)];
  if (!amt_ready_.claim(r)) return rows;
  for (int32_t t = 0; t < S_; ++t) {
    const ExpertId y = slot_[static_cast<size_t>(r * S_ + t)];
    const double* py = y >= 0 ? replica_amounts(y, r) : nullptr;
    const size_t ny = y >= 0 ? ranks_[static_cast<size_t>(y)].size() : 0;
    double* row = rows + static_cast<size_t>(t) * static_cast<size_t>(K_);
    for (int32_t k = 0; k < K_; ++k) row[k] = py != nullptr ? py[static_cast<size_t>(k) * ny] : 0.0;
  }
  return rows;
}

void IntervalSearch::prepare_replace_rank(int32_t rj) {
  if (!y_ready_.claim(rj)) return;
  for (int32_t t = 0; t < S_; ++t) {
    const size_t base = (static_cast<size_t>(rj) * static_cast<size_t>(S_) + static_cast<size_t>(t)) * static_cast<size_t>(K_);
    const ExpertId y = slot_[static_cast<size_t>(rj * S_ + t)];
    if (y < 0) continue;  // not read: replace_on_rank checks y
    const auto& ry = ranks_[static_cast<size_t>(y)];
    const double cy = static_cast<double>(ry.size());
    const double* py = replica_amounts(y, rj);
    for (int32_t k = 0; k < K_; ++k) {
      // eval_replace's operations for y (static shares).
      const double on_rj = py != nullptr ? py[static_cast<size_t>(k) * ry.size()] : 0.0;
      double m = -kInf;
      if (ry.size() > 1) {
        const double dy = 0.0 + on_rj / (cy - 1);
        for (int32_t q : ry)
          if (q != rj) m = std::max(m, load_[at(k, q)] + dy);
      }
      y_on_[base + static_cast<size_t>(k)] = on_rj;
      y_max_[base + static_cast<size_t>(k)] = m;
    }
  }
}

double IntervalSearch::replace_on_rank(int32_t j, ExpertId xe, bool priced) const {
  const int32_t rj = j / S_;
  const ExpertId y = slot_[static_cast<size_t>(j)];
  const double dcost = priced ? price(rj, xe) - (y >= 0 ? price(rj, y) : 0.0) : 0.0;
  const ReplaceBound* xb = prepared_bound(xe);
  const size_t base = static_cast<size_t>(j) * static_cast<size_t>(K_);
  const double* on = &y_on_[base];
  const double* ym = &y_max_[base];
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k) {
    const ReplaceBound& b = xb[k];
    const bool next = b.first_rank == rj;
    const double outside = next ? b.second : b.first;
    if (!((next ? b.second_rank : b.first_rank) >= 0 && outside >= 0))
      return std::numeric_limits<double>::quiet_NaN();
    double m = std::max(outside, b.own);
    double d0 = 0.0;
    d0 += b.share;
    if (y >= 0) {
      d0 -= on[k];
      // y's other ranks: the largest of their loads after the move (max is
      // exact, so taking them together gives eval_replace's value).
      m = std::max(m, ym[k]);
    }
    m = std::max(m, load_[at(k, rj)] + d0);
    sum += m - peak_[static_cast<size_t>(k)];
  }
  return sum / K_ + dcost;
}

void IntervalSearch::prepare_pool_replace_rank(int32_t rj) {
  if (!y_ready_.claim(rj)) return;
  double rank_floor = kInf, rank_refund = 0;
  for (int32_t t = 0; t < S_; ++t) {
    const size_t base = (static_cast<size_t>(rj) * static_cast<size_t>(S_) + static_cast<size_t>(t)) * static_cast<size_t>(K_);
    const ExpertId y = slot_[static_cast<size_t>(rj * S_ + t)];
    static const std::vector<int32_t> kNone;
    const auto& ry = y >= 0 ? ranks_[static_cast<size_t>(y)] : kNone;
    const double cy = static_cast<double>(ry.size());
    const double* py = y >= 0 ? replica_amounts(y, rj) : nullptr;
    // eval_replace's operations (per-batch) up to the bridge, with the
    // bridge at rj (x >= 0).
    touched_.clear();
    touched_.push_back(rj);
    for (int32_t q : ry)
      if (q != rj) touched_.push_back(q);
    double floor = 0;
    for (int32_t k = 0; k < K_; ++k) {
      const auto [level, outside, bridge_load] = replace_terms(k, rj, rj, y, ry, cy, py);
      y_level_[base + static_cast<size_t>(k)] = level;
      y_out_[base + static_cast<size_t>(k)] = outside;
      y_bridge_[base + static_cast<size_t>(k)] = bridge_load;
      // pool_replace_on_rank's term for any x: bridge_to_pool lowers the
      // level to no less than the merged level, or leaves it and counts the
      // bridge outside (the same operations; rounding is monotone).
      double m = std::max(level, outside);
      if (bridge_load >= 0) {
        double l = level, o = outside;
        bridge_to_pool(static_cast<double>(pool_size_[static_cast<size_t>(k)]), 0.0, bridge_load, l, o);
        m = std::max(l, o);
        if (bridge_load < level) {
          const double n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
          m = std::min(m, std::max((n * level + bridge_load) / (n + 1), outside));
        }
      }
      floor += m - peak_[static_cast<size_t>(k)];
    }
    y_floor_[static_cast<size_t>(rj * S_ + t)] = floor / K_;
    if (y < 0 || cnt_[static_cast<size_t>(y)] >= 2) {  // a slot scan_hot may give
      rank_floor = std::min(rank_floor, floor / K_);
      rank_refund = std::max(rank_refund, y >= 0 ? price(rj, y) : 0.0);
    }
  }
  y_rank_floor_[static_cast<size_t>(rj)] = rank_floor;
  y_rank_refund_[static_cast<size_t>(rj)] = rank_refund;
}

double IntervalSearch::pool_replace_on_rank(int32_t j, ExpertId xe, bool priced) const {
  const int32_t rj = j / S_;
  const ExpertId y = slot_[static_cast<size_t>(j)];
  const double dcost = priced ? price(rj, xe) - (y >= 0 ? price(rj, y) : 0.0) : 0.0;
  const size_t base = static_cast<size_t>(j) * static_cast<size_t>(K_);
  const double* pool_amount = &pool_amount_[static_cast<size_t>(xe) * static_cast<size_t>(K_)];
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k) {
    double level = y_level_[base + static_cast<size_t>(k)];
    double outside = y_out_[base + static_cast<size_t>(k)];
    const double bridge_load = y_bridge_[base + static_cast<size_t>(k)];
    if (bridge_load >= 0) {
      // eval_replace's bridge, x's pool amount summed as it sums it.
      bridge_to_pool(static_cast<double>(pool_size_[static_cast<size_t>(k)]), pool_amount[k], bridge_load, level,
                     outside);
    }
    sum += std::max(level, outside) - peak_[static_cast<size_t>(k)];
  }
  return sum / K_ + dcost;
}

}  // namespace omni::detail
