// IntervalSearch: priced local search on the expected busiest rank of the
// next interval (see interval_search.h).
#include "interval_search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "omniplacement/core/status.h"

namespace omni::detail {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Busiest ranks of a scenario's pool tried as move sources (per-batch).
constexpr int32_t kPoolSources = 3;
// Experts offered a spare replica of a busiest rank: the heaviest per replica.
constexpr int32_t kReplicaTakers = 8;
// Passes of prune() over the slots that received an expert.
constexpr int32_t kPrunePasses = 3;
// Ranks a busiest rank trades with: the least loaded ones.
constexpr int32_t kPartners = 16;
// Replicas fill_empty() tries on the per-batch split per empty slot.
constexpr size_t kFillTries = 4;

}  // namespace

IntervalSearch::IntervalSearch(const IntervalProblem& problem)
    : p_(problem),
      R_(problem.num_ranks),
      S_(problem.slots_per_rank),
      E_(problem.num_experts),
      K_(static_cast<int32_t>(problem.scenarios->size())),
      balancer_(*BatchBalancer<double>::create(problem.num_ranks, problem.num_experts)) {
  if (p_.max_steps <= 0) p_.max_steps = std::max<int64_t>(16, R_);
  noise_gain_ = p_.prices != nullptr ? 0.5 * p_.prices->min_price() : 0.0;
  total_.assign(static_cast<size_t>(E_), 0.0);
  for (ExpertId e = 0; e < E_; ++e)
    for (int32_t k = 0; k < K_; ++k) total_[static_cast<size_t>(e)] += x(k, e);
}

void IntervalSearch::put(int32_t g, ExpertId e) {
  const int32_t r = g / S_;
  slot_[static_cast<size_t>(g)] = e;
  ++cnt_[static_cast<size_t>(e)];
  has_[static_cast<size_t>(r) * static_cast<size_t>(E_) + static_cast<size_t>(e)] = 1;
  ranks_[static_cast<size_t>(e)].push_back(r);
  if (received(r, e)) ++received_[static_cast<size_t>(r)];
  cost_ += price(r, e);
}

void IntervalSearch::take(int32_t g) {
  const int32_t r = g / S_;
  const ExpertId e = slot_[static_cast<size_t>(g)];
  slot_[static_cast<size_t>(g)] = kEmptySlot;
  --cnt_[static_cast<size_t>(e)];
  has_[static_cast<size_t>(r) * static_cast<size_t>(E_) + static_cast<size_t>(e)] = 0;
  auto& rs = ranks_[static_cast<size_t>(e)];
  rs.erase(std::find(rs.begin(), rs.end(), r));
  if (received(r, e)) --received_[static_cast<size_t>(r)];
  cost_ -= price(r, e);
}

void IntervalSearch::even_amounts(ExpertId e) {
  const auto& rs = ranks_[static_cast<size_t>(e)];
  auto& a = amt_[static_cast<size_t>(e)];
  a.assign(static_cast<size_t>(K_) * rs.size(), 0.0);
  if (rs.empty()) return;
  const double c = static_cast<double>(rs.size());
  for (int32_t k = 0; k < K_; ++k)
    for (size_t i = 0; i < rs.size(); ++i) a[static_cast<size_t>(k) * rs.size() + i] = x(k, e) / c;
}

// The runtime's per-batch split (dispatch_mode.h, kPerBatch) of every
// scenario, in doubles: the one water-fill the runtime and the simulator run
// (BatchBalancer, dispatch/batch_balancer.h).
void IntervalSearch::split() {
  const Status placed = balancer_.set_slots(slot_, S_);
  OMNI_CHECK_MSG(placed.ok(), "omni: the search's slots are not a valid layer");
  // Where each replica (in ranks_ order) sits among the balancer's replica
  // ranks (ascending): the same for every scenario.
  // An expert with one replica serves its whole load there (the split's
  // amount is its total); the others are read from the split, every
  // scenario.
  split_index_.clear();
  split_experts_.clear();
  for (ExpertId e = 0; e < E_; ++e) {
    const auto& rs = ranks_[static_cast<size_t>(e)];
    auto& a = amt_[static_cast<size_t>(e)];
    a.resize(static_cast<size_t>(K_) * rs.size());
    if (rs.size() == 1)
      for (int32_t k = 0; k < K_; ++k) a[static_cast<size_t>(k)] = x(k, e);
    if (rs.size() < 2) continue;
    split_experts_.push_back(e);
    const auto their = balancer_.replica_ranks(e);
    for (size_t i = 0; i < rs.size(); ++i)
      split_index_.push_back(static_cast<int32_t>(std::lower_bound(their.begin(), their.end(), rs[i]) - their.begin()));
  }
  for (int32_t k = 0; k < K_; ++k) {
    const Status split = balancer_.balance((*p_.scenarios)[static_cast<size_t>(k)]);
    OMNI_CHECK_MSG(split.ok(), "omni: a scenario load out of the split's range");
    const auto loads = balancer_.rank_loads();
    std::copy(loads.begin(), loads.end(), load_.begin() + static_cast<std::ptrdiff_t>(at(k, 0)));
    const int32_t* idx = split_index_.data();
    for (ExpertId e : split_experts_) {
      const size_t n = ranks_[static_cast<size_t>(e)].size();
      const auto amounts = balancer_.amounts(e);
      double* a = &amt_[static_cast<size_t>(e)][static_cast<size_t>(k) * n];
      for (size_t i = 0; i < n; ++i) a[i] = amounts[static_cast<size_t>(idx[i])];
      idx += n;
    }
  }
}

void IntervalSearch::evaluate() {
  if (per_batch()) {
    split();
  } else {
    std::fill(load_.begin(), load_.end(), 0.0);
    for (ExpertId e = 0; e < E_; ++e) {
      even_amounts(e);
      const auto& rs = ranks_[static_cast<size_t>(e)];
      const auto& a = amt_[static_cast<size_t>(e)];
      for (int32_t k = 0; k < K_; ++k)
        for (size_t i = 0; i < rs.size(); ++i) load_[at(k, rs[i])] += a[static_cast<size_t>(k) * rs.size() + i];
    }
  }
  summarize();
}

namespace {

// The three largest of l[0..n) not flagged in `skip` (may be null), as
// indices (-1 where fewer), ties to the lower index.
// The three loads found so far are kept beside their indices (-inf where
// none yet: every load is finite, so the first three always enter).
void top3(const double* l, int32_t n, const char* skip, int32_t* t) {
  int32_t t0 = -1, t1 = -1, t2 = -1;
  double v0 = -kInf, v1 = -kInf, v2 = -kInf;
  for (int32_t r = 0; r < n; ++r) {
    if (skip != nullptr && skip[r]) continue;
    const double v = l[r];
    if (v > v2) {
      if (v > v0) {
        t2 = t1, v2 = v1;
        t1 = t0, v1 = v0;
        t0 = r, v0 = v;
      } else if (v > v1) {
        t2 = t1, v2 = v1;
        t1 = r, v1 = v;
      } else {
        t2 = r, v2 = v;
      }
    }
  }
  t[0] = t0;
  t[1] = t1;
  t[2] = t2;
}

}  // namespace

void IntervalSearch::summarize() {
  f_ = 0;
  for (int32_t k = 0; k < K_; ++k) {
    const double* l = &load_[at(k, 0)];
    top3(l, R_, nullptr, &top_[static_cast<size_t>(k) * 3]);
    const double peak = l[top_[static_cast<size_t>(k) * 3]];
    peak_[static_cast<size_t>(k)] = peak;
    f_ += peak;
    if (per_batch()) {
      char* pool = &in_pool_[at(k, 0)];
      int32_t n = 0;
      for (int32_t r = 0; r < R_; ++r) {
        pool[r] = l[r] >= peak - 1e-7 * (1.0 + peak) ? 1 : 0;
        n += pool[r];
      }
      pool_size_[static_cast<size_t>(k)] = n;
      top3(l, R_, pool, &out_top_[static_cast<size_t>(k) * 3]);
    }
  }
  f_ /= K_;
}

namespace {

bool excluded_rank(int32_t r, const int32_t* ranks, int32_t n) {
  for (int32_t i = 0; i < n; ++i)
    if (ranks[i] == r) return true;
  return false;
}

}  // namespace

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

double IntervalSearch::max_excluding_scan(int32_t k, const int32_t* ranks, int32_t n,
                                          const std::vector<int32_t>& top) const {
  const char* pool = per_batch() && &top == &out_top_ ? &in_pool_[at(k, 0)] : nullptr;
  double m = 0;  // every one of the three busiest is touched: scan
  for (int32_t r = 0; r < R_; ++r)
    if (!excluded_rank(r, ranks, n) && (pool == nullptr || !pool[r])) m = std::max(m, load_[at(k, r)]);
  return m;
}

void IntervalSearch::start_from(std::span<const ExpertId> slots) {
  const size_t G = static_cast<size_t>(R_) * static_cast<size_t>(S_);
  slot_.assign(G, kEmptySlot);
  cnt_.assign(static_cast<size_t>(E_), 0);
  has_.assign(static_cast<size_t>(R_) * static_cast<size_t>(E_), 0);
  // Emptied, not freed: their storage serves the next start.
  ranks_.resize(static_cast<size_t>(E_));
  amt_.resize(static_cast<size_t>(E_));
  for (auto& rs : ranks_) rs.clear();
  for (auto& a : amt_) a.clear();
  received_.assign(static_cast<size_t>(R_), 0);
  load_.assign(static_cast<size_t>(K_) * static_cast<size_t>(R_), 0.0);
  peak_.assign(static_cast<size_t>(K_), 0.0);
  top_.assign(static_cast<size_t>(K_) * 3, -1);
  in_pool_.assign(static_cast<size_t>(K_) * static_cast<size_t>(R_), 0);
  pool_size_.assign(static_cast<size_t>(K_), 0);
  out_top_.assign(static_cast<size_t>(K_) * 3, -1);
  pair_max_.resize(static_cast<size_t>(K_));
  swap_bmin_.resize(static_cast<size_t>(K_));
  swap_bmax_.resize(static_cast<size_t>(K_));
  bound_.resize(static_cast<size_t>(E_) * static_cast<size_t>(K_));
  bound_ready_.assign(static_cast<size_t>(E_), 0);
  bound_prepared_.clear();
  bound_sum_.resize(static_cast<size_t>(E_));
  rank_amax_.resize(static_cast<size_t>(R_) * static_cast<size_t>(K_));
  rank_out_.resize(static_cast<size_t>(R_) * static_cast<size_t>(K_));
  rank_ready_.assign(static_cast<size_t>(R_), 0);
  first_of_.assign(static_cast<size_t>(R_), 0);
  touched_mark_.assign(static_cast<size_t>(R_), 0);
  ranks_prepared_.clear();
  pool_amount_.resize(static_cast<size_t>(E_) * static_cast<size_t>(K_));
  cost_ = 0;
  for (size_t g = 0; g < G && g < slots.size(); ++g) {
    const ExpertId e = slots[g];
    // A second replica of an expert on one rank serves nothing: its slot starts empty.
    if (e >= 0 && e < E_ && !holds(static_cast<int32_t>(g) / S_, e)) put(static_cast<int32_t>(g), e);
  }
  add_missing();
  evaluate();
}

void IntervalSearch::add_missing() {
  std::vector<double> mean(static_cast<size_t>(E_), 0.0);
  for (ExpertId e = 0; e < E_; ++e) mean[static_cast<size_t>(e)] = total_[static_cast<size_t>(e)] / K_;
  std::vector<ExpertId> missing;
  for (ExpertId e = 0; e < E_; ++e)
    if (cnt_[static_cast<size_t>(e)] == 0) missing.push_back(e);
  std::stable_sort(missing.begin(), missing.end(),
                   [&](ExpertId a, ExpertId b) { return mean[static_cast<size_t>(a)] > mean[static_cast<size_t>(b)]; });
  std::vector<double> rank(static_cast<size_t>(R_));
  for (ExpertId e : missing) {
    std::fill(rank.begin(), rank.end(), 0.0);
    for (size_t g = 0; g < slot_.size(); ++g) {
      const ExpertId y = slot_[g];
      if (y >= 0) rank[g / static_cast<size_t>(S_)] += mean[static_cast<size_t>(y)] / cnt_[static_cast<size_t>(y)];
    }
    int32_t best = -1;
    double best_key = kInf;
    for (int32_t g = 0; g < static_cast<int32_t>(slot_.size()); ++g) {
      const int32_t r = g / S_;
      const ExpertId y = slot_[static_cast<size_t>(g)];
      if (holds(r, e) || (y >= 0 && cnt_[static_cast<size_t>(y)] < 2)) continue;
      const double key =
          rank[static_cast<size_t>(r)] - (y >= 0 ? mean[static_cast<size_t>(y)] / cnt_[static_cast<size_t>(y)] : 0.0) +
          mean[static_cast<size_t>(e)];
      if (key < best_key) {
        best_key = key;
        best = g;
      }
    }
    OMNI_CHECK_MSG(best >= 0, "omni: no slot for a missing expert (more experts than slots)");
    if (slot_[static_cast<size_t>(best)] >= 0) take(best);
    put(best, e);
  }
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
  double dcost = 0;
  if (priced) {
    if (a >= 0) dcost += price(rb, a) - price(ra, a);
    if (b >= 0) dcost += price(ra, b) - price(rb, b);
  }
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
      const char* pool = &in_pool_[at(k, 0)];
      const double n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
      double level = peak_[static_cast<size_t>(k)];
      double outside = max_excluding(k, pair, 2, out_top_);
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
      m = std::max(level, outside);
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
  const auto TB = static_cast<int32_t>(touched_.size());
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k) {
    const char* pool = &in_pool_[at(k, 0)];
    const double n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
    double level = peak_[static_cast<size_t>(k)];
    double outside = max_excluding(k, touched_.data(), TB, out_top_);
    double bridge_load = -1;
    auto visit = [&](int32_t r, double d) {
      if (pool[r]) {
        level += d / n;
      } else if (r == bridge_rank) {
        bridge_load = load_[at(k, r)] + d;
      } else {
        outside = std::max(outside, load_[at(k, r)] + d);
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
    if (bridge_load >= 0) {
      // A new replica of an expert with load in the pool links this rank to
      // it: the pool spreads onto the rank as far as that expert's load allows.
      double in_pool = 0;
      const auto& rs = ranks_[static_cast<size_t>(bridge_expert)];
      for (size_t i = 0; i < rs.size(); ++i)
        if (pool[rs[i]]) in_pool += amt_[static_cast<size_t>(bridge_expert)][static_cast<size_t>(k) * rs.size() + i];
      if (in_pool > 0 && bridge_load < level) {
        const double merged = (n * level + bridge_load) / (n + 1);
        level = std::max(merged, level - in_pool / n);
      } else {
        outside = std::max(outside, bridge_load);
      }
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
  if (bound_ready_[static_cast<size_t>(xe)]) return;
  bound_ready_[static_cast<size_t>(xe)] = 1;
  bound_prepared_.push_back(xe);
  const auto& rx = ranks_[static_cast<size_t>(xe)];
  const double cx = static_cast<double>(rx.size());
  auto in_rx = [&](int32_t r) { return std::find(rx.begin(), rx.end(), r) != rx.end(); };
  for (int32_t k = 0; k < K_; ++k) {
    ReplaceBound& b = bound_[static_cast<size_t>(xe) * static_cast<size_t>(K_) + static_cast<size_t>(k)];
    const double xk = x(k, xe);
    const double d = 0.0 - (xk / cx - xk / (cx + 1));
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
  const size_t K = static_cast<size_t>(K_);
  if (!rank_ready_[static_cast<size_t>(rj)]) {
    rank_ready_[static_cast<size_t>(rj)] = 1;
    ranks_prepared_.push_back(rj);
    for (int32_t k = 0; k < K_; ++k) {
      double amax = 0.0;
      for (int32_t t = 0; t < S_; ++t) {
        const ExpertId y = slot_[static_cast<size_t>(rj * S_ + t)];
        const double* py = y >= 0 ? replica_amounts(y, rj) : nullptr;
        if (py != nullptr) amax = std::max(amax, py[static_cast<size_t>(k) * ranks_[static_cast<size_t>(y)].size()]);
      }
      rank_amax_[static_cast<size_t>(rj) * K + static_cast<size_t>(k)] = amax;
      rank_out_[static_cast<size_t>(rj) * K + static_cast<size_t>(k)] = max_excluding(k, &rj, 1, out_top_);
    }
  }
  if (!bound_ready_[static_cast<size_t>(xe)]) {
    bound_ready_[static_cast<size_t>(xe)] = 1;
    bound_prepared_.push_back(xe);
    const auto& rs = ranks_[static_cast<size_t>(xe)];
    for (int32_t k = 0; k < K_; ++k) {
      const char* pool = &in_pool_[at(k, 0)];
      double in_pool = 0;  // as eval_replace sums it
      for (size_t i = 0; i < rs.size(); ++i)
        if (pool[rs[i]]) in_pool += amt_[static_cast<size_t>(xe)][static_cast<size_t>(k) * rs.size() + i];
      pool_amount_[static_cast<size_t>(xe) * K + static_cast<size_t>(k)] = in_pool;
    }
  }
  double sum = 0;
  for (int32_t k = 0; k < K_; ++k) {
    const double p = peak_[static_cast<size_t>(k)];
    const double n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
    const double amax = rank_amax_[static_cast<size_t>(rj) * K + static_cast<size_t>(k)];
    double level = p;
    if (in_pool_[at(k, rj)]) {
      level += (0.0 - amax) / n;
    } else {
      const double in_pool = pool_amount_[static_cast<size_t>(xe) * K + static_cast<size_t>(k)];
      if (in_pool > 0) {
        const double bridge = std::max(load_[at(k, rj)] + (0.0 - amax), 0.0);
        const double merged = (n * p + bridge) / (n + 1);
        level = std::min(p, std::max(merged, p - in_pool / n));
      }
    }
    sum += std::max(level, rank_out_[static_cast<size_t>(rj) * K + static_cast<size_t>(k)]) - p;
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
  const double d = m.kind == 0 ? eval_swap(m.i, m.j, priced) : eval_replace(m.j, m.x, priced);
  if (d < best.delta) {
    m.delta = d;
    best = m;
  }
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

  for (int32_t ra : hot) {
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
        if (swap_bound(ra, rb) - (refund + 1e-12 * (1.0 + refund)) >= best.delta) continue;
      }
      // Per scenario the least and the largest amount that an expert of rb
      // may bring to ra (0 for an empty slot), and the least price change it
      // brings, for a bound on every swap of one expert of ra; per-batch, the
      // busiest rank outside the pool other than the two.
      double dprice_min = kInf;
      {
        if (per_batch()) {
          const int32_t pair[2] = {ra, rb};
          for (int32_t k = 0; k < K_; ++k) pair_max_[static_cast<size_t>(k)] = max_excluding(k, pair, 2, out_top_);
        }
        std::fill(swap_bmin_.begin(), swap_bmin_.end(), kInf);
        std::fill(swap_bmax_.begin(), swap_bmax_.end(), -kInf);
        for (int32_t t = 0; t < S_; ++t) {
          const ExpertId b = slot_[static_cast<size_t>(rb * S_ + t)];
          if (b >= 0 && holds(ra, b)) continue;
          const double* pb = b >= 0 ? replica_amounts(b, rb) : nullptr;
          const size_t nb = b >= 0 ? ranks_[static_cast<size_t>(b)].size() : 0;
          for (int32_t k = 0; k < K_; ++k) {
            const double bb = pb != nullptr ? pb[static_cast<size_t>(k) * nb] : 0.0;
            swap_bmin_[static_cast<size_t>(k)] = std::min(swap_bmin_[static_cast<size_t>(k)], bb);
            swap_bmax_[static_cast<size_t>(k)] = std::max(swap_bmax_[static_cast<size_t>(k)], bb);
          }
          dprice_min = std::min(dprice_min, priced && b >= 0 ? price(ra, b) - price(rb, b) : 0.0);
        }
        if (dprice_min == kInf) continue;  // no slot of rb can take an expert of ra
      }
      for (int32_t s = 0; s < S_; ++s) {
        const int32_t i = ra * S_ + s;
        const ExpertId a = slot_[static_cast<size_t>(i)];
        if (a < 0 || holds(rb, a)) continue;
        {
          // eval_swap's operations with b's amount at its least on ra and
          // at its largest on rb, and the least price change (rounding is
          // monotone: a lower bound on every swap of a with rb).
          const double* pa = replica_amounts(a, ra);
          const size_t na = ranks_[static_cast<size_t>(a)].size();
          double lbs = 0;
          for (int32_t k = 0; k < K_; ++k) {
            const double aa = pa[static_cast<size_t>(k) * na];
            const double d0 = swap_bmin_[static_cast<size_t>(k)] - aa, d1 = aa - swap_bmax_[static_cast<size_t>(k)];
            double m = pair_max_[static_cast<size_t>(k)];
            if (!per_batch()) {
              m = std::max(m, load_[at(k, ra)] + d0);
              m = std::max(m, load_[at(k, rb)] + d1);
            } else {
              const char* pool = &in_pool_[at(k, 0)];
              const double n = static_cast<double>(pool_size_[static_cast<size_t>(k)]);
              double level = peak_[static_cast<size_t>(k)];
              if (pool[ra]) {
                level += d0 / n;
              } else {
                m = std::max(m, load_[at(k, ra)] + d0);
              }
              if (pool[rb]) {
                level += d1 / n;
              } else {
                m = std::max(m, load_[at(k, rb)] + d1);
              }
              m = std::max(level, m);
            }
            lbs += m - peak_[static_cast<size_t>(k)];
          }
          const double lbv = lbs / K_ + (priced ? (price(rb, a) - price(ra, a)) + dprice_min : 0.0);
          if (lbv >= best.delta) continue;
        }
        for (int32_t t = 0; t < S_; ++t) {
          const int32_t j = rb * S_ + t;
          const ExpertId b = slot_[static_cast<size_t>(j)];
          if (b >= 0 && holds(ra, b)) continue;
          consider({0, 0, i, j, kEmptySlot}, best, priced);
        }
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
        for (int32_t rj : partners) {
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
            double refund = 0;
            if (priced)
              for (int32_t t = 0; t < S_; ++t) {
                const ExpertId y = slot_[static_cast<size_t>(rj * S_ + t)];
                refund = std::max(refund, y >= 0 ? price(rj, y) : 0.0);
              }
            const double lb = split_replace_bound(xe, rj) + (priced ? price(rj, xe) - refund : 0.0);
            if (lb >= best.delta) continue;
          }
          for (int32_t t = 0; t < S_; ++t) {
            const int32_t j = rj * S_ + t;
            const ExpertId y = slot_[static_cast<size_t>(j)];
            if (y >= 0 && cnt_[static_cast<size_t>(y)] < 2) continue;
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
            } else {
              // split_replace_bound holds for every slot of ra, xe's included.
              double refund = 0;
              if (priced)
                for (int32_t t = 0; t < S_; ++t) {
                  const ExpertId y = slot_[static_cast<size_t>(ra * S_ + t)];
                  refund = std::max(refund, y >= 0 ? price(ra, y) : 0.0);
                }
              if (split_replace_bound(x2, ra) + (priced ? price(ra, x2) - refund : 0.0) >= best.delta) continue;
            }
            consider({0, 1, -1, i, x2}, best, priced);
          }
        consider({0, 1, -1, i, kEmptySlot}, best, priced);
      }
    }
  }
  // The loads change with the next move: the prepared bounds are forgotten.
  for (ExpertId e : bound_prepared_) bound_ready_[static_cast<size_t>(e)] = 0;
  bound_prepared_.clear();
  for (int32_t r : ranks_prepared_) rank_ready_[static_cast<size_t>(r)] = 0;
  ranks_prepared_.clear();
}

void IntervalSearch::scan_reverts(Move& best) {
  if (p_.prices == nullptr || p_.reference.empty()) return;
  for (int32_t i = 0; i < static_cast<int32_t>(slot_.size()); ++i) scan_reverts_of(i, best);
}

void IntervalSearch::scan_reverts_of(int32_t i, Move& best) {
  const auto& ref = p_.reference;
  const ExpertId a = slot_[static_cast<size_t>(i)];
  const int32_t ra = i / S_;
  if (a < 0 || !received(ra, a)) return;
  // a goes back to a rank that held it, in exchange for any slot there.
  for (int32_t rb = 0; rb < R_; ++rb) {
    if (rb == ra || !p_.prices->held(rb, a) || holds(rb, a)) continue;
    for (int32_t t = 0; t < S_; ++t) {
      const int32_t j = rb * S_ + t;
      const ExpertId b = slot_[static_cast<size_t>(j)];
      if (b >= 0 && holds(ra, b)) continue;
      consider({0, 0, i, j, kEmptySlot}, best, true);
    }
  }
  // An expert that ra held comes back into a's slot: by a swap with one of
  // its replicas, or (a has another replica) as a new replica.
  for (int32_t s = 0; s < S_; ++s) {
    const size_t g = static_cast<size_t>(ra * S_ + s);
    const ExpertId b = g < ref.size() ? ref[g] : kEmptySlot;
    if (b < 0 || holds(ra, b)) continue;
    for (int32_t rb : ranks_[static_cast<size_t>(b)]) {
      if (holds(rb, a)) continue;
      for (int32_t t = 0; t < S_; ++t) {
        const int32_t j = rb * S_ + t;
        if (slot_[static_cast<size_t>(j)] == b) consider({0, 0, i, j, kEmptySlot}, best, true);
      }
    }
    if (cnt_[static_cast<size_t>(a)] >= 2 && cnt_[static_cast<size_t>(b)] < p_.cap) consider({0, 1, -1, i, b}, best, true);
  }
  // A spare replica that was moved in is dropped (its slot stays empty).
  if (cnt_[static_cast<size_t>(a)] >= 2) consider({0, 1, -1, i, kEmptySlot}, best, true);
}

void IntervalSearch::reamount(ExpertId e, double sign) {
  const auto& rs = ranks_[static_cast<size_t>(e)];
  const auto& a = amt_[static_cast<size_t>(e)];
  for (int32_t k = 0; k < K_; ++k)
    for (size_t i = 0; i < rs.size(); ++i) load_[at(k, rs[i])] += sign * a[static_cast<size_t>(k) * rs.size() + i];
}

void IntervalSearch::apply(const Move& m) {
  // The experts whose replicas change; with static shares only their
  // amounts and the loads of their ranks are updated.
  ExpertId changed[2] = {kEmptySlot, kEmptySlot};
  if (m.kind == 0) {
    changed[0] = slot_[static_cast<size_t>(m.i)];
    changed[1] = slot_[static_cast<size_t>(m.j)];
  } else {
    changed[0] = slot_[static_cast<size_t>(m.j)];
    changed[1] = m.x;
  }
  if (per_batch()) {
    rebook(m, changed);
    split();
    summarize();
    return;
  }
  // Static shares: only the ranks of the changed experts (before and after)
  // change load.
  touched_.clear();
  auto mark = [&](ExpertId e) {
    for (int32_t q : ranks_[static_cast<size_t>(e)])
      if (!touched_mark_[static_cast<size_t>(q)]) {
        touched_mark_[static_cast<size_t>(q)] = 1;
        touched_.push_back(q);
      }
  };
  for (ExpertId e : changed)
    if (e >= 0) {
      mark(e);
      reamount(e, -1.0);
    }
  rebook(m, changed);
  for (ExpertId e : changed)
    if (e >= 0) {
      mark(e);
      even_amounts(e);
      reamount(e, 1.0);
    }
  summarize_touched();
  for (int32_t q : touched_) touched_mark_[static_cast<size_t>(q)] = 0;
}

// Static shares: summarize() when only the ranks in touched_ (marked in
// touched_mark_) changed load. A scenario's three busiest ranks stay where
// none of them was touched, unless a touched rank now ranks above one (the
// order of top3: load descending, ties to the lower rank); else it is
// computed again.
void IntervalSearch::summarize_touched() {
  f_ = 0;
  for (int32_t k = 0; k < K_; ++k) {
    const double* l = &load_[at(k, 0)];
    int32_t* t = &top_[static_cast<size_t>(k) * 3];
    bool again = t[2] < 0;
    for (int32_t i = 0; i < 3 && !again; ++i) again = touched_mark_[static_cast<size_t>(t[i])] != 0;
    if (again) {
      top3(l, R_, nullptr, t);
    } else {
      for (int32_t r : touched_) {
        // Insert r where it ranks among t[0..2] (the last one drops out).
        int32_t pos = 3;
        while (pos > 0 && (l[r] > l[t[pos - 1]] || (l[r] == l[t[pos - 1]] && r < t[pos - 1]))) --pos;
        if (pos == 3) continue;
        for (int32_t i = 2; i > pos; --i) t[i] = t[i - 1];
        t[pos] = r;
      }
    }
    const double peak = l[t[0]];
    peak_[static_cast<size_t>(k)] = peak;
    f_ += peak;
  }
  f_ /= K_;
}

void IntervalSearch::rebook(const Move& m, const ExpertId* changed) {
  if (m.kind == 0) {
    const ExpertId a = changed[0], b = changed[1];
    if (a >= 0) take(m.i);
    if (b >= 0) take(m.j);
    if (b >= 0) put(m.i, b);
    if (a >= 0) put(m.j, a);
  } else {
    if (slot_[static_cast<size_t>(m.j)] >= 0) take(m.j);
    if (m.x >= 0) put(m.j, m.x);
  }
}

void IntervalSearch::save_split() {
  saved_load_ = load_;
  saved_amt_ = amt_;
  saved_ranks_ = ranks_;
}

void IntervalSearch::undo(const Move& m, ExpertId replaced) {
  const Move back = m.kind == 0 ? m : Move{0, 1, -1, m.j, replaced};
  if (!per_batch()) {
    apply(back);
    return;
  }
  // The slots are those of save_split() again, and the split depends on the
  // slots only (BatchBalancer keeps nothing between calls): its loads and
  // amounts come back from the copy instead of a new split. An expert's
  // replica ranks may come back in another order: its amounts follow them.
  unbook(m, replaced);
  restore_split();
}

void IntervalSearch::unbook(const Move& m, ExpertId replaced) {
  const Move back = m.kind == 0 ? m : Move{0, 1, -1, m.j, replaced};
  ExpertId changed[2] = {kEmptySlot, kEmptySlot};
  if (back.kind == 0) {
    changed[0] = slot_[static_cast<size_t>(back.i)];
    changed[1] = slot_[static_cast<size_t>(back.j)];
  } else {
    changed[0] = slot_[static_cast<size_t>(back.j)];
    changed[1] = back.x;
  }
  rebook(back, changed);
}

void IntervalSearch::restore_split() {
  load_.swap(saved_load_);
  for (ExpertId e = 0; e < E_; ++e) {
    const auto& now = ranks_[static_cast<size_t>(e)];
    const auto& was = saved_ranks_[static_cast<size_t>(e)];
    auto& a = amt_[static_cast<size_t>(e)];
    const auto& b = saved_amt_[static_cast<size_t>(e)];
    if (now == was) {
      a.swap(saved_amt_[static_cast<size_t>(e)]);
      continue;
    }
    OMNI_CHECK_MSG(now.size() == was.size(), "omni: undo does not restore an expert's replica count");
    a.assign(b.size(), 0.0);
    for (size_t i = 0; i < now.size(); ++i) {
      const size_t w = static_cast<size_t>(std::find(was.begin(), was.end(), now[i]) - was.begin());
      OMNI_CHECK_MSG(w < was.size(), "omni: undo does not restore an expert's replica ranks");
      for (int32_t k = 0; k < K_; ++k)
        a[static_cast<size_t>(k) * now.size() + i] = b[static_cast<size_t>(k) * was.size() + w];
    }
  }
  summarize();
}

bool IntervalSearch::out_of_time() {
  if (p_.deadline == nullptr || std::chrono::steady_clock::now() < *p_.deadline) return false;
  budget_hit_ = true;
  return true;
}

bool IntervalSearch::step(bool priced, bool hot) {
  Move best;
  best.delta = -std::max(1e-9 * (1.0 + f_), priced ? 0.0 : noise_gain_);
  if (hot) scan_hot(best, priced);
  if (priced) scan_reverts(best);
  if (best.kind < 0) return false;
  const double before = f_ + (priced ? cost_ : 0.0);
  const ExpertId replaced = best.kind == 1 ? slot_[static_cast<size_t>(best.j)] : kEmptySlot;
  if (per_batch()) save_split();
  apply(best);
  if (per_batch() && f_ + (priced ? cost_ : 0.0) >= before - 1e-9 * (1.0 + before)) {
    // The split did not follow the estimate: undo, and skip this move in this step.
    undo(best, replaced);
    tabu_.push_back(best);
    return true;
  }
  tabu_.clear();
  return true;
}

void IntervalSearch::run(bool priced) {
  tabu_.clear();
  for (int64_t n = 0; n < p_.max_steps; ++n) {
    if (out_of_time()) return;
    const int64_t tried = static_cast<int64_t>(tabu_.size());
    if (!step(priced)) return;
    if (static_cast<int64_t>(tabu_.size()) == tried) ++steps_;
  }
}

void IntervalSearch::run_path() {
  tabu_.clear();
  std::vector<ExpertId> best(slot_);
  double best_value = value();
  for (int64_t n = 0; n < p_.max_steps; ++n) {
    if (out_of_time()) break;
    const int64_t tried = static_cast<int64_t>(tabu_.size());
    if (!step(false)) break;
    if (static_cast<int64_t>(tabu_.size()) != tried) continue;
    ++steps_;
    if (value() < best_value) {
      best_value = value();
      best = slot_;
    }
  }
  if (best != slot_) start_from(best);
}

void IntervalSearch::apply_estimate(const Move& m) {
  ExpertId changed[2] = {kEmptySlot, kEmptySlot};
  if (m.kind == 0) {
    changed[0] = slot_[static_cast<size_t>(m.i)];
    changed[1] = slot_[static_cast<size_t>(m.j)];
  } else {
    changed[0] = slot_[static_cast<size_t>(m.j)];
    changed[1] = m.x;
  }
  if (changed[1] == changed[0]) changed[1] = kEmptySlot;
  for (int32_t c = 0; c < 2; ++c) {
    const ExpertId e = changed[c];
    if (e < 0) continue;
    reamount(e, -1.0);
    est_ranks_[static_cast<size_t>(c)] = ranks_[static_cast<size_t>(e)];
    est_amt_[static_cast<size_t>(c)] = amt_[static_cast<size_t>(e)];
  }
  rebook(m, changed);
  for (int32_t c = 0; c < 2; ++c) {
    const ExpertId e = changed[c];
    if (e < 0) continue;
    const auto& now = ranks_[static_cast<size_t>(e)];
    const auto& was = est_ranks_[static_cast<size_t>(c)];
    const auto& b = est_amt_[static_cast<size_t>(c)];
    auto& a = amt_[static_cast<size_t>(e)];
    a.assign(static_cast<size_t>(K_) * now.size(), 0.0);
    // Kept ranks keep their amounts; a rank's amount that leaves goes to the
    // ranks that came (a swap), else evenly to the others (eval_replace's).
    int32_t came = 0;
    for (int32_t q : now)
      if (std::find(was.begin(), was.end(), q) == was.end()) ++came;
    for (int32_t k = 0; k < K_; ++k) {
      double moved = 0;
      for (size_t w = 0; w < was.size(); ++w)
        if (std::find(now.begin(), now.end(), was[w]) == now.end()) moved += b[static_cast<size_t>(k) * was.size() + w];
      for (size_t i = 0; i < now.size(); ++i) {
        const size_t w = static_cast<size_t>(std::find(was.begin(), was.end(), now[i]) - was.begin());
        double v = w < was.size() ? b[static_cast<size_t>(k) * was.size() + w] : 0.0;
        if (came > 0 ? w == was.size() : true) v += moved / (came > 0 ? came : static_cast<double>(now.size()));
        a[static_cast<size_t>(k) * now.size() + i] = v;
      }
    }
    reamount(e, 1.0);
  }
  summarize();
}

int IntervalSearch::prune_batch() {
  const double before = value();
  save_split();
  batch_.clear();
  for (int32_t i = 0; i < static_cast<int32_t>(slot_.size()); ++i) {
    if (out_of_time()) break;
    Move best;
    best.delta = -1e-9 * (1.0 + f_);
    tabu_.clear();
    scan_reverts_of(i, best);
    if (best.kind < 0) continue;
    const ExpertId replaced = best.kind == 1 ? slot_[static_cast<size_t>(best.j)] : kEmptySlot;
    apply_estimate(best);
    batch_.push_back({best, replaced});
  }
  if (batch_.empty()) return 0;
  split();
  summarize();
  if (value() < before - 1e-9 * (1.0 + before)) {
    steps_ += static_cast<int64_t>(batch_.size());
    return 1;
  }
  for (auto it = batch_.rbegin(); it != batch_.rend(); ++it) unbook(it->first, it->second);
  restore_split();
  return -1;
}

void IntervalSearch::prune() {
  if (p_.prices == nullptr || p_.reference.empty()) return;
  // Passes over the slots that received an expert; each takes its best
  // give-back when it pays. A few passes: a give-back can make another pay.
  // Per-batch, a pass first takes every give-back that pays by the estimate
  // on loads moved as the estimate moves them (prune_batch), with one split
  // at the end; a pass whose split is not better than before is taken back
  // and run as below (a split after each give-back).
  for (int32_t pass = 0; pass < kPrunePasses; ++pass) {
    if (per_batch()) {
      const int batch = prune_batch();
      if (batch == 0) return;
      if (batch > 0) continue;
    }
    bool any = false;
    for (int32_t i = 0; i < static_cast<int32_t>(slot_.size()); ++i) {
      if (out_of_time()) return;
      Move best;
      best.delta = -1e-9 * (1.0 + f_);
      tabu_.clear();
      scan_reverts_of(i, best);
      if (best.kind < 0) continue;
      const double before = value();
      const ExpertId replaced = best.kind == 1 ? slot_[static_cast<size_t>(best.j)] : kEmptySlot;
      if (per_batch()) save_split();
      apply(best);
      if (per_batch() && value() >= before - 1e-9 * (1.0 + before)) {
        undo(best, replaced);
        continue;
      }
      ++steps_;
      any = true;
    }
    if (!any) return;
  }
}

void IntervalSearch::fill_empty() {
  const std::vector<double>& tokens = total_;
  struct Candidate {
    double delta, per_replica;
    ExpertId e;
  };
  std::vector<Candidate> candidates;
  for (int32_t g = 0; g < static_cast<int32_t>(slot_.size()); ++g) {
    if (slot_[static_cast<size_t>(g)] >= 0) continue;
    if (out_of_time()) return;
    const int32_t r = g / S_;
    const double tol = 1e-9 * (1.0 + value());
    candidates.clear();
    for (ExpertId e = 0; e < E_; ++e) {
      const auto ue = static_cast<size_t>(e);
      if (holds(r, e) || cnt_[ue] >= p_.cap || cnt_[ue] < 1) continue;
      const double d = eval_replace(g, e, true);
      if (d <= tol || per_batch()) candidates.push_back({d, tokens[ue] / cnt_[ue], e});
    }
    // The least rise first, ties to the most tokens per replica. With static
    // shares the estimate is exact: one try. Under the per-batch split it is
    // an estimate, and the split (a water-fill, not an exact minimum) can
    // rise when given another replica: the best few are tried on it.
    std::sort(candidates.begin(), candidates.end(), [&](const Candidate& a, const Candidate& b) {
      const bool tie = std::abs(a.delta - b.delta) <= tol;
      if (!tie) return a.delta < b.delta;
      return a.per_replica != b.per_replica ? a.per_replica > b.per_replica : a.e < b.e;
    });
    const size_t tries = std::min<size_t>(candidates.size(), per_batch() ? kFillTries : 1);
    for (size_t c = 0; c < tries; ++c) {
      const double before = value();
      const Move m{0, 1, -1, g, candidates[c].e};
      if (per_batch()) save_split();
      apply(m);
      if (value() <= before + tol) break;
      undo(m, kEmptySlot);
    }
  }
}

std::vector<ExpertId> IntervalSearch::aligned_slots(std::span<const ExpertId> reference) const {
  std::vector<ExpertId> out(slot_.size(), kEmptySlot);
  for (int32_t r = 0; r < R_; ++r) {
    const size_t base = static_cast<size_t>(r) * static_cast<size_t>(S_);
    auto in_out = [&](ExpertId e) {
      for (int32_t t = 0; t < S_; ++t)
        if (out[base + static_cast<size_t>(t)] == e) return true;
      return false;
    };
    // Experts the rank keeps stay in their reference slot (the first, if the
    // reference held one twice).
    for (int32_t s = 0; s < S_; ++s) {
      const size_t g = base + static_cast<size_t>(s);
      const ExpertId e = g < reference.size() ? reference[g] : kEmptySlot;
      if (e >= 0 && holds(r, e) && !in_out(e)) out[g] = e;
    }
    // The others fill the free slots, in their current order.
    int32_t t = 0;
    for (int32_t s = 0; s < S_; ++s) {
      const ExpertId e = slot_[base + static_cast<size_t>(s)];
      if (e < 0 || in_out(e)) continue;
      while (out[base + static_cast<size_t>(t)] != kEmptySlot) ++t;
      out[base + static_cast<size_t>(t)] = e;
    }
  }
  return out;
}

}  // namespace omni::detail
