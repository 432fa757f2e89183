// IntervalSearch: priced local search on the expected busiest rank of the
// next interval (see interval_search.h). This file holds the state (slots,
// splits, loads, the busiest ranks), applying and undoing moves, the search's
// loop, prune and fill_empty; interval_search_split.cc runs the per-batch
// split; interval_search_moves.cc evaluates and bounds candidate moves and
// scans for the best one.
#include "interval_search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "omniplacement/core/status.h"

namespace omni::detail {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Passes of prune() over the slots that received an expert.
constexpr int32_t kPrunePasses = 3;
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
  reset(problem);
}

void IntervalSearch::reset(const IntervalProblem& problem) {
  // The balancer keeps nothing between splits but its sizes.
  if (problem.num_ranks != R_ || problem.num_experts != E_)
    balancer_ = *BatchBalancer<double>::create(problem.num_ranks, problem.num_experts);
  p_ = problem;
  R_ = problem.num_ranks;
  S_ = problem.slots_per_rank;
  E_ = problem.num_experts;
  K_ = static_cast<int32_t>(problem.scenarios->size());
  steps_ = 0;
  budget_hit_ = false;
  tabu_.clear();
  next_ready_ = false;
  if (p_.max_steps <= 0) p_.max_steps = std::max<int64_t>(16, R_);
  noise_gain_ = p_.prices != nullptr ? 0.5 * p_.prices->min_price() : 0.0;
  total_.assign(static_cast<size_t>(E_), 0.0);
  for (ExpertId e = 0; e < E_; ++e)
    for (int32_t k = 0; k < K_; ++k) total_[static_cast<size_t>(e)] += x(k, e);
  ref_ready_ = false;
}

void IntervalSearch::list_reference_ranks() {
  ref_ready_ = true;
  // Counted, then filled in slot order (ascending ranks); a rank holding an
  // expert twice is listed once (its rank is then the last one listed).
  const auto G = std::min(p_.reference.size(), static_cast<size_t>(R_) * static_cast<size_t>(S_));
  ref_start_.assign(static_cast<size_t>(E_) + 1, 0);
  for (size_t g = 0; g < G; ++g) {
    const ExpertId e = p_.reference[g];
    if (e >= 0 && e < E_) ++ref_start_[static_cast<size_t>(e) + 1];
  }
  for (ExpertId e = 0; e < E_; ++e) ref_start_[static_cast<size_t>(e) + 1] += ref_start_[static_cast<size_t>(e)];
  ref_ranks_.resize(static_cast<size_t>(ref_start_.back()));
  ref_end_.assign(ref_start_.begin(), ref_start_.end() - 1);
  for (size_t g = 0; g < G; ++g) {
    const ExpertId e = p_.reference[g];
    if (e < 0 || e >= E_) continue;
    const auto r = static_cast<int32_t>(g / static_cast<size_t>(S_));
    int32_t& end = ref_end_[static_cast<size_t>(e)];
    if (end > ref_start_[static_cast<size_t>(e)] && ref_ranks_[static_cast<size_t>(end - 1)] == r) continue;
    ref_ranks_[static_cast<size_t>(end++)] = r;
  }
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
  cool_ready_.forget();  // cool() finds its flags again
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
  swap_b_.resize(static_cast<size_t>(S_) * static_cast<size_t>(K_));
  slot_amt_.resize(static_cast<size_t>(R_) * static_cast<size_t>(S_) * static_cast<size_t>(K_));
  amt_ready_.reset(static_cast<size_t>(R_));
  pair_load_.resize(2 * static_cast<size_t>(K_));
  pool_pair_.resize(static_cast<size_t>(K_));
  swap_floor_.resize(static_cast<size_t>(K_));
  swap_aabs_.resize(static_cast<size_t>(K_));
  slot_rest_.resize(static_cast<size_t>(K_) + 1);
  y_on_.resize(static_cast<size_t>(R_) * static_cast<size_t>(S_) * static_cast<size_t>(K_));
  y_max_.resize(static_cast<size_t>(R_) * static_cast<size_t>(S_) * static_cast<size_t>(K_));
  y_ready_.reset(static_cast<size_t>(R_));
  if (per_batch()) {
    y_level_.resize(static_cast<size_t>(R_) * static_cast<size_t>(S_) * static_cast<size_t>(K_));
    y_out_.resize(static_cast<size_t>(R_) * static_cast<size_t>(S_) * static_cast<size_t>(K_));
    y_bridge_.resize(static_cast<size_t>(R_) * static_cast<size_t>(S_) * static_cast<size_t>(K_));
    y_floor_.resize(static_cast<size_t>(R_) * static_cast<size_t>(S_));
    y_rank_floor_.resize(static_cast<size_t>(R_));
    y_rank_refund_.resize(static_cast<size_t>(R_));
  }
  bound_.resize(static_cast<size_t>(E_) * static_cast<size_t>(K_));
  bound_ready_.reset(static_cast<size_t>(E_));
  bound_sum_.resize(static_cast<size_t>(E_));
  rank_term_.resize(static_cast<size_t>(R_) * static_cast<size_t>(K_));
  rank_merged_.resize(static_cast<size_t>(R_) * static_cast<size_t>(K_));
  rank_out_.resize(static_cast<size_t>(R_) * static_cast<size_t>(K_));
  rank_ready_.reset(static_cast<size_t>(R_));
  first_of_.assign(static_cast<size_t>(R_), 0);
  touched_mark_.assign(static_cast<size_t>(R_), 0);
  cool_ready_.reset(static_cast<size_t>(R_));
  cool_.resize(static_cast<size_t>(R_));
  pool_amount_.resize(static_cast<size_t>(E_) * static_cast<size_t>(K_));
  group_pool_.resize(static_cast<size_t>(K_));
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

void IntervalSearch::reamount(ExpertId e, double sign) {
  const auto& rs = ranks_[static_cast<size_t>(e)];
  const auto& a = amt_[static_cast<size_t>(e)];
  for (int32_t k = 0; k < K_; ++k)
    for (size_t i = 0; i < rs.size(); ++i) load_[at(k, rs[i])] += sign * a[static_cast<size_t>(k) * rs.size() + i];
}

void IntervalSearch::changed_by(const Move& m, ExpertId* changed) const {
  if (m.kind == 0) {
    changed[0] = slot_[static_cast<size_t>(m.i)];
    changed[1] = slot_[static_cast<size_t>(m.j)];
  } else {
    changed[0] = slot_[static_cast<size_t>(m.j)];
    changed[1] = m.x;
  }
}

void IntervalSearch::apply(const Move& m) {
  // The experts whose replicas change; with static shares only their
  // amounts and the loads of their ranks are updated.
  ExpertId changed[2];
  changed_by(m, changed);
  if (per_batch()) {
    // The ranks the changed experts have before the move and after it.
    auto touch_ranks_of_changed = [&] {
      for (int32_t c = 0; c < 2; ++c)
        if (changed[c] >= 0)
          for (int32_t q : ranks_[static_cast<size_t>(changed[c])]) part_touched_.push_back(q);
    };
    part_touched_.clear();
    touch_ranks_of_changed();
    rebook(m, changed);
    touch_ranks_of_changed();
    if (!split_part(part_touched_)) split();
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
  cool_ready_.forget();  // cool() finds its flags again
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

namespace {

// Inserts the ranks in `touched` that `skip` (may be null) does not flag into
// t[0..2], the three largest of l (top3's order: load descending, ties to the
// lower rank; the last drops out), when t holds three and none of them is
// marked in `mark`: the same as top3 on l when only the touched ranks changed
// (in load or in `skip`) since t was found. Returns false, t unchanged,
// otherwise.
bool insert_touched(const double* l, const char* skip, const std::vector<int32_t>& touched, const char* mark,
                    int32_t* t) {
  if (t[2] < 0) return false;
  for (int32_t i = 0; i < 3; ++i)
    if (mark[t[i]]) return false;
  for (int32_t r : touched) {
    if (skip != nullptr && skip[r]) continue;
    int32_t pos = 3;
    while (pos > 0 && (l[r] > l[t[pos - 1]] || (l[r] == l[t[pos - 1]] && r < t[pos - 1]))) --pos;
    if (pos == 3) continue;
    for (int32_t i = 2; i > pos; --i) t[i] = t[i - 1];
    t[pos] = r;
  }
  return true;
}

}  // namespace

// Per-batch: summarize() when only the ranks in touched_ (marked in
// touched_mark_) changed load. The three busiest ranks as summarize_touched
// finds them; where the peak is the same, only the touched ranks can enter
// or leave the pool (its threshold is the same) and the three busiest
// outside it are updated as the three busiest are; else the pool and those
// three are found again.
void IntervalSearch::summarize_pools_touched() {
  f_ = 0;
  cool_ready_.forget();  // cool() finds its flags again
  const char* mark = touched_mark_.data();
  for (int32_t k = 0; k < K_; ++k) {
    const double* l = &load_[at(k, 0)];
    int32_t* t = &top_[static_cast<size_t>(k) * 3];
    if (!insert_touched(l, nullptr, touched_, mark, t)) top3(l, R_, nullptr, t);
    const double peak = l[t[0]];
    const bool same_peak = peak == peak_[static_cast<size_t>(k)];
    peak_[static_cast<size_t>(k)] = peak;
    f_ += peak;
    char* pool = &in_pool_[at(k, 0)];
    int32_t* o = &out_top_[static_cast<size_t>(k) * 3];
    if (same_peak) {
      int32_t n = pool_size_[static_cast<size_t>(k)];
      for (int32_t r : touched_) {
        const char now = l[r] >= peak - 1e-7 * (1.0 + peak) ? 1 : 0;
        n += now - pool[r];
        pool[r] = now;
      }
      pool_size_[static_cast<size_t>(k)] = n;
      if (!insert_touched(l, pool, touched_, mark, o)) top3(l, R_, pool, o);
    } else {
      int32_t n = 0;
      for (int32_t r = 0; r < R_; ++r) {
        pool[r] = l[r] >= peak - 1e-7 * (1.0 + peak) ? 1 : 0;
        n += pool[r];
      }
      pool_size_[static_cast<size_t>(k)] = n;
      top3(l, R_, pool, o);
    }
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
  saved_split_full_ = split_full_;
  saved_part_change_ = part_change_;
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
  ExpertId changed[2];
  changed_by(back, changed);
  rebook(back, changed);
}

void IntervalSearch::restore_split() {
  split_full_.swap(saved_split_full_);
  part_change_.swap(saved_part_change_);
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
  if (next_ready_ && next_priced_ == priced && hot && next_threshold_ == best.delta) {
    // The scans' result, known from the step that set the last move aside.
    best = next_;
  } else {
    second_ = best;
    next_threshold_ = best.delta;
    passed_lb_ = kInf;
    if (hot) scan_hot(best, priced);
    if (priced) scan_reverts(best);
  }
  next_ready_ = false;
  if (best.kind < 0) return false;
  const double before = f_ + (priced ? cost_ : 0.0);
  const ExpertId replaced = best.kind == 1 ? slot_[static_cast<size_t>(best.j)] : kEmptySlot;
  ExpertId changed[2];
  changed_by(best, changed);
  if (per_batch()) save_split();
  apply(best);
  if (per_batch() && f_ + (priced ? cost_ : 0.0) >= before - 1e-9 * (1.0 + before)) {
    // The split did not follow the estimate: undo, and skip this move in this step.
    undo(best, replaced);
    tabu_.push_back(best);
    // The scans again, with best set aside, would find the runner-up unless
    // a move passed over by its bound could reach it (a bound equal to the
    // runner-up's change: it may come first in scan order), or undo gave
    // a changed expert its replica ranks back in another order (the scans
    // and sums over them would then run in another order).
    auto same_order = [&](ExpertId e) {
      return e < 0 || ranks_[static_cast<size_t>(e)] == saved_ranks_[static_cast<size_t>(e)];
    };
    if (hot && !(second_ == best) && same_order(changed[0]) && same_order(changed[1]) &&
        (passed_lb_ > second_.delta || (second_.kind < 0 && passed_lb_ >= second_.delta))) {
      next_ = second_;
      next_ready_ = true;
      next_priced_ = priced;
    }
    return true;
  }
  tabu_.clear();
  return true;
}

void IntervalSearch::run(bool priced) {
  tabu_.clear();
  next_ready_ = false;
  for (int64_t n = 0; n < p_.max_steps; ++n) {
    if (out_of_time()) return;
    const int64_t tried = static_cast<int64_t>(tabu_.size());
    if (!step(priced)) return;
    if (static_cast<int64_t>(tabu_.size()) == tried) ++steps_;
  }
}

void IntervalSearch::run_path() {
  tabu_.clear();
  next_ready_ = false;
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
  std::fill(split_full_.begin(), split_full_.end(), 0);  // the loads are the estimate's now
  ExpertId changed[2];
  changed_by(m, changed);
  if (changed[1] == changed[0]) changed[1] = kEmptySlot;
  // The ranks of the changed experts (before and after), the only ones
  // whose loads change.
  touched_.clear();
  auto mark = [&](ExpertId e) {
    for (int32_t q : ranks_[static_cast<size_t>(e)])
      if (!touched_mark_[static_cast<size_t>(q)]) {
        touched_mark_[static_cast<size_t>(q)] = 1;
        touched_.push_back(q);
      }
  };
  for (int32_t c = 0; c < 2; ++c) {
    const ExpertId e = changed[c];
    if (e < 0) continue;
    mark(e);
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
    mark(e);
    reamount(e, 1.0);
  }
  summarize_pools_touched();
  for (int32_t q : touched_) touched_mark_[static_cast<size_t>(q)] = 0;
}

IntervalSearch::Move IntervalSearch::best_give_back(int32_t i) {
  Move best;
  best.delta = -1e-9 * (1.0 + f_);
  tabu_.clear();
  next_ready_ = false;
  second_ = best;  // offer()'s runner-up starts at the threshold
  scan_reverts_of(i, best);
  return best;
}

int IntervalSearch::prune_batch() {
  const double before = value();
  save_split();
  batch_.clear();
  for (int32_t i = 0; i < static_cast<int32_t>(slot_.size()); ++i) {
    if (out_of_time()) break;
    const Move best = best_give_back(i);
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
      const Move best = best_give_back(i);
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
