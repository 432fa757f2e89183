#include "omniplacement/dispatch/batch_balancer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "omniplacement/core/str_cat.h"

namespace omni {

template <typename T>
BatchBalancer<T>::BatchBalancer(int32_t num_ranks, int32_t num_experts)
    : num_ranks_(num_ranks),
      num_experts_(num_experts),
      offset_(static_cast<size_t>(num_experts) + 1, 0),
      load_(static_cast<size_t>(num_ranks), T{0}),
      by_load_(static_cast<size_t>(num_ranks)),
      by_frac_(static_cast<size_t>(num_ranks)),
      frac_(static_cast<size_t>(num_ranks)),
      old_(static_cast<size_t>(num_ranks)),
      old_load_(static_cast<size_t>(num_ranks)),
      cursor_(static_cast<size_t>(num_experts)),
      change_mask_(static_cast<size_t>(num_experts), 0) {
  flexible_.reserve(static_cast<size_t>(num_experts));
  single_.reserve(static_cast<size_t>(num_experts));
  order_.reserve(static_cast<size_t>(num_experts));
  pass_.reserve(static_cast<size_t>(num_experts));
}

template <typename T>
StatusOr<BatchBalancer<T>> BatchBalancer<T>::create(int32_t num_ranks, int32_t num_experts) {
  if (num_ranks <= 0) return invalid_argument_error(str_cat("BatchBalancer: num_ranks ", num_ranks, " must be > 0"));
  if (num_experts < 0)
    return invalid_argument_error(str_cat("BatchBalancer: num_experts ", num_experts, " must be >= 0"));
  return BatchBalancer(num_ranks, num_experts);
}

template <typename T>
Status BatchBalancer<T>::set_slots(std::span<const ExpertId> phy2log, int32_t slots_per_rank) {
  const auto E = static_cast<size_t>(num_experts_);
  // On error no expert has a replica.
  auto fail = [&](Status s) {
    std::fill(offset_.begin(), offset_.end(), 0);
    ranks_.clear();
    amount_.clear();
    flexible_.clear();
    single_.clear();
    return s;
  };
  if (slots_per_rank <= 0)
    return fail(invalid_argument_error(str_cat("BatchBalancer::set_slots: slots_per_rank ", slots_per_rank,
                                               " must be > 0")));
  if (phy2log.size() != static_cast<size_t>(num_ranks_) * static_cast<size_t>(slots_per_rank))
    return fail(invalid_argument_error(str_cat("BatchBalancer::set_slots: ", phy2log.size(), " slots, expected ",
                                               num_ranks_, " ranks x ", slots_per_rank, " slots per rank")));
  const auto S = static_cast<size_t>(slots_per_rank);
  // Distinct ranks per expert: slots ascend, so do their ranks; cursor_[e] is
  // the last rank seen holding e.
  std::fill(cursor_.begin(), cursor_.end(), -1);
  std::fill(offset_.begin(), offset_.end(), 0);
  for (size_t g = 0; g < phy2log.size(); ++g) {
    const ExpertId e = phy2log[g];
    if (e == -1) continue;
    if (e < -1 || static_cast<size_t>(e) >= E)
      return fail(out_of_range_error(str_cat("BatchBalancer::set_slots: slot ", g, " (rank ", g / S, "): expert ", e,
                                             " out of [-1, ", num_experts_, ")")));
    const auto r = static_cast<int32_t>(g / S);
    if (cursor_[static_cast<size_t>(e)] != r) {
      cursor_[static_cast<size_t>(e)] = r;
      ++offset_[static_cast<size_t>(e) + 1];
    }
  }
  for (size_t e = 0; e < E; ++e) offset_[e + 1] += offset_[e];
  ranks_.reserve(phy2log.size());
  amount_.reserve(phy2log.size());
  ranks_.resize(static_cast<size_t>(offset_[E]));
  amount_.resize(static_cast<size_t>(offset_[E]));
  std::copy(offset_.begin(), offset_.end() - 1, cursor_.begin());  // next position per expert
  for (size_t g = 0; g < phy2log.size(); ++g) {
    const ExpertId e = phy2log[g];
    if (e < 0) continue;
    const auto r = static_cast<RankId>(g / S);
    int32_t& pos = cursor_[static_cast<size_t>(e)];
    if (pos == offset_[static_cast<size_t>(e)] || ranks_[static_cast<size_t>(pos) - 1] != r)
      ranks_[static_cast<size_t>(pos++)] = r;
  }
  index_flexible();
  return ok_status();
}

template <typename T>
Status BatchBalancer<T>::set_replica_ranks(std::span<const std::vector<RankId>> ranks_of) {
  const auto E = static_cast<size_t>(num_experts_);
  auto fail = [&](Status s) {
    std::fill(offset_.begin(), offset_.end(), 0);
    ranks_.clear();
    amount_.clear();
    flexible_.clear();
    single_.clear();
    return s;
  };
  if (ranks_of.size() != E)
    return fail(invalid_argument_error(str_cat("BatchBalancer::set_replica_ranks: ", ranks_of.size(),
                                               " replica rank lists for ", num_experts_, " experts")));
  offset_[0] = 0;
  for (size_t e = 0; e < E; ++e) {
    const auto& rs = ranks_of[e];
    for (size_t k = 0; k < rs.size(); ++k) {
      if (rs[k] < 0 || rs[k] >= num_ranks_)
        return fail(out_of_range_error(str_cat("BatchBalancer::set_replica_ranks: expert ", e, ": replica rank ",
                                               rs[k], " out of [0, ", num_ranks_, ")")));
      if (k > 0 && rs[k] <= rs[k - 1])
        return fail(invalid_argument_error(str_cat("BatchBalancer::set_replica_ranks: expert ", e,
                                                   ": replica ranks must be strictly ascending, ", rs[k],
                                                   " follows ", rs[k - 1])));
    }
    offset_[e + 1] = offset_[e] + static_cast<int32_t>(rs.size());
  }
  ranks_.resize(static_cast<size_t>(offset_[E]));
  amount_.resize(static_cast<size_t>(offset_[E]));
  for (size_t e = 0; e < E; ++e)
    std::copy(ranks_of[e].begin(), ranks_of[e].end(), ranks_.begin() + offset_[e]);
  index_flexible();
  return ok_status();
}

template <typename T>
void BatchBalancer<T>::index_flexible() {
  flexible_.clear();
  single_.clear();
  for (ExpertId e = 0; e < num_experts_; ++e) {
    const int32_t n = offset_[static_cast<size_t>(e) + 1] - offset_[static_cast<size_t>(e)];
    if (n > 1) flexible_.push_back(e);
    if (n == 1) single_.push_back(e);
  }
}

template <typename T>
std::span<const RankId> BatchBalancer<T>::replica_ranks(ExpertId e) const {
  if (e < 0 || e >= num_experts_) return {};
  const auto b = static_cast<size_t>(offset_[static_cast<size_t>(e)]);
  return std::span<const RankId>(ranks_).subspan(b, static_cast<size_t>(offset_[static_cast<size_t>(e) + 1]) - b);
}

template <typename T>
std::span<const T> BatchBalancer<T>::amounts(ExpertId e) const {
  if (e < 0 || e >= num_experts_) return {};
  const auto b = static_cast<size_t>(offset_[static_cast<size_t>(e)]);
  return std::span<const T>(amount_).subspan(b, static_cast<size_t>(offset_[static_cast<size_t>(e) + 1]) - b);
}

namespace {

// fill() of an expert with two replica ranks (most of them), in doubles,
// written out: the same operations as the general code (the less loaded
// first, ties to the first position; its level alone, then the two together
// when it reaches the other's load). l0, l1: the two ranks' loads; a: the
// two amounts.
inline void fill_two(double* l0, double* l1, double* a, double total) {
  const bool swap = *l1 < *l0;
  double* lo = swap ? l1 : l0;  // the less loaded rank's load
  double* hi = swap ? l0 : l1;
  double* alo = swap ? a + 1 : a;
  double* ahi = swap ? a : a + 1;
  double acc = total;
  acc += *lo;
  double level = acc / 1.0;
  if (level <= *hi) {
    *alo = std::max(0.0, level - *lo);
    *ahi = 0.0;
    *lo += *alo;
  } else {
    acc += *hi;
    level = acc / 2.0;
    *alo = std::max(0.0, level - *lo);
    *ahi = std::max(0.0, level - *hi);
    *lo += *alo;
    *hi += *ahi;
  }
}

// fill() of an expert with n >= 3 replica ranks rs[0..n), in doubles: the
// general code for whole tokens below with the sorted loads kept beside their
// positions (sl[i] is the load of position ord[i]; both scratch of n): the
// same order and the same floating-point operations. load: every rank's load;
// a: the n amounts.
inline void fill_many(double* load, const RankId* rs, double* a, int32_t n, double total, double* sl,
                      int32_t* ord) {
  if (n == 3) {
    // Three: a stable sorting network (swap only when strictly greater), the
    // one order the insertion sort below gives.
    double s0 = load[static_cast<size_t>(rs[0])], s1 = load[static_cast<size_t>(rs[1])],
           s2 = load[static_cast<size_t>(rs[2])];
    int32_t o0 = 0, o1 = 1, o2 = 2;
    if (s0 > s1) std::swap(s0, s1), std::swap(o0, o1);
    if (s1 > s2) std::swap(s1, s2), std::swap(o1, o2);
    if (s0 > s1) std::swap(s0, s1), std::swap(o0, o1);
    sl[0] = s0, sl[1] = s1, sl[2] = s2;
    ord[0] = o0, ord[1] = o1, ord[2] = o2;
  } else if (n == 4) {
    // Four: the same with bubble sort's six comparisons.
    double s0 = load[static_cast<size_t>(rs[0])], s1 = load[static_cast<size_t>(rs[1])],
           s2 = load[static_cast<size_t>(rs[2])], s3 = load[static_cast<size_t>(rs[3])];
    int32_t o0 = 0, o1 = 1, o2 = 2, o3 = 3;
    if (s0 > s1) std::swap(s0, s1), std::swap(o0, o1);
    if (s1 > s2) std::swap(s1, s2), std::swap(o1, o2);
    if (s2 > s3) std::swap(s2, s3), std::swap(o2, o3);
    if (s0 > s1) std::swap(s0, s1), std::swap(o0, o1);
    if (s1 > s2) std::swap(s1, s2), std::swap(o1, o2);
    if (s0 > s1) std::swap(s0, s1), std::swap(o0, o1);
    sl[0] = s0, sl[1] = s1, sl[2] = s2, sl[3] = s3;
    ord[0] = o0, ord[1] = o1, ord[2] = o2, ord[3] = o3;
  } else {
    for (int32_t k = 0; k < n; ++k) {
      const double lk = load[static_cast<size_t>(rs[k])];
      int32_t i = k;
      for (; i > 0 && sl[i - 1] > lk; --i) {
        sl[i] = sl[i - 1];
        ord[i] = ord[i - 1];
      }
      sl[i] = lk;
      ord[i] = k;
    }
  }
  double acc = total, level = 0;
  int32_t used = 0;
  for (int32_t i = 0; i < n; ++i) {
    acc += sl[i];
    level = acc / static_cast<double>(i + 1);
    used = i + 1;
    if (i + 1 == n || level <= sl[i + 1]) break;
  }
  for (int32_t i = 0; i < used; ++i) {
    const double v = std::max(0.0, level - sl[i]);
    a[ord[i]] = v;
    load[static_cast<size_t>(rs[ord[i]])] = sl[i] + v;
  }
  for (int32_t i = used; i < n; ++i) a[ord[i]] = 0.0;
}

}  // namespace

template <typename T>
void BatchBalancer<T>::fill(ExpertId e, T total) {
  const auto b = static_cast<size_t>(offset_[static_cast<size_t>(e)]);
  const auto n = static_cast<int32_t>(offset_[static_cast<size_t>(e) + 1] - offset_[static_cast<size_t>(e)]);
  const RankId* rs = ranks_.data() + b;
  T* a = amount_.data() + b;
  if constexpr (std::is_same_v<T, double>) {
    if (n == 2) {
      fill_two(&load_[static_cast<size_t>(rs[0])], &load_[static_cast<size_t>(rs[1])], a, total);
      return;
    }
    fill_many(load_.data(), rs, a, n, total, old_load_.data(), by_load_.data());
    return;
  }
  // Whole tokens (doubles return above). The loads of e's ranks, read once
  // (fill changes them only at the end).
  T* lo = old_load_.data();
  for (int32_t k = 0; k < n; ++k) lo[k] = load_[static_cast<size_t>(rs[k])];
  auto load_at = [&](int32_t k) { return lo[k]; };
  // Positions by load, ties in position order (the lower rank first): an
  // insertion sort (n is a few replicas; the order is total, so it is the
  // one order any sort gives).
  int32_t* ord = by_load_.data();
  for (int32_t k = 0; k < n; ++k) {
    const T lk = lo[k];
    int32_t i = k;
    for (; i > 0 && lo[ord[i - 1]] > lk; --i) ord[i] = ord[i - 1];
    ord[i] = k;
  }
  // Level L with sum over the `used` least loaded of (L - load) = total.
  double acc = static_cast<double>(total), level = 0;
  int32_t used = 0;
  for (int32_t i = 0; i < n; ++i) {
    acc += static_cast<double>(load_at(ord[i]));
    level = acc / static_cast<double>(i + 1);
    used = i + 1;
    if (i + 1 == n || level <= static_cast<double>(load_at(ord[i + 1]))) break;
  }
  if constexpr (std::is_same_v<T, double>) {
    for (int32_t i = 0; i < used; ++i) a[ord[i]] = std::max(0.0, level - load_at(ord[i]));
    for (int32_t i = used; i < n; ++i) a[ord[i]] = 0.0;
  } else {
    for (int32_t k = 0; k < n; ++k) a[k] = T{0};
    // Whole tokens: the integer parts first, then one token each to the
    // largest fractional parts (ties: the less loaded first) until all are given.
    int64_t given = 0;
    for (int32_t i = 0; i < used; ++i) {
      const int32_t k = ord[i];
      const double exact = std::max(0.0, level - static_cast<double>(load_at(k)));
      a[k] = std::min<int64_t>(static_cast<int64_t>(exact), total - given);
      frac_[static_cast<size_t>(k)] = exact - static_cast<double>(a[k]);
      given += a[k];
    }
    int32_t* by_frac = by_frac_.data();
    for (int32_t i = 0; i < used; ++i) by_frac[i] = i;
    std::sort(by_frac, by_frac + used, [&](int32_t x, int32_t y) {
      const double fx = frac_[static_cast<size_t>(ord[x])], fy = frac_[static_cast<size_t>(ord[y])];
      return fx > fy || (fx == fy && x < y);
    });
    for (int32_t i = 0; given < total; i = (i + 1) % used, ++given) ++a[ord[by_frac[i]]];
  }
  for (int32_t i = 0; i < used; ++i) load_[static_cast<size_t>(rs[ord[i]])] += a[ord[i]];
}

template <typename T>
Status BatchBalancer<T>::balance(std::span<const T> totals) {
  return balance_passes(totals, false, false);
}

template <typename T>
Status BatchBalancer<T>::balance_tracked(std::span<const T> totals) {
  return balance_passes(totals, false, true);
}

template <typename T>
Status BatchBalancer<T>::balance_all_passes(std::span<const T> totals) {
  return balance_passes(totals, true, true);
}

template <typename T>
Status BatchBalancer<T>::balance_passes(std::span<const T> totals, bool all_passes, bool track) {
  passes_ = 0;
  changed_passes_ = 0;
  const auto E = static_cast<size_t>(num_experts_);
  if (totals.size() != E)
    return invalid_argument_error(
        str_cat("BatchBalancer::balance: ", totals.size(), " expert totals, expected ", num_experts_));
  std::fill(load_.begin(), load_.end(), T{0});
  // Experts with one replica rank load it (ascending id); the range check first.
  bool bad = false;
  for (size_t e = 0; e < E; ++e) {
    const T t = totals[e];
    bad |= !(t >= T{0} && t <= kMaxTotal);
  }
  for (ExpertId e : single_) {
    const T t = totals[static_cast<size_t>(e)];
    const auto b = static_cast<size_t>(offset_[static_cast<size_t>(e)]);
    load_[static_cast<size_t>(ranks_[b])] += t;
    amount_[b] = t;
  }
  if (bad) {
    for (size_t e = 0; e < E; ++e)
      if (!(totals[e] >= T{0} && totals[e] <= kMaxTotal))
        return invalid_argument_error(
            str_cat("BatchBalancer::balance: expert ", e, ": total ", totals[e], " outside [0, 2^50]"));
  }
  // Several replica ranks: by descending total (ties: lowest id), each water-fills its ranks.
  order_.assign(flexible_.begin(), flexible_.end());
  std::sort(order_.begin(), order_.end(), [&](ExpertId x, ExpertId y) {
    const T tx = totals[static_cast<size_t>(x)], ty = totals[static_cast<size_t>(y)];
    return tx > ty || (tx == ty && x < y);
  });
  for (ExpertId e : order_) fill(e, totals[static_cast<size_t>(e)]);
  // Refinement: re-fill each with all others in place until a pass changes
  // nothing (a block-coordinate descent on the most loaded rank).
  if constexpr (std::is_same_v<T, double>) {
    refine_doubles(totals, all_passes, track);
  } else {
    for (int pass = 0; pass < kMaxPasses; ++pass) {
      bool changed = false;
      for (ExpertId e : order_) {
        const auto b = static_cast<size_t>(offset_[static_cast<size_t>(e)]);
        const auto n = static_cast<size_t>(offset_[static_cast<size_t>(e) + 1]) - b;
        for (size_t k = 0; k < n; ++k) {
          old_[k] = amount_[b + k];
          load_[static_cast<size_t>(ranks_[b + k])] -= amount_[b + k];
        }
        fill(e, totals[static_cast<size_t>(e)]);
        if (changed) continue;  // the pass is run to its end either way
        for (size_t k = 0; k < n; ++k) changed |= old_[k] != amount_[b + k];
      }
      passes_ = pass + 1;
      if (changed) changed_passes_ |= 1u << pass;
      if (!changed && !all_passes) break;
    }
  }
  return ok_status();
}

// The refinement of balance() in doubles: the same passes, the same
// operations in the same order, each expert's offsets, ranks and total read
// once per balance (pass_) instead of once per pass.
template <typename T>
void BatchBalancer<T>::refine_doubles(std::span<const T> totals, bool all_passes, bool track) {
  if constexpr (std::is_same_v<T, double>) {
    pass_.clear();
    for (ExpertId e : order_) {
      const int32_t b = offset_[static_cast<size_t>(e)];
      pass_.push_back({b, offset_[static_cast<size_t>(e) + 1] - b, ranks_[static_cast<size_t>(b)],
                       ranks_[static_cast<size_t>(b) + 1], e, totals[static_cast<size_t>(e)]});
      change_mask_[static_cast<size_t>(e)] = 0;
    }
    double* load = load_.data();
    double* amount = amount_.data();
    for (int pass = 0; pass < kMaxPasses; ++pass) {
      bool changed = false;
      for (const PassEntry& p : pass_) {
        const auto b = static_cast<size_t>(p.b);
        const double total = p.total;
        if (p.n == 2) {
          double* l0 = &load[static_cast<size_t>(p.r0)];
          double* l1 = &load[static_cast<size_t>(p.r1)];
          const double o0 = amount[b], o1 = amount[b + 1];
          *l0 -= o0;
          *l1 -= o1;
          fill_two(l0, l1, &amount[b], total);
          if (changed && !track) continue;
          const double tol = 1e-9 * (1.0 + total);
          const bool moved = std::abs(o0 - amount[b]) > tol || std::abs(o1 - amount[b + 1]) > tol;
          if (moved && track) change_mask_[static_cast<size_t>(p.e)] |= static_cast<uint8_t>(1u << pass);
          changed |= moved;
          continue;
        }
        const auto n = static_cast<size_t>(p.n);
        for (size_t k = 0; k < n; ++k) {
          old_[k] = amount[b + k];
          load[static_cast<size_t>(ranks_[b + k])] -= amount[b + k];
        }
        fill_many(load, &ranks_[b], &amount[b], p.n, total, old_load_.data(), by_load_.data());
        if (changed && !track) continue;  // the pass is run to its end either way
        const double tol = 1e-9 * (1.0 + total);
        bool moved = false;
        for (size_t k = 0; k < n; ++k) moved |= std::abs(old_[k] - amount[b + k]) > tol;
        if (moved && track) change_mask_[static_cast<size_t>(p.e)] |= static_cast<uint8_t>(1u << pass);
        changed |= moved;
      }
      passes_ = pass + 1;
      if (changed) changed_passes_ |= 1u << pass;
      if (!changed && !all_passes) break;
    }
  }
}

template class BatchBalancer<int64_t>;
template class BatchBalancer<double>;

}  // namespace omni
