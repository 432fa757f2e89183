// IntervalSearch, the candidate moves (see interval_search.h): evaluating a
// swap or a replacement exactly (eval_swap, eval_replace), the result-
// preserving bounds that skip moves which cannot beat the best one found
// (bound_of, replace_bound, swap_bound, split_replace_bound; per-batch also
// PoolPairTerms::floor and the slots' floors of prepare_pool_replace_rank), and the scans
// over the busiest ranks and the moves already made (scan_hot,
// scan_reverts). The evaluations from what a scan prepares per pair of ranks
// or per rank are in interval_search_prepared.cc; the state they read and the
// loop that applies the best move are in interval_search.cc.
#include "interval_search.h"
#include "interval_search_inline.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "omniplacement/core/status.h"

namespace omni::detail {

namespace {

// Busiest ranks of a scenario's pool tried as move sources (per-batch).
constexpr int32_t kPoolSources = 3;
// Experts offered a spare replica of a busiest rank: the heaviest per replica.
constexpr int32_t kReplicaTakers = 8;
// Ranks a busiest rank trades with: the least loaded ones.
constexpr int32_t kPartners = 16;

}  // namespace

double IntervalSearch::max_excluding_scan(int32_t k, const int32_t* ranks, int32_t n,
                                          const std::vector<int32_t>& top) const {
  const char* pool = per_batch() && &top == &out_top_ ? &in_pool_[at(k, 0)] : nullptr;
  double m = 0;  // every one of the three busiest is touched: scan
  for (int32_t r = 0; r < R_; ++r)
    if (!excluded_rank(r, ranks, n) && (pool == nullptr || !pool[r])) m = std::max(m, load_[at(k, r)]);
  return m;
}

double IntervalSearch::eval_swap(int32_t i, int32_t j, bool priced) {
  const int32_t ra = i / S_, rb = j / S_;
  const ExpertId a = slot_[static_cast<size_t>(i)], b = slot_[static_cast<size_t>(j)];
  if (p_.max_moves_per_rank >= 0) {
    const int32_t na = received_[static_cast<size_t>(ra)] + (b >= 0 && received(ra, b)) - (a >= 0 && received(ra, a));
    const int32_t nb = received_[static_cast<size_t>(rb)] + (a >= 0 && received(rb, a)) - (b >= 0 && received(rb, b));
    if ((na > p_.max_moves_per_rank && na > received_[static_cast<size_t>(ra)]) ||
        (nb > p_.max_moves_per_rank && nb > received_[static_cast<size_t>(rb)]))
      return kInf;
  }
  const double dcost = priced ? swap_price(ra, rb, a, b) : 0.0;
  // a's amounts on ra and b's on rb: column `ia` (`ib`) of amt_ every
  // scenario (the replica's index among the expert's ranks), found once.
  const double* pa = a >= 0 ? replica_amounts(a, ra) : nullptr;
  const double* pb = b >= 0 ? replica_amounts(b, rb) : nullptr;
  const size_t na = a >= 0 ? ranks_[static_cast<size_t>(a)].size() : 0;
  const size_t nb = b >= 0 ? ranks_[static_cast<size_t>(b)].size() : 0;
  // F after the swap: per scenario, the two touched ranks {ra, rb} change by
  // (bb - aa, aa - bb). Static shares: the busiest of them and of the
  // untouched ranks. Per-batch: a pool rank's change moves the pool's level
  // by that change over the pool's size; the result is the larger of the
  // level and the busiest rank outside the pool.
  const int32_t pair[2] = {ra, rb};
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k) {
    const double aa = pa != nullptr ? pa[static_cast<size_t>(k) * na] : 0.0;
    const double bb = pb != nullptr ? pb[static_cast<size_t>(k) * nb] : 0.0;
    const double d0 = bb - aa, d1 = aa - bb;
    double m;
    if (!per_batch()) {
      m = max_excluding(k, pair, 2, top_);
      m = std::max(m, load_[at(k, ra)] + d0);
      m = std::max(m, load_[at(k, rb)] + d1);
    } else {
      m = pool_pair_max(k, ra, d0, rb, d1, max_excluding(k, pair, 2, out_top_));
    }
    sum += m - peak_[static_cast<size_t>(k)];
  }
  return sum / K_ + dcost;
}

double IntervalSearch::eval_replace(int32_t j, ExpertId xe, bool priced) {
  const int32_t rj = j / S_;
  const ExpertId y = slot_[static_cast<size_t>(j)];
  if (p_.max_moves_per_rank >= 0 && xe >= 0) {
    const int32_t n = received_[static_cast<size_t>(rj)] + received(rj, xe) - (y >= 0 && received(rj, y));
    if (n > p_.max_moves_per_rank && n > received_[static_cast<size_t>(rj)]) return kInf;
  }
  const double dcost = priced ? (xe >= 0 ? price(rj, xe) : 0.0) - (y >= 0 ? price(rj, y) : 0.0) : 0.0;
  static const std::vector<int32_t> kNone;
  const auto& rx = xe >= 0 ? ranks_[static_cast<size_t>(xe)] : kNone;
  const auto& ry = y >= 0 ? ranks_[static_cast<size_t>(y)] : kNone;
  // The touched ranks (rj, x's ranks, y's other ranks), listed when a
  // static-shares evaluation needs them.
  int32_t T = -1;
  auto list_touched = [&] {
    if (T >= 0) return;
    touched_.clear();
    touched_.push_back(rj);
    for (int32_t q : rx) touched_.push_back(q);
    for (int32_t q : ry)
      if (q != rj) touched_.push_back(q);
    T = static_cast<int32_t>(touched_.size());
  };
  const double cx = static_cast<double>(rx.size()), cy = static_cast<double>(ry.size());
  const double* py = y >= 0 ? replica_amounts(y, rj) : nullptr;
  if (!per_batch()) {
    // Static shares: F after the move, from the busiest untouched rank and
    // each touched rank's new load (x's new replica takes x / (cx + 1) from
    // its others; y's amount on rj goes evenly to its other replicas).
    // With x's bound_of prepared, the busiest rank outside rj and x's ranks
    // and the busiest of x's ranks after the move come from there: y's other
    // ranks only gain (dy >= 0), so leaving them in the first maximum changes
    // nothing; when that maximum is not >= 0, the loop below decides as before.
    const ReplaceBound* xb = prepared_bound(xe);
    double sum = 0;
    for (int32_t k = 0; k < K_; ++k) {
      double m = 0;
      double d0 = 0.0;
      bool from_bound = false;
      if (xb != nullptr) {
        const ReplaceBound& b = xb[k];
        const bool next = b.first_rank == rj;
        const double outside = next ? b.second : b.first;
        if ((next ? b.second_rank : b.first_rank) >= 0 && outside >= 0) {
          m = std::max(outside, b.own);
          d0 += x(k, xe) / (cx + 1);
          from_bound = true;
        }
      }
      if (!from_bound) {
        list_touched();
        m = max_excluding(k, touched_.data(), T, top_);
        if (xe >= 0) {
          const double xk = x(k, xe);
          d0 += xk / (cx + 1);
          const double dx = 0.0 - (xk / cx - xk / (cx + 1));
          for (int32_t q : rx) m = std::max(m, load_[at(k, q)] + dx);
        }
      }
      if (y >= 0) {
        const double on_rj = py != nullptr ? py[static_cast<size_t>(k) * ry.size()] : 0.0;
        d0 -= on_rj;
        if (ry.size() > 1) {
          const double dy = 0.0 + on_rj / (cy - 1);
          for (int32_t q : ry)
            if (q != rj) m = std::max(m, load_[at(k, q)] + dy);
        }
      }
      m = std::max(m, load_[at(k, rj)] + d0);
      sum += m - peak_[static_cast<size_t>(k)];
    }
    return sum / K_ + dcost;
  }
  // Per-batch: the touched ranks in order (rj, y's other ranks):
  // no change for x's ranks (the split decides x's amounts); y's amount on rj
  // goes evenly to its other replicas (a feasible split). Pool ranks move the
  // pool's level (see eval_swap); rj, when x gets a new replica there, may
  // bridge to the pool.
  // x's ranks change by 0: they leave the level as it is and enter `outside`
  // with their loads, which max_excluding does when they are not excluded.
  const ExpertId bridge_expert = xe >= 0 ? xe : -1;
  const int32_t bridge_rank = xe >= 0 ? rj : -1;
  touched_.clear();
  touched_.push_back(rj);
  for (int32_t q : ry)
    if (q != rj) touched_.push_back(q);
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k) {
    auto [level, outside, bridge_load] = replace_terms(k, rj, bridge_rank, y, ry, cy, py);
    if (bridge_load >= 0) {
      // A new replica of an expert with load in the pool links this rank to it.
      const char* pool = &in_pool_[at(k, 0)];
      double in_pool = 0;
      const auto& rs = ranks_[static_cast<size_t>(bridge_expert)];
      for (size_t i = 0; i < rs.size(); ++i)
        if (pool[rs[i]]) in_pool += amt_[static_cast<size_t>(bridge_expert)][static_cast<size_t>(k) * rs.size() + i];
      bridge_to_pool(static_cast<double>(pool_size_[static_cast<size_t>(k)]), in_pool, bridge_load, level, outside);
    }
    sum += std::max(level, outside) - peak_[static_cast<size_t>(k)];
  }
  return sum / K_ + dcost;
}

// Static shares: a lower bound on eval_replace(j, xe)'s F for every
// slot j of a rank rj: per scenario, the same terms as there for x's ranks,
// and the busiest rank that is neither rj nor one of x's (y's other ranks
// only gain load). The same floating-point operations as eval_replace, so
// the bound holds exactly, rounding included (rounding is monotone). bound_of(xe) prepares it for every rj (once per scan_hot), replace_bound(xe, rj) gives it.
void IntervalSearch::bound_of(ExpertId xe) {
  if (!bound_ready_.claim(xe)) return;
  const auto& rx = ranks_[static_cast<size_t>(xe)];
  const double cx = static_cast<double>(rx.size());
  // x has few replicas: a plain loop (std::find's unrolled search costs more here).
  const int32_t* rxp = rx.data();
  const auto nrx = static_cast<int32_t>(rx.size());
  auto in_rx = [&](int32_t r) { return excluded_rank(r, rxp, nrx); };
  for (int32_t k = 0; k < K_; ++k) {
    ReplaceBound& b = bound_[static_cast<size_t>(xe) * static_cast<size_t>(K_) + static_cast<size_t>(k)];
    const double xk = x(k, xe);
    const double d = 0.0 - (xk / cx - xk / (cx + 1));
    b.share = xk / (cx + 1);
    b.own = -kInf;
    for (size_t i = 0; i < rx.size(); ++i) b.own = std::max(b.own, load_[at(k, rx[i])] + d);
    // The two busiest ranks outside rx: from the three busiest, or a scan.
    const int32_t* t = &top_[static_cast<size_t>(k) * 3];
    int32_t n = 0;
    int32_t u[2] = {-1, -1};
    for (int32_t i = 0; i < 3 && n < 2; ++i)
      if (t[i] >= 0 && !in_rx(t[i])) u[n++] = t[i];
    if (n < 2 && t[2] >= 0) {
      n = 0;
      u[0] = u[1] = -1;
      for (int32_t r = 0; r < R_; ++r) {
        if (in_rx(r)) continue;
        const double v = load_[at(k, r)];
        if (u[0] < 0 || v > load_[at(k, u[0])]) {
          u[1] = u[0];
          u[0] = r;
        } else if (u[1] < 0 || v > load_[at(k, u[1])]) {
          u[1] = r;
        }
      }
    }
    b.first_rank = u[0];
    b.second_rank = u[1];
    b.first = u[0] >= 0 ? load_[at(k, u[0])] : 0.0;
    b.second = u[1] >= 0 ? load_[at(k, u[1])] : 0.0;
  }
  // replace_bound's sum for a rank that is no scenario's first_rank.
  const ReplaceBound* xb = prepared_bound(xe);
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k)
    sum += std::max(std::max(xb[k].first, 0.0), xb[k].own) - peak_[static_cast<size_t>(k)];
  bound_sum_[static_cast<size_t>(xe)] = sum;
}

double IntervalSearch::replace_bound(ExpertId xe, int32_t rj) const {
  const ReplaceBound* xb = prepared_bound(xe);
  // Unless rj is the busiest rank outside x's in some scenario, the sum is
  // bound_of's (the same terms in the same order).
  bool first = false;
  for (int32_t k = 0; k < K_; ++k) first |= xb[k].first_rank == rj;
  if (!first) return bound_sum_[static_cast<size_t>(xe)] / K_;
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k) {
    const ReplaceBound& b = xb[k];
    const double m = std::max(std::max(b.first_rank == rj ? b.second : b.first, 0.0), b.own);
    sum += m - peak_[static_cast<size_t>(k)];
  }
  return sum / K_;
}

// Per-batch: a lower bound on eval_swap's F for every swap between ra and rb.
// Per scenario eval_swap keeps the level of the pool and the busiest rank outside
// it; a swap moves u = (a's amount - b's) from one rank to the other, so:
// both or neither in the pool, the level stays (up to rounding); one in the
// pool (level p, n ranks) and the other outside (load L), the larger of
// p - u / n and L + u is at least (n p + L) / (n + 1). The busiest untouched
// rank outside the pool is the same max_excluding as eval_swap's. The slack
// (1e-12 relative) covers eval_swap's rounding, some 1e-16 relative.
double IntervalSearch::swap_bound(int32_t ra, int32_t rb) const {
  const int32_t pair[2] = {ra, rb};
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k) {
    const char* pool = &in_pool_[at(k, 0)];
    const double p = peak_[static_cast<size_t>(k)];
    const double n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
    double m = p;
    if (pool[ra] != pool[rb]) m = (n * p + load_[at(k, pool[ra] ? rb : ra)]) / (n + 1);
    m = std::max(m - 1e-12 * (1.0 + p), max_excluding(k, pair, 2, out_top_));
    sum += m - p;
  }
  return sum / K_;
}

// Per-batch: a lower bound on the F part of eval_replace(j, xe) for every
// slot j of rj, from the same floating-point operations with y's amount on
// rj at its largest over rj's slots (rounding is monotone, so it holds
// exactly). Per scenario (peak p, pool of n ranks): with rj in the pool the
// level falls by at most that amount over n; outside it the level stays, or
// the bridge lowers it to no less than the merged level with the least
// bridge load, or p less x's amount in the pool over n; y's other ranks only
// gain; the busiest rank outside the pool other than rj stays.
double IntervalSearch::split_replace_bound(ExpertId xe, int32_t rj) {
  prepare_split_rank(rj);
  prepare_split_expert(xe);
  return split_replace_bound_at(rj, &pool_amount_[static_cast<size_t>(xe) * static_cast<size_t>(K_)]);
}

void IntervalSearch::prepare_split_rank(int32_t rj) {
  const size_t K = static_cast<size_t>(K_);
  if (rank_ready_.claim(rj)) {
    for (int32_t k = 0; k < K_; ++k) {
      double amax = 0.0;
      for (int32_t t = 0; t < S_; ++t) {
        const ExpertId y = slot_[static_cast<size_t>(rj * S_ + t)];
        const double* py = y >= 0 ? replica_amounts(y, rj) : nullptr;
        if (py != nullptr) amax = std::max(amax, py[static_cast<size_t>(k) * ranks_[static_cast<size_t>(y)].size()]);
      }
      const double out = max_excluding(k, &rj, 1, out_top_);
      rank_out_[static_cast<size_t>(rj) * K + static_cast<size_t>(k)] = out;
      // split_replace_bound_at's operations that do not depend on x: the
      // term with rj in the pool, or with the level at p; the merged level.
      const double p = peak_[static_cast<size_t>(k)];
      const double n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
      double level = p;
      if (in_pool_[at(k, rj)]) {
        level += (0.0 - amax) / n;
      } else {
        const double bridge = std::max(load_[at(k, rj)] + (0.0 - amax), 0.0);
        rank_merged_[static_cast<size_t>(rj) * K + static_cast<size_t>(k)] = (n * p + bridge) / (n + 1);
      }
      rank_term_[static_cast<size_t>(rj) * K + static_cast<size_t>(k)] = std::max(level, out) - p;
    }
  }
}

void IntervalSearch::prepare_split_expert(ExpertId xe) {
  const size_t K = static_cast<size_t>(K_);
  if (bound_ready_.claim(xe)) {
    const auto& rs = ranks_[static_cast<size_t>(xe)];
    for (int32_t k = 0; k < K_; ++k) {
      const char* pool = &in_pool_[at(k, 0)];
      double in_pool = 0;  // as eval_replace sums it
      for (size_t i = 0; i < rs.size(); ++i)
        if (pool[rs[i]]) in_pool += amt_[static_cast<size_t>(xe)][static_cast<size_t>(k) * rs.size() + i];
      pool_amount_[static_cast<size_t>(xe) * K + static_cast<size_t>(k)] = in_pool;
    }
  }
}

double IntervalSearch::split_replace_bound_at(int32_t rj, const double* pool_amount) const {
  const size_t K = static_cast<size_t>(K_);
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k) {
    const size_t rk = static_cast<size_t>(rj) * K + static_cast<size_t>(k);
    // rj in the pool, or x has no amount there: the level does not depend
    // on x (prepare_split_rank's term).
    const double in_pool = pool_amount[k];
    if (in_pool_[at(k, rj)] || !(in_pool > 0)) {
      sum += rank_term_[rk];
      continue;
    }
    const double p = peak_[static_cast<size_t>(k)];
    const double n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
    const double level = std::min(p, std::max(rank_merged_[rk], p - in_pool / n));
    sum += std::max(level, rank_out_[rk]) - p;
  }
  return sum / K_;
}

// The most a swap between ra and rb can give back in prices (0 unpriced).
double IntervalSearch::swap_refund(int32_t ra, int32_t rb, bool priced) const {
  double refund = 0;
  if (priced)
    for (int32_t s = 0; s < S_; ++s) {
      const ExpertId a = slot_[static_cast<size_t>(ra * S_ + s)], b = slot_[static_cast<size_t>(rb * S_ + s)];
      refund += (a >= 0 ? price(ra, a) : 0.0) + (b >= 0 ? price(rb, b) : 0.0);
    }
  return refund;
}

void IntervalSearch::consider(Move m, Move& best, bool priced) {
  if (!tabu_.empty() && std::find(tabu_.begin(), tabu_.end(), m) != tabu_.end()) return;
  m.delta = m.kind == 0 ? eval_swap(m.i, m.j, priced) : eval_replace(m.j, m.x, priced);
  offer(m, best);
}

void IntervalSearch::scan_hot(Move& best, bool priced) {
  // Sources: the busiest rank of each scenario (static shares), or the first
  // ranks of each scenario's pool (per-batch split).
  std::vector<int32_t> hot;
  for (int32_t k = 0; k < K_; ++k) {
    if (!per_batch()) {
      hot.push_back(top_[static_cast<size_t>(k) * 3]);
      continue;
    }
    int32_t n = 0;
    for (int32_t r = 0; r < R_ && n < kPoolSources; ++r)
      if (in_pool_[at(k, r)]) {
        hot.push_back(r);
        ++n;
      }
  }
  std::sort(hot.begin(), hot.end());
  hot.erase(std::unique(hot.begin(), hot.end()), hot.end());
  // Experts offered a spare replica: the heaviest by mean load per replica.
  std::vector<ExpertId> takers(static_cast<size_t>(E_));
  std::iota(takers.begin(), takers.end(), 0);
  std::vector<double> per_replica(static_cast<size_t>(E_), 0.0);
  for (ExpertId e = 0; e < E_; ++e)
    per_replica[static_cast<size_t>(e)] = total_[static_cast<size_t>(e)] / std::max(1, cnt_[static_cast<size_t>(e)]);
  const auto nt = static_cast<size_t>(std::min(kReplicaTakers, E_));
  std::partial_sort(takers.begin(), takers.begin() + static_cast<std::ptrdiff_t>(nt), takers.end(),
                    [&](ExpertId a, ExpertId b) {
                      const double pa = per_replica[static_cast<size_t>(a)], pb = per_replica[static_cast<size_t>(b)];
                      return pa != pb ? pa > pb : a < b;
                    });
  takers.resize(nt);
  // Partners: the kPartners ranks least loaded on average over the scenarios
  // (every rank when there are that few): moving load off a busiest rank
  // goes to the coolest ones.
  std::vector<int32_t> partners(static_cast<size_t>(R_));
  std::iota(partners.begin(), partners.end(), 0);
  if (R_ > kPartners) {
    std::vector<double> mean_load(static_cast<size_t>(R_), 0.0);
    for (int32_t k = 0; k < K_; ++k)
      for (int32_t r = 0; r < R_; ++r) mean_load[static_cast<size_t>(r)] += load_[at(k, r)];
    std::partial_sort(partners.begin(), partners.begin() + kPartners, partners.end(), [&](int32_t a, int32_t b) {
      const double la = mean_load[static_cast<size_t>(a)], lb = mean_load[static_cast<size_t>(b)];
      return la != lb ? la < lb : a < b;
    });
    partners.resize(static_cast<size_t>(kPartners));
    std::sort(partners.begin(), partners.end());
  }

  // Static shares with no per-rank limit and no move set aside: give-a-
  // replica moves evaluated from what is prepared per rank (replace_on_rank).
  const bool on_rank = !per_batch() && p_.max_moves_per_rank < 0 && tabu_.empty();
  // Per-batch, the same (pool_replace_on_rank) for a move not set aside
  // (set_aside; consider() passes over it).
  const bool on_pool_rank = per_batch() && p_.max_moves_per_rank < 0;
  for (int32_t ra : hot) {
    const double* ra_amt = nullptr;  // ra's slot_amounts, once a pair passes its bound
    // Swaps of a replica of ra with any slot of a partner rank.
    for (int32_t rb : partners) {
      if (rb == ra) continue;
      if (!per_batch()) {
        // Any swap keeps L(ra) + L(rb) in every scenario: a lower bound on its F.
        const int32_t pair[2] = {ra, rb};
        double lb = 0;
        for (int32_t k = 0; k < K_; ++k) {
          pair_max_[static_cast<size_t>(k)] = max_excluding(k, pair, 2, top_);
          lb += std::max(pair_max_[static_cast<size_t>(k)], 0.5 * (load_[at(k, ra)] + load_[at(k, rb)])) -
                peak_[static_cast<size_t>(k)];
        }
        lb /= K_;
        double refund = 0;  // the most a swap between ra and rb can give back in prices
        if (priced)
          for (int32_t s = 0; s < S_; ++s) {
            const ExpertId a = slot_[static_cast<size_t>(ra * S_ + s)], b = slot_[static_cast<size_t>(rb * S_ + s)];
            refund += (a >= 0 ? price(ra, a) : 0.0) + (b >= 0 ? price(rb, b) : 0.0);
          }
        if (lb - refund >= best.delta) continue;
      } else {
        // The same for the per-batch split (swap_bound), the refund with a
        // slack for the rounding of eval_swap's price terms.
        const double refund = swap_refund(ra, rb, priced);
        const double lb = swap_bound(ra, rb) - (refund + 1e-12 * (1.0 + refund));
        if (passes(lb, best)) continue;
      }
      // Per scenario the least and the largest amount that an expert of rb
      // may bring to ra (0 for an empty slot), and the least price change it
      // brings, for a bound on every swap of one expert of ra; per-batch, the
      // busiest rank outside the pool other than the two.
      double dprice_min = kInf;
      if (ra_amt == nullptr) {
        ra_amt = slot_amounts(ra);
        if (per_batch()) {
          // The largest amount of an expert of ra, for PoolPairTerms::floor's spread.
          std::fill(swap_aabs_.begin(), swap_aabs_.end(), 0.0);
          for (int32_t s = 0; s < S_; ++s)
            if (slot_[static_cast<size_t>(ra * S_ + s)] >= 0)
              for (int32_t k = 0; k < K_; ++k)
                swap_aabs_[static_cast<size_t>(k)] =
                    std::max(swap_aabs_[static_cast<size_t>(k)], std::abs(ra_amt[static_cast<size_t>(s * K_ + k)]));
        }
      }
      {
        if (per_batch()) {
          const int32_t pair[2] = {ra, rb};
          for (int32_t k = 0; k < K_; ++k) pair_max_[static_cast<size_t>(k)] = max_excluding(k, pair, 2, out_top_);
          prepare_pool_pair(ra, rb);
        }
        std::fill(swap_bmin_.begin(), swap_bmin_.end(), kInf);
        std::fill(swap_bmax_.begin(), swap_bmax_.end(), -kInf);
        swap_b_rows_ = slot_amounts(rb);
        for (int32_t t = 0; t < S_; ++t) {
          const ExpertId b = slot_[static_cast<size_t>(rb * S_ + t)];
          if (b >= 0 && holds(ra, b)) continue;
          const double* sb = swap_b_rows_ + static_cast<size_t>(t) * static_cast<size_t>(K_);
          for (int32_t k = 0; k < K_; ++k) {
            const double bb = sb[k];
            swap_bmin_[static_cast<size_t>(k)] = std::min(swap_bmin_[static_cast<size_t>(k)], bb);
            swap_bmax_[static_cast<size_t>(k)] = std::max(swap_bmax_[static_cast<size_t>(k)], bb);
          }
          dprice_min = std::min(dprice_min, priced && b >= 0 ? price(ra, b) - price(rb, b) : 0.0);
        }
        if (dprice_min == kInf) continue;  // no slot of rb can take an expert of ra
        if (per_batch())
          for (int32_t k = 0; k < K_; ++k) {
            const size_t kk = static_cast<size_t>(k);
            const double spread = swap_aabs_[kk] + std::max(std::abs(swap_bmin_[kk]), std::abs(swap_bmax_[kk]));
            swap_floor_[kk] = pool_pair_[kk].floor(spread);
          }
        if (!per_batch())
          for (int32_t k = 0; k < K_; ++k) {
            pair_load_[static_cast<size_t>(k)] = load_[at(k, ra)];
            pair_load_[static_cast<size_t>(K_ + k)] = load_[at(k, rb)];
          }
      }
      // With no per-rank limit: the swaps evaluated
      // from what was just prepared (swap_on_pair; per-batch swap_on_pool_pair,
      // for a swap not set aside: the moves set aside are per-batch only).
      const bool on_pair = p_.max_moves_per_rank < 0;
      const bool pool_pair = per_batch();
      for (int32_t s = 0; s < S_; ++s) {
        const int32_t i = ra * S_ + s;
        const ExpertId a = slot_[static_cast<size_t>(i)];
        if (a < 0 || holds(rb, a)) continue;
        {
          // eval_swap's operations with b's amount at its least on ra and
          // at its largest on rb, and the least price change (rounding is
          // monotone: a lower bound on every swap of a with rb).
          const double* pa = ra_amt + static_cast<size_t>(s) * static_cast<size_t>(K_);
          double lbs = 0, lbs_abs = 0;
          for (int32_t k = 0; k < K_; ++k) {
            const double aa = pa[k];
            const double d0 = swap_bmin_[static_cast<size_t>(k)] - aa, d1 = aa - swap_bmax_[static_cast<size_t>(k)];
            double m = pair_max_[static_cast<size_t>(k)];
            if (!per_batch()) {
              m = std::max(m, load_[at(k, ra)] + d0);
              m = std::max(m, load_[at(k, rb)] + d1);
            } else {
              m = pool_pair_[static_cast<size_t>(k)].max_after(d0, d1);  // pool_pair_max(k, ra, d0, rb, d1, m)
              m = std::max(m, swap_floor_[static_cast<size_t>(k)]);
            }
            const double term = m - peak_[static_cast<size_t>(k)];
            lbs += term;
            if (per_batch()) {
              lbs_abs += std::abs(term);
              slot_rest_[static_cast<size_t>(k)] = lbs;
            }
          }
          const double lbv = lbs / K_ + (priced ? (price(rb, a) - price(ra, a)) + dprice_min : 0.0);
          if (passes(lbv, best)) continue;
          if (on_pair && per_batch()) {
            // Per k, the bound's terms after k (its sum less the sum up to
            // k), and the magnitude of all its terms, for the cut of
            // swap_on_pool_pair_cut.
            double* rest = slot_rest_.data();
            for (int32_t k = 0; k < K_; ++k) rest[k] = lbs - rest[k];
            rest[K_] = lbs_abs;
          }
        }
        const double* pa_row = ra_amt + static_cast<size_t>(s) * static_cast<size_t>(K_);
        const SwapFrom from = on_pair ? swap_from_at(pa_row, 1, i, rb, priced) : SwapFrom{nullptr, 0, 0.0};
        for (int32_t t = 0; t < S_; ++t) {
          const int32_t j = rb * S_ + t;
          const ExpertId b = slot_[static_cast<size_t>(j)];
          if (b >= 0 && holds(ra, b)) continue;
          if (on_pair && !set_aside({0, 0, i, j, kEmptySlot})) {
            if (pool_pair) {
              // Cut at the runner-up: offer() passes over a value at or above it.
              const double d = swap_on_pool_pair_cut(from, i, j, priced, slot_rest_.data(), second_.delta);
              offer(Move{d, 0, i, j, kEmptySlot}, best);
            } else {
              // Static shares set no move aside: no runner-up kept.
              const double d = swap_on_pair(from, i, j, priced);
              if (d < best.delta) best = Move{d, 0, i, j, kEmptySlot};
            }
            continue;
          }
          consider({0, 0, i, j, kEmptySlot}, best, priced);
        }
      }
    }
    // Per-batch: per partner rank, a lower bound on every give-a-replica
    // move below of an expert of ra to it (split_replace_bound's operations
    // with the largest pool amount of those experts, which lowers the level
    // no less, and the least price), so that a partner none of them can use
    // is skipped without a bound per expert.
    if (per_batch()) {
      std::fill(group_pool_.begin(), group_pool_.end(), 0.0);
      bool any = false;
      for (int32_t s = 0; s < S_; ++s) {
        const ExpertId xe = slot_[static_cast<size_t>(ra * S_ + s)];
        if (xe < 0 || cnt_[static_cast<size_t>(xe)] >= p_.cap) continue;
        any = true;
        prepare_split_expert(xe);
        for (int32_t k = 0; k < K_; ++k)
          group_pool_[static_cast<size_t>(k)] =
              std::max(group_pool_[static_cast<size_t>(k)], pool_amount_[static_cast<size_t>(xe) * static_cast<size_t>(K_) + static_cast<size_t>(k)]);
      }
      group_bound_.assign(partners.size(), kInf);
      group_refund_.assign(partners.size(), 0.0);
      for (size_t pi = 0; pi < partners.size() && any; ++pi) {
        const int32_t rj = partners[pi];
        double refund = 0, least = kInf;
        if (priced) {
          for (int32_t t = 0; t < S_; ++t) {
            const ExpertId y = slot_[static_cast<size_t>(rj * S_ + t)];
            refund = std::max(refund, y >= 0 ? price(rj, y) : 0.0);
          }
          group_refund_[pi] = refund;
          for (int32_t s = 0; s < S_; ++s) {
            const ExpertId xe = slot_[static_cast<size_t>(ra * S_ + s)];
            if (xe >= 0 && cnt_[static_cast<size_t>(xe)] < p_.cap) least = std::min(least, price(rj, xe));
          }
        }
        // A partner prepared in this scan whose slots' floor no expert of ra
        // can get below the runner-up with: no bound needed (kInf).
        if (on_pool_rank && y_ready_.has(rj) &&
            y_rank_floor_[static_cast<size_t>(rj)] + (priced ? least - y_rank_refund_[static_cast<size_t>(rj)] : 0.0) >=
                second_.delta)
          continue;
        prepare_split_rank(rj);
        group_bound_[pi] = split_replace_bound_at(rj, group_pool_.data()) + (priced ? least - refund : 0.0);
      }
    }
    for (int32_t s = 0; s < S_; ++s) {
      const int32_t i = ra * S_ + s;
      const ExpertId xe = slot_[static_cast<size_t>(i)];
      // An expert of ra gets another replica elsewhere.
      if (xe >= 0 && cnt_[static_cast<size_t>(xe)] < p_.cap) {
        // Static shares: x's bound, and the ranks for which replace_bound is
        // not bound_of's sum (some scenario's busiest rank outside x's).
        const ReplaceBound* xb = nullptr;
        if (!per_batch()) {
          bound_of(xe);
          xb = prepared_bound(xe);
          for (int32_t k = 0; k < K_; ++k)
            if (xb[k].first_rank >= 0) first_of_[static_cast<size_t>(xb[k].first_rank)] = 1;
        }
        for (size_t pi = 0; pi < partners.size(); ++pi) {
          const int32_t rj = partners[pi];
          if (holds(rj, xe)) continue;
          if (!per_batch()) {
            // Whatever slot of rj x takes, F is at least replace_bound's (the
            // expert it replaces only adds load to ranks F already counts), and
            // the price at least x's on rj less the dearest expert rj gives up.
            double refund = 0;
            if (priced)
              for (int32_t t = 0; t < S_; ++t) {
                const ExpertId y = slot_[static_cast<size_t>(rj * S_ + t)];
                refund = std::max(refund, y >= 0 ? price(rj, y) : 0.0);
              }
            const double bound =
                first_of_[static_cast<size_t>(rj)] ? replace_bound(xe, rj) : bound_sum_[static_cast<size_t>(xe)] / K_;
            const double lb = bound + (priced ? price(rj, xe) - refund : 0.0);
            if (lb >= best.delta) continue;
          } else {
            // The same with the per-batch split (split_replace_bound).
            // With rj's slots prepared (pool_replace_on_rank): their least
            // floor less the dearest price given up, at or above the
            // runner-up, passes x over for rj (never offered); checked
            // before the group bound when rj was prepared earlier in this
            // scan, else after it, once rj is prepared.
            auto below_floor = [&] {
              const double dcost = priced ? price(rj, xe) - y_rank_refund_[static_cast<size_t>(rj)] : 0.0;
              return y_rank_floor_[static_cast<size_t>(rj)] + dcost >= second_.delta;
            };
            const bool ready = on_pool_rank && y_ready_.has(rj);
            if (ready && below_floor()) continue;
            if (passes(group_bound_[pi], best)) continue;
            if (on_pool_rank && !ready) {
              prepare_pool_replace_rank(rj);
              if (below_floor()) continue;
            }
            const double refund = group_refund_[pi];  // computed as above, per partner
            const double lb = split_replace_bound(xe, rj) + (priced ? price(rj, xe) - refund : 0.0);
            if (passes(lb, best)) continue;
          }
          if (on_rank) prepare_replace_rank(rj);
          if (on_pool_rank) prepare_pool_replace_rank(rj);  // x's pool amounts: split_replace_bound above
          for (int32_t t = 0; t < S_; ++t) {
            const int32_t j = rj * S_ + t;
            const ExpertId y = slot_[static_cast<size_t>(j)];
            if (y >= 0 && cnt_[static_cast<size_t>(y)] < 2) continue;
            if (on_pool_rank && !set_aside({0, 1, -1, j, xe})) {
              // pool_replace_on_rank's price change, with the slot's floor.
              const double dcost = priced ? price(rj, xe) - (y >= 0 ? price(rj, y) : 0.0) : 0.0;
              if (y_floor_[static_cast<size_t>(j)] + dcost >= second_.delta) continue;
              const double d = pool_replace_on_rank(j, xe, priced);
              offer(Move{d, 1, -1, j, xe}, best);
              continue;
            }
            if (on_rank) {
              const double d = replace_on_rank(j, xe, priced);
              if (!std::isnan(d)) {
                if (d < best.delta) best = Move{d, 1, -1, j, xe};
                continue;
              }
            }
            consider({0, 1, -1, j, xe}, best, priced);
          }
        }
        if (xb != nullptr)
          for (int32_t k = 0; k < K_; ++k)
            if (xb[k].first_rank >= 0) first_of_[static_cast<size_t>(xb[k].first_rank)] = 0;
      }
      // A spare replica on ra goes to a heavy expert, or is dropped.
      if (xe >= 0 && cnt_[static_cast<size_t>(xe)] >= 2) {
        for (ExpertId x2 : takers)
          if (x2 != xe && !holds(ra, x2) && cnt_[static_cast<size_t>(x2)] < p_.cap) {
            if (!per_batch()) {
              bound_of(x2);  // shared by the evaluations of x2 in this scan
              // replace_bound is a lower bound on x2 taking any slot of ra
              // (see the partners above); the price change is exactly eval_replace's.
              if (replace_bound(x2, ra) + (priced ? price(ra, x2) - price(ra, xe) : 0.0) >= best.delta) continue;
              if (on_rank) {
                prepare_replace_rank(ra);
                const double d = replace_on_rank(i, x2, priced);
                if (!std::isnan(d)) {
                  if (d < best.delta) best = Move{d, 1, -1, i, x2};
                  continue;
                }
              }
            } else {
              if (on_pool_rank) {
                // The slot's floor and the exact price change (never offered
                // at or above the runner-up).
                prepare_pool_replace_rank(ra);
                const double dcost = priced ? price(ra, x2) - price(ra, xe) : 0.0;
                if (y_floor_[static_cast<size_t>(i)] + dcost >= second_.delta) continue;
              }
              // split_replace_bound holds for every slot of ra, xe's included.
              double refund = 0;
              if (priced)
                for (int32_t t = 0; t < S_; ++t) {
                  const ExpertId y = slot_[static_cast<size_t>(ra * S_ + t)];
                  refund = std::max(refund, y >= 0 ? price(ra, y) : 0.0);
                }
              const double lb = split_replace_bound(x2, ra) + (priced ? price(ra, x2) - refund : 0.0);
              if (passes(lb, best)) continue;
              if (on_pool_rank && !set_aside({0, 1, -1, i, x2})) {
                prepare_pool_replace_rank(ra);  // x2's pool amounts: split_replace_bound just now
                const double d = pool_replace_on_rank(i, x2, priced);
                offer(Move{d, 1, -1, i, x2}, best);
                continue;
              }
            }
            consider({0, 1, -1, i, x2}, best, priced);
          }
        consider({0, 1, -1, i, kEmptySlot}, best, priced);
      }
    }
  }
  // The loads change with the next move: the prepared bounds are forgotten.
  bound_ready_.forget();
  rank_ready_.forget();
  y_ready_.forget();
  amt_ready_.forget();
}

void IntervalSearch::scan_reverts(Move& best) {
  if (p_.prices == nullptr || p_.reference.empty()) return;
  for (int32_t i = 0; i < static_cast<int32_t>(slot_.size()); ++i) scan_reverts_of(i, best);
}

bool IntervalSearch::cool(int32_t r) {
  const auto ur = static_cast<size_t>(r);
  if (!cool_ready_.claim(r)) return cool_[ur] != 0;
  cool_[ur] = 0;
  for (int32_t k = 0; k < K_; ++k)
    if (per_batch() ? in_pool_[at(k, r)] != 0 : top_[static_cast<size_t>(k) * 3] == r) return false;
  cool_[ur] = 1;
  return true;
}

void IntervalSearch::scan_reverts_of(int32_t i, Move& best) {
  const auto& ref = p_.reference;
  const ExpertId a = slot_[static_cast<size_t>(i)];
  const int32_t ra = i / S_;
  if (a < 0 || !received(ra, a)) return;
  // A move whose ranks that lose load are all cool (in no scenario's pool,
  // per-batch; no scenario's busiest rank, static shares), and, giving a
  // slot to x, whose x's ranks are cool too (per-batch: no bridge to the
  // pool; static shares: they lose load), leaves every scenario's busiest
  // level (the peak, or the pool's level) where it is or raises it: each
  // scenario's term of its F change is >= 0 (rounding is monotone), so its
  // change is at least its price change, found by the same operations as
  // the evaluation's. Such a move is passed over by that bound (passes()).
  const bool ra_cool = cool(ra);
  auto x_cool = [&](ExpertId x) {
    for (int32_t q : ranks_[static_cast<size_t>(x)])
      if (!cool(q)) return false;
    return true;
  };
  // a goes back to a rank that held it, in exchange for any slot there
  // (with no per-rank limit, a swap not set aside: evaluated by swap_on_pair,
  // per-batch swap_on_pool_pair, the same value as eval_swap's).
  const bool on_pair = p_.max_moves_per_rank < 0;
  const bool pool_pair = per_batch();
  // The ranks that held a: those holding it in the reference (the prices' placement).
  if (!ref_ready_) list_reference_ranks();
  const int32_t* held_by = ref_ranks_.data();
  for (int32_t h = ref_start_[static_cast<size_t>(a)]; h < ref_end_[static_cast<size_t>(a)]; ++h) {
    const int32_t rb = held_by[h];
    if (rb == ra || !p_.prices->held(rb, a) || holds(rb, a)) continue;
    const bool off = ra_cool && cool(rb);
    bool prepared = false;  // prepare_pair(ra, rb), at the first swap evaluated
    const SwapFrom from = on_pair ? swap_from(i, rb, true) : SwapFrom{nullptr, 0, 0.0};
    for (int32_t t = 0; t < S_; ++t) {
      const int32_t j = rb * S_ + t;
      const ExpertId b = slot_[static_cast<size_t>(j)];
      if (b >= 0 && holds(ra, b)) continue;
      if (off && passes(swap_price(ra, rb, a, b), best)) continue;
      if (on_pair && !set_aside({0, 0, i, j, kEmptySlot})) {
        if (!prepared) prepare_pair(ra, rb);
        prepared = true;
        const double d = pool_pair ? swap_on_pool_pair(from, i, j, true) : swap_on_pair(from, i, j, true);
        offer(Move{d, 0, i, j, kEmptySlot}, best);
        continue;
      }
      consider({0, 0, i, j, kEmptySlot}, best, true);
    }
  }
  // An expert that ra held comes back into a's slot: by a swap with one of
  // its replicas, or (a has another replica) as a new replica.
  // Per-batch, x given a's slot with no bridge to a pool (no_bridge) changes
  // F as dropping a's replica there does, bit for bit (the same touched
  // ranks, the same operations but for ra's load after the move, which
  // eval_replace leaves out of `outside` when negative and is at most the
  // level either way); with the same price change (x held there: price 0),
  // the two changes are the same: found once (drop_delta).
  double drop_delta = 0;
  bool drop_known = false;
  for (int32_t s = 0; s < S_; ++s) {
    const size_t g = static_cast<size_t>(ra * S_ + s);
    const ExpertId b = g < ref.size() ? ref[g] : kEmptySlot;
    if (b < 0 || holds(ra, b)) continue;
    for (int32_t rb : ranks_[static_cast<size_t>(b)]) {
      if (holds(rb, a)) continue;
      // A rank that held a (the prices are the reference's: the ranks the
      // first loop walked): the swap was offered above (offer() of the same
      // move again changes nothing: it is best, or its change is not below
      // the runner-up's).
      if (p_.prices->held(rb, a)) continue;
      const bool off = ra_cool && cool(rb);
      for (int32_t t = 0; t < S_; ++t) {
        const int32_t j = rb * S_ + t;
        if (slot_[static_cast<size_t>(j)] != b) continue;
        if (off && passes(swap_price(ra, rb, a, b), best)) continue;
        consider({0, 0, i, j, kEmptySlot}, best, true);
      }
    }
    if (cnt_[static_cast<size_t>(a)] >= 2 && cnt_[static_cast<size_t>(b)] < p_.cap) {
      const double dcost = price(ra, b) - price(ra, a);  // eval_replace's price change
      const bool all_cool = ra_cool && x_cool(b);
      if (all_cool && passes(dcost, best)) continue;
      const Move m{0, 1, -1, i, b};
      if (set_aside(m)) continue;  // as consider()
      // (All cool: no pool holds ra or b, so no bridge.)
      const bool like_drop = per_batch() && dcost == 0.0 - price(ra, a) && (all_cool || no_bridge(ra, b));
      const double d = like_drop && drop_known ? drop_delta : eval_replace(i, b, true);
      if (like_drop) {
        drop_delta = d;
        drop_known = true;
      }
      offer(Move{d, 1, -1, i, b}, best);
    }
  }
  // A spare replica that was moved in is dropped (its slot stays empty).
  if (cnt_[static_cast<size_t>(a)] >= 2) {
    if (ra_cool && passes(0.0 - price(ra, a), best)) return;
    const Move m{0, 1, -1, i, kEmptySlot};
    if (set_aside(m)) return;  // as consider()
    offer(Move{drop_known ? drop_delta : eval_replace(i, kEmptySlot, true), 1, -1, i, kEmptySlot}, best);
  }
}

bool IntervalSearch::no_bridge(int32_t ra, ExpertId x) const {
  for (int32_t k = 0; k < K_; ++k) {
    if (in_pool_[at(k, ra)]) continue;
    for (int32_t q : ranks_[static_cast<size_t>(x)])
      if (in_pool_[at(k, q)]) return false;
  }
  return true;
}

}  // namespace omni::detail
