// BlockSolver: water-filling, packing and local search for one sub-problem
// (see block_solver.h).
#include "block_solver.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>

#include "omniplacement/core/status.h"

namespace omni::detail {

BlockSolver::BlockSolver(std::vector<double> w, int32_t num_ranks, int32_t slots_per_rank, int32_t cap,
            std::vector<int32_t> host_of_rank, const OmniOptions& opt, const Clock::time_point* deadline)
    : w_(std::move(w)),
      n_(static_cast<int32_t>(w_.size())),
      m_(num_ranks),
      S_(slots_per_rank),
      cap_(std::max(1, std::min(cap, num_ranks))),
      host_(std::move(host_of_rank)),
      opt_(opt),
      deadline_(deadline) {
  spread_ = (opt_.locality == Locality::kSpread || opt_.spread_hosts) && !host_.empty();
  if (spread_) num_hosts_ = *std::max_element(host_.begin(), host_.end()) + 1;
  hard_spread_ = spread_ && opt_.spread_hosts && num_hosts_ > 1;
  rank_stamp_.assign(static_cast<size_t>(m_), 0);
  set_min_counts();
}

// Runs steps 1-3. Requires n_ <= m_ * S_.
void BlockSolver::solve() {
  water_fill(0);
  // Small problems also try replica counts capped at ceil(k x load / mean
  // rank load) for k = 1, 2: water-filling can leave more items above half
  // a rank's share than there are ranks, which no packing can pair up well.
  const bool variants = static_cast<int64_t>(m_) * S_ <= kVariantSlots;
  // The counts each run started from and the steps it took: a run is
  // determined by its water-filled counts, so a variant that fills the same
  // counts as an earlier one would end where that run did, which never
  // replaces the best kept (the same max and sum of squares); it is not run
  // again, its steps counted as if it were.
  std::vector<std::vector<int32_t>> filled;
  std::vector<int64_t> filled_moves;
  if (variants) filled.push_back(cnt_);
  int64_t before = moves_;
  run();
  if (!variants) return;
  filled_moves.push_back(moves_ - before);
  std::vector<int32_t> best = slot_;
  std::vector<int32_t> best_cnt = cnt_;
  double best_max = max_load(), best_sq = sum_sq();
  for (int32_t k = 1; k <= 2; ++k) {
    if (out_of_time()) break;
    water_fill(k);
    const auto same = std::find(filled.begin(), filled.end(), cnt_);
    if (same != filled.end()) {
      moves_ += filled_moves[static_cast<size_t>(same - filled.begin())];
      continue;
    }
    filled.push_back(cnt_);
    before = moves_;
    run();
    filled_moves.push_back(moves_ - before);
    const double mx = max_load(), sq = sum_sq();
    if (mx < best_max * (1 - 1e-12) || (mx <= best_max && sq < best_sq)) {
      best = slot_;
      best_cnt = cnt_;
      best_max = mx;
      best_sq = sq;
    }
  }
  slot_ = std::move(best);
  cnt_ = std::move(best_cnt);
  sizes_ok_ = false;
  for (int32_t e = 0; e < n_; ++e) size_[static_cast<size_t>(e)] = w_[static_cast<size_t>(e)] / cnt_[static_cast<size_t>(e)];
  for (int32_t r = 0; r < m_; ++r) recompute(r);
}

// Incremental: starts from `start` ([m * S] local expert ids, -1 empty),
// first giving a replica to every expert that has none (always allowed),
// then improves by local search while no rank has more than
// max_changes_per_rank slots whose expert differs from `start` (< 0: no limit).
void BlockSolver::solve_from(const std::vector<int32_t>& start, int32_t max_changes_per_rank) {
  ref_ = start;
  change_budget_ = max_changes_per_rank;
  clear_slots();
  cnt_.assign(static_cast<size_t>(n_), 0);
  for (int32_t e : start)
    if (e >= 0) ++cnt_[static_cast<size_t>(e)];
  size_.assign(static_cast<size_t>(n_), 0.0);
  for (int32_t e = 0; e < n_; ++e)
    if (cnt_[static_cast<size_t>(e)] > 0) size_[static_cast<size_t>(e)] = w_[static_cast<size_t>(e)] / cnt_[static_cast<size_t>(e)];
  for (int32_t r = 0; r < m_; ++r)
    for (int32_t s = 0; s < S_; ++s) place(r, s, start[idx(r, s)]);
  add_missing_experts();
  changes_.assign(static_cast<size_t>(m_), 0);
  for (size_t g = 0; g < slot_.size(); ++g)
    if (slot_[g] >= 0 && slot_[g] != ref_[g]) ++changes_[g / static_cast<size_t>(S_)];
  if (hard_spread_) repair_spread();  // within the move budget
  local_search();
}

// Keeps the rank x expert counts (when used) in step with slot_: +1 when a
// slot of rank r takes e, -1 when one gives it up. Counts, not flags, because
// a placement in force may hold e twice on r and losing one copy must leave
// "r holds e" true.
void BlockSolver::mark(int32_t r, int32_t e, int32_t delta) {
  if (has_.empty() || e < 0) return;
  uint16_t& count = has_[static_cast<size_t>(r) * static_cast<size_t>(n_) + static_cast<size_t>(e)];
  count = static_cast<uint16_t>(count + delta);
}

int32_t& BlockSolver::host_count(int32_t e, int32_t h) {
  return host_cnt_[static_cast<size_t>(e) * static_cast<size_t>(num_hosts_) + static_cast<size_t>(h)];
}

// Moving one replica of e from rank a to rank b keeps e on as many hosts.
bool BlockSolver::spread_ok(int32_t e, int32_t a, int32_t b) {
  if (!spread_ || e < 0) return true;
  const int32_t ha = host_[static_cast<size_t>(a)], hb = host_[static_cast<size_t>(b)];
  if (ha == hb) return true;
  return !(host_count(e, ha) == 1 && host_count(e, hb) >= 1);
}

// Hosts holding a replica of e (spread only).
int32_t BlockSolver::hosts_of(int32_t e) {
  int32_t k = 0;
  for (int32_t h = 0; h < num_hosts_; ++h) k += host_count(e, h) > 0;
  return k;
}

// Adding a replica of x on rank r would leave x with two or more replicas on one host.
bool BlockSolver::single_host_after_add(int32_t x, int32_t r) {
  return hosts_of(x) == 1 && host_count(x, host_[static_cast<size_t>(r)]) > 0;
}

// protect: the heaviest experts carrying opt_.protect of the load need two
// replicas (when the cap and the number of ranks allow two).
void BlockSolver::set_min_counts() {
  min_cnt_.assign(static_cast<size_t>(n_), 1);
  protect_order_.clear();
  if (opt_.protect <= 0 || cap_ < 2) return;
  double total = 0;
  for (double v : w_) total += v;
  if (total <= 0) return;
  std::vector<int32_t> order(static_cast<size_t>(n_));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return w_[static_cast<size_t>(a)] > w_[static_cast<size_t>(b)]; });
  double covered = 0;
  for (int32_t e : order) {
    if (covered >= opt_.protect * total * (1 - 1e-12) || w_[static_cast<size_t>(e)] <= 0) break;
    min_cnt_[static_cast<size_t>(e)] = 2;
    protect_order_.push_back(e);
    covered += w_[static_cast<size_t>(e)];
  }
}

// spread_hosts after packing: every expert with two or more replicas all on
// one host swaps one of them with a slot of another host, choosing the swap
// that keeps the two ranks' larger load smallest and never costs the other
// expert a host.
void BlockSolver::repair_spread() {
  for (int32_t e = 0; e < n_; ++e) {
    if (cnt_[static_cast<size_t>(e)] < 2 || hosts_of(e) != 1) continue;
    double best = std::numeric_limits<double>::infinity();
    size_t bi = 0, bj = 0;
    for (int32_t a = 0; a < m_; ++a) {
      for (int32_t s = 0; s < S_; ++s) {
        const size_t i = idx(a, s);
        if (slot_[i] != e) continue;
        for (int32_t b = 0; b < m_; ++b) {
          if (host_[static_cast<size_t>(b)] == host_[static_cast<size_t>(a)] || holds(b, e)) continue;
          for (int32_t t = 0; t < S_; ++t) {
            const size_t j = idx(b, t);
            const int32_t f = slot_[j];
            if (f >= 0 && (holds(a, f) || !spread_ok(f, b, a))) continue;
            if (!swap_in_budget(i, j)) continue;
            const double d = size_of(e) - size_of(f);
            const double nm = std::max(load_[static_cast<size_t>(a)] - d, load_[static_cast<size_t>(b)] + d);
            if (nm < best) {
              best = nm;
              bi = i;
              bj = j;
            }
          }
        }
      }
    }
    if (best < std::numeric_limits<double>::infinity()) do_swap(bi, bj);
  }
}

double BlockSolver::sum_sq() const {
  double s = 0;
  for (double v : load_) s += v * v;
  return s;
}

void BlockSolver::run() {
  sweeps_ = 0;
  pack();
  if (hard_spread_) repair_spread();
  local_search();
}

// Replica counts: water-filling under the cap; variant k > 0 also caps each
// expert at ceil(k x load / mean rank load) replicas (slots left over stay empty).
void BlockSolver::water_fill(int32_t variant) {
  cnt_.assign(static_cast<size_t>(n_), 1);
  const int64_t room = static_cast<int64_t>(m_) * S_ - n_;
  int64_t extra = room;
  std::vector<int32_t> limit(static_cast<size_t>(n_), cap_);
  double total = 0;
  for (double v : w_) total += v;
  if (variant > 0 && total > 0) {
    const double mean = total / m_;
    for (int32_t e = 0; e < n_; ++e) {
      const double k = std::ceil(variant * w_[static_cast<size_t>(e)] / mean);
      limit[static_cast<size_t>(e)] = std::max(min_cnt_[static_cast<size_t>(e)],
                                               static_cast<int32_t>(std::clamp(k, 1.0, static_cast<double>(cap_))));
    }
  }
  // Protected experts (heaviest first) take their second replica before the rest is water-filled.
  for (int32_t e : protect_order_) {
    if (extra == 0) break;
    if (cnt_[static_cast<size_t>(e)] < min_cnt_[static_cast<size_t>(e)]) {
      ++cnt_[static_cast<size_t>(e)];
      --extra;
    }
  }
  auto less = [&](int32_t a, int32_t b) {
    const double ra = w_[static_cast<size_t>(a)] / cnt_[static_cast<size_t>(a)];
    const double rb = w_[static_cast<size_t>(b)] / cnt_[static_cast<size_t>(b)];
    if (ra != rb) return ra < rb;
    return a > b;
  };
  std::priority_queue<int32_t, std::vector<int32_t>, decltype(less)> heap(less);
  for (int32_t e = 0; e < n_; ++e)
    if (limit[static_cast<size_t>(e)] > cnt_[static_cast<size_t>(e)]) heap.push(e);
  while (extra > 0 && !heap.empty()) {
    const int32_t e = heap.top();
    heap.pop();
    ++cnt_[static_cast<size_t>(e)];
    --extra;
    if (cnt_[static_cast<size_t>(e)] < limit[static_cast<size_t>(e)]) heap.push(e);
  }
  size_.resize(static_cast<size_t>(n_));
  for (int32_t e = 0; e < n_; ++e) size_[static_cast<size_t>(e)] = w_[static_cast<size_t>(e)] / cnt_[static_cast<size_t>(e)];
}

void BlockSolver::place(int32_t r, int32_t s, int32_t e) {
  sizes_ok_ = false;
  slot_[idx(r, s)] = e;
  mark(r, e, +1);
  load_[static_cast<size_t>(r)] += size_of(e);
  if (spread_ && e >= 0) ++host_count(e, host_[static_cast<size_t>(r)]);
}

// Empties every slot and clears the derived state.
void BlockSolver::clear_slots() {
  sizes_ok_ = false;
  slot_.assign(static_cast<size_t>(m_) * static_cast<size_t>(S_), -1);
  load_.assign(static_cast<size_t>(m_), 0.0);
  used_.assign(static_cast<size_t>(m_), 0);
  // Rank x expert counts make "does rank r hold e" O(1); above 16 M entries
  // (or 65,535 slots per rank, past what a count holds) the slots of the rank
  // are scanned instead.
  if (static_cast<int64_t>(m_) * n_ <= (int64_t{1} << 24) && S_ < 65536) has_.assign(static_cast<size_t>(m_) * static_cast<size_t>(n_), 0);
  if (spread_) host_cnt_.assign(static_cast<size_t>(n_) * static_cast<size_t>(num_hosts_), 0);
}

void BlockSolver::pack() {
  clear_slots();
  double total = 0;
  for (double v : w_) total += v;
  const double penalty = spread_ ? opt_.locality_slack * total / m_ : 0.0;
  std::vector<int32_t> order(static_cast<size_t>(n_));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return size_[static_cast<size_t>(a)] > size_[static_cast<size_t>(b)];
  });
  if (!spread_) return pack_by_load(order);
  // Replicas of one expert are placed one after another: they have the same
  // size, and placing them together keeps them on distinct ranks.
  for (int32_t e : order) {
    for (int32_t k = 0; k < cnt_[static_cast<size_t>(e)]; ++k) {
      int32_t best = -1;
      double best_key = 0;
      bool best_taken = false;
      for (int32_t r = 0; r < m_; ++r) {
        if (used_[static_cast<size_t>(r)] >= S_ || holds(r, e)) continue;
        double key = load_[static_cast<size_t>(r)];
        const bool host_taken = spread_ && host_count(e, host_[static_cast<size_t>(r)]) > 0;
        if (host_taken && !hard_spread_) key += penalty;
        // spread_hosts: a host without e beats any load.
        if (best < 0 || (hard_spread_ && host_taken != best_taken ? !host_taken : key < best_key)) {
          best = r;
          best_key = key;
          best_taken = host_taken;
        }
      }
      if (best < 0) best = make_room(e);
      place(best, used_[static_cast<size_t>(best)]++, e);
    }
  }
}

// pack() without hosts: the same choice (least loaded rank with a free slot
// that lacks the expert, ties to the lower rank id) from ranks kept sorted
// by (load, rank), instead of a scan of every rank for every replica.
void BlockSolver::pack_by_load(const std::vector<int32_t>& order) {
  std::vector<std::pair<double, int32_t>> open;  // ranks with a free slot, ascending (load, rank)
  auto rebuild = [&] {
    open.clear();
    for (int32_t r = 0; r < m_; ++r)
      if (used_[static_cast<size_t>(r)] < S_) open.emplace_back(load_[static_cast<size_t>(r)], r);
    std::sort(open.begin(), open.end());
  };
  rebuild();
  for (int32_t e : order) {
    for (int32_t k = 0; k < cnt_[static_cast<size_t>(e)]; ++k) {
      size_t pos = 0;
      while (pos < open.size() && holds(open[pos].second, e)) ++pos;
      if (pos == open.size()) {
        const int32_t q = make_room(e);
        place(q, used_[static_cast<size_t>(q)]++, e);
        rebuild();
        continue;
      }
      const int32_t r = open[pos].second;
      open.erase(open.begin() + static_cast<std::ptrdiff_t>(pos));
      place(r, used_[static_cast<size_t>(r)]++, e);
      if (used_[static_cast<size_t>(r)] < S_) {
        const std::pair<double, int32_t> key(load_[static_cast<size_t>(r)], r);
        open.insert(std::lower_bound(open.begin(), open.end(), key), key);
      }
    }
  }
}

// Experts without a replica (e.g. after a failure or a shrink of the slots)
// take, heaviest first, the slot that leaves its rank least loaded among
// empty slots and replicas of experts with two or more.
void BlockSolver::add_missing_experts() {
  std::vector<int32_t> missing;
  for (int32_t e = 0; e < n_; ++e)
    if (cnt_[static_cast<size_t>(e)] == 0) missing.push_back(e);
  std::stable_sort(missing.begin(), missing.end(), [&](int32_t a, int32_t b) { return w_[static_cast<size_t>(a)] > w_[static_cast<size_t>(b)]; });
  for (int32_t e : missing) {
    size_t best = slot_.size();
    double best_key = 0;
    for (int32_t r = 0; r < m_; ++r) {
      if (holds(r, e)) continue;
      for (int32_t s = 0; s < S_; ++s) {
        const int32_t y = slot_[idx(r, s)];
        if (y >= 0 && cnt_[static_cast<size_t>(y)] < 2) continue;
        const double key = load_[static_cast<size_t>(r)] - size_of(y) + w_[static_cast<size_t>(e)];
        if (best == slot_.size() || key < best_key) {
          best = idx(r, s);
          best_key = key;
        }
      }
    }
    OMNI_CHECK_MSG(best < slot_.size(), "omni: no slot for a missing expert (more experts than slots)");
    set_slot(best, e);
  }
}

// Puts expert x (or -1) in slot g, updating counts, sizes and loads.
void BlockSolver::set_slot(size_t g, int32_t x) {
  const int32_t r = static_cast<int32_t>(g / static_cast<size_t>(S_));
  const int32_t y = slot_[g];
  if (y >= 0) {
    mark(r, y, -1);
    if (spread_) --host_count(y, host_[static_cast<size_t>(r)]);
    if (--cnt_[static_cast<size_t>(y)] > 0) size_[static_cast<size_t>(y)] = w_[static_cast<size_t>(y)] / cnt_[static_cast<size_t>(y)];
  }
  if (x >= 0) {
    mark(r, x, +1);
    if (spread_) ++host_count(x, host_[static_cast<size_t>(r)]);
    ++cnt_[static_cast<size_t>(x)];
    size_[static_cast<size_t>(x)] = w_[static_cast<size_t>(x)] / cnt_[static_cast<size_t>(x)];
  }
  if (!changes_.empty()) {
    changes_[static_cast<size_t>(r)] += (x >= 0 && x != ref_[g] ? 1 : 0) - (y >= 0 && y != ref_[g] ? 1 : 0);
  }
  slot_[g] = x;
  sizes_ok_ = false;
  for (int32_t q = 0; q < m_; ++q) recompute(q);
}

// Change in rank g's count of slots differing from the start when slot g
// goes from expert `from` to expert `to`.
int32_t BlockSolver::change_delta(size_t g, int32_t from, int32_t to) const {
  if (ref_.empty()) return 0;
  return (to >= 0 && to != ref_[g] ? 1 : 0) - (from >= 0 && from != ref_[g] ? 1 : 0);
}

// Whether swapping slots i and j keeps both ranks within the change budget.
bool BlockSolver::swap_in_budget(size_t i, size_t j) const {
  if (ref_.empty() || change_budget_ < 0) return true;
  const int32_t a = slot_[i], b = slot_[j];
  const size_t ri = i / static_cast<size_t>(S_), rj = j / static_cast<size_t>(S_);
  return changes_[ri] + change_delta(i, a, b) <= change_budget_ &&
         changes_[rj] + change_delta(j, b, a) <= change_budget_;
}

bool BlockSolver::set_in_budget(size_t g, int32_t x) const {
  if (ref_.empty() || change_budget_ < 0) return true;
  return changes_[g / static_cast<size_t>(S_)] + change_delta(g, slot_[g], x) <= change_budget_;
}

// Every rank with a free slot already holds e: some rank r has a free slot
// and holds e, a full rank q lacks e and (having more distinct experts than
// r) holds some f that r lacks. Move f from q to r; q's slot is then free.
int32_t BlockSolver::make_room(int32_t e) {
  for (int32_t r = 0; r < m_; ++r) {
    if (used_[static_cast<size_t>(r)] >= S_) continue;
    for (int32_t q = 0; q < m_; ++q) {
      if (q == r || holds(q, e)) continue;
      for (int32_t s = 0; s < S_; ++s) {
        const int32_t f = slot_[idx(q, s)];
        if (f < 0 || holds(r, f)) continue;
        load_[static_cast<size_t>(q)] -= size_of(f);
        if (spread_) --host_count(f, host_[static_cast<size_t>(q)]);
        mark(q, f, -1);
        slot_[idx(q, s)] = -1;
        sizes_ok_ = false;
        place(r, used_[static_cast<size_t>(r)]++, f);
        // Compact q so that its free slot is the last one.
        std::swap(slot_[idx(q, s)], slot_[idx(q, S_ - 1)]);
        --used_[static_cast<size_t>(q)];
        return q;
      }
    }
  }
  OMNI_CHECK_MSG(false, "omni: no room for a replica (replica count above the number of ranks)");
  return -1;
}

int32_t BlockSolver::argmax_rank() const {
  return static_cast<int32_t>(std::max_element(load_.begin(), load_.end()) - load_.begin());
}

void BlockSolver::do_swap(size_t i, size_t j) {
  const int32_t ri = static_cast<int32_t>(i / static_cast<size_t>(S_));
  const int32_t rj = static_cast<int32_t>(j / static_cast<size_t>(S_));
  const int32_t a = slot_[i], b = slot_[j];
  if (!changes_.empty()) {
    changes_[static_cast<size_t>(ri)] += change_delta(i, a, b);
    changes_[static_cast<size_t>(rj)] += change_delta(j, b, a);
  }
  if (spread_) {
    if (a >= 0) { --host_count(a, host_[static_cast<size_t>(ri)]); ++host_count(a, host_[static_cast<size_t>(rj)]); }
    if (b >= 0) { --host_count(b, host_[static_cast<size_t>(rj)]); ++host_count(b, host_[static_cast<size_t>(ri)]); }
  }
  mark(ri, a, -1);
  mark(rj, b, -1);
  mark(ri, b, +1);
  mark(rj, a, +1);
  std::swap(slot_[i], slot_[j]);
  if (sizes_ok_) std::swap(slot_size_[i], slot_size_[j]);
  rank_stamp_[static_cast<size_t>(ri)] = rank_stamp_[static_cast<size_t>(rj)] = ++clock_;
  recompute(ri);
  recompute(rj);
  ++moves_;
}

void BlockSolver::recompute(int32_t r) {
  double s = 0;
  for (int32_t t = 0; t < S_; ++t) s += size_of(slot_[idx(r, t)]);
  load_[static_cast<size_t>(r)] = s;
}

// The best move or swap between the most loaded rank and another rank: the
// one giving the smallest new max of the two ranks, if below the old max.
// The hot loop of the planner (about 60 accepted steps per layer at
// DeepSeek-V3 scale): slot sizes are kept in a flat array and the
// rank x expert counts are read directly.
bool BlockSolver::swap_step() {
  const int32_t rmax = argmax_rank();
  const double lmax = load_[static_cast<size_t>(rmax)];
  double best = lmax - 1e-9 * lmax;
  size_t bi = 0, bj = 0;
  bool found = false;
  refresh_slot_sizes();
  const uint16_t* has = has_.empty() ? nullptr : has_.data();
  const size_t n = static_cast<size_t>(n_), S = static_cast<size_t>(S_);
  for (int32_t s = 0; s < S_; ++s) {
    const size_t i = idx(rmax, s);
    const int32_t a = slot_[i];
    if (a < 0) continue;
    const double sa = slot_size_[i];
    if (sa <= 0) continue;
    for (int32_t r = 0; r < m_; ++r) {
      const double lr = load_[static_cast<size_t>(r)];
      // Any swap with rank r leaves max(lmax - d, lr + d) >= (lmax + lr) / 2,
      // so r cannot beat `best` when lr >= 2 best - lmax (an exact prune).
      if (r == rmax || lr >= 2 * best - lmax) continue;
      if (has ? has[static_cast<size_t>(r) * n + static_cast<size_t>(a)] != 0 : holds(r, a)) continue;
      if (spread_ && !spread_ok(a, rmax, r)) continue;
      const double* sizes = slot_size_.data() + static_cast<size_t>(r) * S;
      for (int32_t t = 0; t < S_; ++t) {
        const double sb = sizes[t];
        if (sb >= sa) continue;
        const double nm = std::max(lmax - sa + sb, lr + sa - sb);
        if (nm >= best) continue;
        const size_t j = idx(r, t);
        const int32_t b = slot_[j];
        if (b >= 0 && (holds(rmax, b) || !spread_ok(b, r, rmax))) continue;
        if (!swap_in_budget(i, j)) continue;
        best = nm;
        bi = i;
        bj = j;
        found = true;
      }
    }
  }
  if (found) do_swap(bi, bj);
  return found;
}

// slot_size_[g] = size of slot g's replica (0 when empty), rebuilt after any
// change of counts or slots other than a swap (which do_swap mirrors).
void BlockSolver::refresh_slot_sizes() {
  if (sizes_ok_) return;
  slot_size_.resize(slot_.size());
  for (size_t g = 0; g < slot_.size(); ++g) slot_size_[g] = size_of(slot_[g]);
  sizes_ok_ = true;
  sizes_stamp_ = ++clock_;
}

// Re-allocation: one replica slot moves from expert y (count >= 2, or an
// empty slot) to expert x on the most loaded rank, if the global max drops.
bool BlockSolver::realloc_step() {
  const int32_t rmax = argmax_rank();
  const double lmax = load_[static_cast<size_t>(rmax)];
  std::vector<int32_t> by_load(static_cast<size_t>(m_));
  std::iota(by_load.begin(), by_load.end(), 0);
  std::stable_sort(by_load.begin(), by_load.end(), [&](int32_t a, int32_t b) {
    return load_[static_cast<size_t>(a)] > load_[static_cast<size_t>(b)];
  });
  build_where();
  std::vector<double> delta(static_cast<size_t>(m_), 0.0);
  std::vector<char> touched(static_cast<size_t>(m_), 0);
  double best = lmax - 1e-9 * lmax;
  size_t best_j = 0;
  int32_t best_x = -1;
  // The slots that may take x, per rank in slot order (give_off_[r] ..
  // give_off_[r + 1] in give_slot_): empty, or of an expert y above its
  // least count. They do not depend on x.
  give_off_.resize(static_cast<size_t>(m_) + 1);
  give_slot_.clear();
  for (int32_t r = 0; r < m_; ++r) {
    give_off_[static_cast<size_t>(r)] = static_cast<int32_t>(give_slot_.size());
    for (int32_t t = 0; t < S_; ++t) {
      const int32_t y = slot_[idx(r, t)];
      if (y >= 0 && cnt_[static_cast<size_t>(y)] <= min_cnt_[static_cast<size_t>(y)]) continue;
      give_slot_.push_back(t);
    }
  }
  give_off_[static_cast<size_t>(m_)] = static_cast<int32_t>(give_slot_.size());
  for (int32_t s = 0; s < S_; ++s) {
    const int32_t x = slot_[idx(rmax, s)];
    if (x < 0 || cnt_[static_cast<size_t>(x)] >= cap_) continue;
    const double wx = w_[static_cast<size_t>(x)];
    const double nx = wx / (cnt_[static_cast<size_t>(x)] + 1);
    const double dx = size_of(x) - nx;
    if (lmax - dx >= best) continue;
    for (int32_t r = 0; r < m_; ++r) {
      if (holds(r, x)) continue;
      for (int32_t u = give_off_[static_cast<size_t>(r)]; u < give_off_[static_cast<size_t>(r) + 1]; ++u) {
        const size_t j = idx(r, give_slot_[static_cast<size_t>(u)]);
        const int32_t y = slot_[j];
        if (hard_spread_ && single_host_after_add(x, r)) continue;
        if (y >= 0 && spread_ && host_count(y, host_[static_cast<size_t>(r)]) == 1 &&
            cnt_[static_cast<size_t>(y)] > 1) {
          // Removing y's only replica on this host would lose a host for y.
          continue;
        }
        const double sy = size_of(y);
        if (load_[static_cast<size_t>(r)] + nx - sy >= best) continue;
        if (!set_in_budget(j, x)) continue;
        // A rank of y other than r that lacks x gains dy >= 0 (once per
        // replica of y there, as delta sums it below): if its load plus dy
        // alone is at or above `best`, so is the max below, and the move
        // is out.
        if (y >= 0) {
          const double dy = w_[static_cast<size_t>(y)] / (cnt_[static_cast<size_t>(y)] - 1) - sy;
          bool over = false;
          for (int32_t q : where(y)) {
            if (q == r || holds(q, x)) continue;
            if (load_[static_cast<size_t>(q)] + dy >= best) {
              over = true;
              break;
            }
          }
          if (over) continue;
        }
        // New loads of the affected ranks.
        std::vector<int32_t>& aff = aff_;
        aff.clear();
        for (int32_t q : where(x)) { delta[static_cast<size_t>(q)] -= dx; aff.push_back(q); }
        if (y >= 0) {
          const double dy = w_[static_cast<size_t>(y)] / (cnt_[static_cast<size_t>(y)] - 1) - sy;
          for (int32_t q : where(y)) {
            if (q == r) continue;
            delta[static_cast<size_t>(q)] += dy;
            aff.push_back(q);
          }
        }
        delta[static_cast<size_t>(r)] += nx - sy;
        aff.push_back(r);
        double nm = 0;
        for (int32_t q : aff) {
          touched[static_cast<size_t>(q)] = 1;
          nm = std::max(nm, load_[static_cast<size_t>(q)] + delta[static_cast<size_t>(q)]);
        }
        for (int32_t q : by_load) {
          if (touched[static_cast<size_t>(q)]) continue;
          nm = std::max(nm, load_[static_cast<size_t>(q)]);
          break;
        }
        for (int32_t q : aff) {
          touched[static_cast<size_t>(q)] = 0;
          delta[static_cast<size_t>(q)] = 0;
        }
        if (nm < best) {
          best = nm;
          best_j = j;
          best_x = x;
        }
      }
    }
  }
  if (best_x < 0) return false;
  set_slot(best_j, best_x);
  ++moves_;
  return true;
}

// Ranks holding each expert, ascending, in one flat array (a counting sort:
// no allocation per expert, as this runs once per re-allocation step).
void BlockSolver::build_where() {
  where_off_.assign(static_cast<size_t>(n_) + 1, 0);
  for (int32_t e : slot_)
    if (e >= 0) ++where_off_[static_cast<size_t>(e) + 1];
  for (size_t e = 0; e < static_cast<size_t>(n_); ++e) where_off_[e + 1] += where_off_[e];
  where_rank_.resize(static_cast<size_t>(where_off_.back()));
  where_fill_.assign(where_off_.begin(), where_off_.end() - 1);
  for (int32_t r = 0; r < m_; ++r)
    for (int32_t s = 0; s < S_; ++s) {
      const int32_t e = slot_[idx(r, s)];
      if (e >= 0) where_rank_[static_cast<size_t>(where_fill_[static_cast<size_t>(e)]++)] = r;
    }
}

std::span<const int32_t> BlockSolver::where(int32_t e) const {
  const auto b = static_cast<size_t>(where_off_[static_cast<size_t>(e)]);
  const auto n = static_cast<size_t>(where_off_[static_cast<size_t>(e) + 1]) - b;
  return std::span<const int32_t>(where_rank_).subspan(b, n);
}

// One sweep over all rank pairs: the swap that brings the two loads closest,
// when it brings them closer. Never raises the max, always lowers the sum of
// squared loads; it makes room for the max-rank steps to continue.
bool BlockSolver::pair_sweep() {
  bool any = false;
  refresh_slot_sizes();  // do_swap keeps them
  // A pair found without a swap is passed over while neither rank has
  // swapped since and no slot or size changed otherwise (what the pair's
  // search reads is then the same; with host rules it also reads the host
  // counts of its experts, which other ranks' swaps change: not kept).
  const auto M = static_cast<size_t>(m_);
  if (pair_seen_.size() != M * M) pair_seen_.assign(M * M, 0);
  for (int32_t r1 = 0; r1 < m_; ++r1) {
    for (int32_t r2 = r1 + 1; r2 < m_; ++r2) {
      int64_t& seen = pair_seen_[static_cast<size_t>(r1) * M + static_cast<size_t>(r2)];
      if (!spread_ && seen > sizes_stamp_ && seen > rank_stamp_[static_cast<size_t>(r1)] &&
          seen > rank_stamp_[static_cast<size_t>(r2)])
        continue;
      const bool first_high = load_[static_cast<size_t>(r1)] >= load_[static_cast<size_t>(r2)];
      const int32_t hi = first_high ? r1 : r2, lo = first_high ? r2 : r1;
      const double diff = load_[static_cast<size_t>(hi)] - load_[static_cast<size_t>(lo)];
      if (diff <= 1e-9 * load_[static_cast<size_t>(hi)]) continue;
      double best_gap = diff * (1 - 1e-9);
      size_t bi = 0, bj = 0;
      bool found = false;
      // lo's slot sizes, the least and the largest: an expert of hi whose
      // size less the largest is >= diff, or less the least is <= 0, has no
      // partner below (subtraction rounds monotonically).
      // Sorted (lo_sorted_): for an expert of hi, the least d > 0 comes
      // from the largest size below sa; when that d is not below diff, no
      // slot of lo passes the test below.
      const double* lo_size = slot_size_.data() + idx(lo, 0);
      lo_sorted_.assign(lo_size, lo_size + S_);
      std::sort(lo_sorted_.begin(), lo_sorted_.end());
      const double lo_min = lo_sorted_.front(), lo_max = lo_sorted_.back();
      for (int32_t s = 0; s < S_; ++s) {
        const size_t i = idx(hi, s);
        const int32_t a = slot_[i];
        if (a < 0 || holds(lo, a) || !spread_ok(a, hi, lo)) continue;
        const double sa = size_of(a);
        if (sa - lo_min <= 0 || sa - lo_max >= diff) continue;
        size_t below = lo_sorted_.size();  // lo_min < sa: at least one size below sa
        while (!(lo_sorted_[below - 1] < sa)) --below;
        if (sa - lo_sorted_[below - 1] >= diff) continue;
        for (int32_t t = 0; t < S_; ++t) {
          const double d = sa - lo_size[t];
          if (d <= 0 || d >= diff) continue;
          const double gap = std::abs(diff - 2 * d);
          if (gap >= best_gap) continue;
          const size_t j = idx(lo, t);
          const int32_t b = slot_[j];
          if (b >= 0 && (holds(hi, b) || !spread_ok(b, lo, hi))) continue;
          if (!swap_in_budget(i, j)) continue;
          best_gap = gap;
          bi = i;
          bj = j;
          found = true;
        }
      }
      if (found) {
        do_swap(bi, bj);
        any = true;
      } else {
        seen = ++clock_;
      }
    }
  }
  return any;
}

bool BlockSolver::out_of_time() {
  if (deadline_ == nullptr) return false;
  if (Clock::now() < *deadline_) return false;
  budget_hit_ = true;
  return true;
}

void BlockSolver::local_search() {
  const int64_t limit = opt_.max_iterations > 0 ? opt_.max_iterations : 64 * static_cast<int64_t>(m_) * S_;
  for (int64_t it = 0; it < limit; ++it) {
    if ((it & 15) == 0 && out_of_time()) return;
    if (swap_step()) continue;
    if (opt_.reallocate && realloc_step()) continue;
    // Pair sweeps cost O(ranks^2 x slots^2) each: worth it on small
    // sub-problems, too slow for the 20 ms target at DeepSeek-V3 scale.
    const int32_t max_sweeps = static_cast<int64_t>(m_) * S_ <= kVariantSlots ? kMaxSweeps : 0;
    if (opt_.pair_sweeps && sweeps_ < max_sweeps && pair_sweep()) {
      ++sweeps_;
      continue;
    }
    break;
  }
}

}  // namespace omni::detail
