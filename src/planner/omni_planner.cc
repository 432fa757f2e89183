// The omni planner: water-filling, largest-first packing, local search,
// optional exact shares and host locality. See omni_planner.h for the method.
#include "omniplacement/planner/omni_planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>

#include "omniplacement/core/metrics.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/planner/rank_matching.h"
#include "batch_refine.h"
#include "planner_common.h"

namespace omni {

const char* locality_name(Locality l) {
  switch (l) {
    case Locality::kNone: return "none";
    case Locality::kGroups: return "groups";
    case Locality::kCoactivation: return "coactivation";
    case Locality::kSpread: return "spread";
  }
  return "none";
}

namespace {

using Clock = std::chrono::steady_clock;

// A sub-problem: some experts on some ranks, every rank with S slots. Experts
// and ranks are numbered locally 0..n-1 and 0..m-1.
class BlockSolver {
 public:
  BlockSolver(std::vector<double> w, int32_t num_ranks, int32_t slots_per_rank, int32_t cap,
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
    set_min_counts();
  }

  // Runs steps 1-3. Requires n_ <= m_ * S_.
  void solve() {
    run(0);
    // Small problems also try replica counts capped at ceil(k x load / mean
    // rank load) for k = 1, 2: water-filling can leave more items above half
    // a rank's share than there are ranks, which no packing can pair up well.
    if (static_cast<int64_t>(m_) * S_ > kVariantSlots) return;
    std::vector<int32_t> best = slot_;
    std::vector<int32_t> best_cnt = cnt_;
    double best_max = max_load(), best_sq = sum_sq();
    for (int32_t k = 1; k <= 2; ++k) {
      if (out_of_time()) break;
      run(k);
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
  void solve_from(const std::vector<int32_t>& start, int32_t max_changes_per_rank) {
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

  const std::vector<int32_t>& slots() const { return slot_; }
  int64_t moves() const { return moves_; }
  bool budget_hit() const { return budget_hit_; }
  double max_load() const { return *std::max_element(load_.begin(), load_.end()); }

 private:
  size_t idx(int32_t r, int32_t s) const { return static_cast<size_t>(r) * static_cast<size_t>(S_) + static_cast<size_t>(s); }
  bool holds(int32_t r, int32_t e) const {
    if (!has_.empty()) return has_[static_cast<size_t>(r) * static_cast<size_t>(n_) + static_cast<size_t>(e)] != 0;
    for (int32_t s = 0; s < S_; ++s)
      if (slot_[idx(r, s)] == e) return true;
    return false;
  }
  // Keeps the rank x expert bitmap (when used) in step with slot_.
  void mark(int32_t r, int32_t e, char v) {
    if (!has_.empty() && e >= 0) has_[static_cast<size_t>(r) * static_cast<size_t>(n_) + static_cast<size_t>(e)] = v;
  }
  double size_of(int32_t e) const { return e < 0 ? 0.0 : size_[static_cast<size_t>(e)]; }
  int32_t& host_count(int32_t e, int32_t h) {
    return host_cnt_[static_cast<size_t>(e) * static_cast<size_t>(num_hosts_) + static_cast<size_t>(h)];
  }
  // Moving one replica of e from rank a to rank b keeps e on as many hosts.
  bool spread_ok(int32_t e, int32_t a, int32_t b) {
    if (!spread_ || e < 0) return true;
    const int32_t ha = host_[static_cast<size_t>(a)], hb = host_[static_cast<size_t>(b)];
    if (ha == hb) return true;
    return !(host_count(e, ha) == 1 && host_count(e, hb) >= 1);
  }

  // Hosts holding a replica of e (spread only).
  int32_t hosts_of(int32_t e) {
    int32_t k = 0;
    for (int32_t h = 0; h < num_hosts_; ++h) k += host_count(e, h) > 0;
    return k;
  }
  // Adding a replica of x on rank r would leave x with two or more replicas on one host.
  bool single_host_after_add(int32_t x, int32_t r) {
    return hosts_of(x) == 1 && host_count(x, host_[static_cast<size_t>(r)]) > 0;
  }

  // protect: the heaviest experts carrying opt_.protect of the load need two
  // replicas (when the cap and the number of ranks allow two).
  void set_min_counts() {
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
  void repair_spread() {
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

  // Slots per sub-problem up to which the count variants are tried.
  static constexpr int64_t kVariantSlots = 256;

  double sum_sq() const {
    double s = 0;
    for (double v : load_) s += v * v;
    return s;
  }

  void run(int32_t variant) {
    sweeps_ = 0;
    water_fill(variant);
    pack();
    if (hard_spread_) repair_spread();
    local_search();
  }

  // Replica counts: water-filling under the cap; variant k > 0 also caps each
  // expert at ceil(k x load / mean rank load) replicas (slots left over stay empty).
  void water_fill(int32_t variant) {
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

  void place(int32_t r, int32_t s, int32_t e) {
    sizes_ok_ = false;
    slot_[idx(r, s)] = e;
    mark(r, e, 1);
    load_[static_cast<size_t>(r)] += size_of(e);
    if (spread_ && e >= 0) ++host_count(e, host_[static_cast<size_t>(r)]);
  }

  // Empties every slot and clears the derived state.
  void clear_slots() {
    sizes_ok_ = false;
    slot_.assign(static_cast<size_t>(m_) * static_cast<size_t>(S_), -1);
    load_.assign(static_cast<size_t>(m_), 0.0);
    used_.assign(static_cast<size_t>(m_), 0);
    // A rank x expert bitmap makes "does rank r hold e" O(1); above 16 M
    // entries the slots of the rank are scanned instead.
    if (static_cast<int64_t>(m_) * n_ <= (int64_t{1} << 24)) has_.assign(static_cast<size_t>(m_) * static_cast<size_t>(n_), 0);
    if (spread_) host_cnt_.assign(static_cast<size_t>(n_) * static_cast<size_t>(num_hosts_), 0);
  }

  void pack() {
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
  void pack_by_load(const std::vector<int32_t>& order) {
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
  void add_missing_experts() {
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
  void set_slot(size_t g, int32_t x) {
    const int32_t r = static_cast<int32_t>(g / static_cast<size_t>(S_));
    const int32_t y = slot_[g];
    if (y >= 0) {
      mark(r, y, 0);
      if (spread_) --host_count(y, host_[static_cast<size_t>(r)]);
      if (--cnt_[static_cast<size_t>(y)] > 0) size_[static_cast<size_t>(y)] = w_[static_cast<size_t>(y)] / cnt_[static_cast<size_t>(y)];
    }
    if (x >= 0) {
      mark(r, x, 1);
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
  int32_t change_delta(size_t g, int32_t from, int32_t to) const {
    if (ref_.empty()) return 0;
    return (to >= 0 && to != ref_[g] ? 1 : 0) - (from >= 0 && from != ref_[g] ? 1 : 0);
  }
  // Whether swapping slots i and j keeps both ranks within the change budget.
  bool swap_in_budget(size_t i, size_t j) const {
    if (ref_.empty() || change_budget_ < 0) return true;
    const int32_t a = slot_[i], b = slot_[j];
    const size_t ri = i / static_cast<size_t>(S_), rj = j / static_cast<size_t>(S_);
    return changes_[ri] + change_delta(i, a, b) <= change_budget_ &&
           changes_[rj] + change_delta(j, b, a) <= change_budget_;
  }
  bool set_in_budget(size_t g, int32_t x) const {
    if (ref_.empty() || change_budget_ < 0) return true;
    return changes_[g / static_cast<size_t>(S_)] + change_delta(g, slot_[g], x) <= change_budget_;
  }

  // Every rank with a free slot already holds e: some rank r has a free slot
  // and holds e, a full rank q lacks e and (having more distinct experts than
  // r) holds some f that r lacks. Move f from q to r; q's slot is then free.
  int32_t make_room(int32_t e) {
    for (int32_t r = 0; r < m_; ++r) {
      if (used_[static_cast<size_t>(r)] >= S_) continue;
      for (int32_t q = 0; q < m_; ++q) {
        if (q == r || holds(q, e)) continue;
        for (int32_t s = 0; s < S_; ++s) {
          const int32_t f = slot_[idx(q, s)];
          if (f < 0 || holds(r, f)) continue;
          load_[static_cast<size_t>(q)] -= size_of(f);
          if (spread_) --host_count(f, host_[static_cast<size_t>(q)]);
          mark(q, f, 0);
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

  int32_t argmax_rank() const {
    return static_cast<int32_t>(std::max_element(load_.begin(), load_.end()) - load_.begin());
  }

  void do_swap(size_t i, size_t j) {
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
    mark(ri, a, 0);
    mark(rj, b, 0);
    mark(ri, b, 1);
    mark(rj, a, 1);
    std::swap(slot_[i], slot_[j]);
    if (sizes_ok_) std::swap(slot_size_[i], slot_size_[j]);
    recompute(ri);
    recompute(rj);
    ++moves_;
  }

  void recompute(int32_t r) {
    double s = 0;
    for (int32_t t = 0; t < S_; ++t) s += size_of(slot_[idx(r, t)]);
    load_[static_cast<size_t>(r)] = s;
  }

  // The best move or swap between the most loaded rank and another rank: the
  // one giving the smallest new max of the two ranks, if below the old max.
  // The hot loop of the planner (about 60 accepted steps per layer at
  // DeepSeek-V3 scale): slot sizes are kept in a flat array and the
  // rank x expert bitmap is read directly.
  bool swap_step() {
    const int32_t rmax = argmax_rank();
    const double lmax = load_[static_cast<size_t>(rmax)];
    double best = lmax - 1e-9 * lmax;
    size_t bi = 0, bj = 0;
    bool found = false;
    refresh_slot_sizes();
    const char* has = has_.empty() ? nullptr : has_.data();
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
  void refresh_slot_sizes() {
    if (sizes_ok_) return;
    slot_size_.resize(slot_.size());
    for (size_t g = 0; g < slot_.size(); ++g) slot_size_[g] = size_of(slot_[g]);
    sizes_ok_ = true;
  }

  // Re-allocation: one replica slot moves from expert y (count >= 2, or an
  // empty slot) to expert x on the most loaded rank, if the global max drops.
  bool realloc_step() {
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
    for (int32_t s = 0; s < S_; ++s) {
      const int32_t x = slot_[idx(rmax, s)];
      if (x < 0 || cnt_[static_cast<size_t>(x)] >= cap_) continue;
      const double wx = w_[static_cast<size_t>(x)];
      const double nx = wx / (cnt_[static_cast<size_t>(x)] + 1);
      const double dx = size_of(x) - nx;
      if (lmax - dx >= best) continue;
      for (int32_t r = 0; r < m_; ++r) {
        if (holds(r, x)) continue;
        for (int32_t t = 0; t < S_; ++t) {
          const size_t j = idx(r, t);
          const int32_t y = slot_[j];
          if (y >= 0 && cnt_[static_cast<size_t>(y)] <= min_cnt_[static_cast<size_t>(y)]) continue;
          if (hard_spread_ && single_host_after_add(x, r)) continue;
          if (y >= 0 && spread_ && host_count(y, host_[static_cast<size_t>(r)]) == 1 &&
              cnt_[static_cast<size_t>(y)] > 1) {
            // Removing y's only replica on this host would lose a host for y.
            continue;
          }
          const double sy = size_of(y);
          if (load_[static_cast<size_t>(r)] + nx - sy >= best) continue;
          if (!set_in_budget(j, x)) continue;
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
  void build_where() {
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
  std::span<const int32_t> where(int32_t e) const {
    const auto b = static_cast<size_t>(where_off_[static_cast<size_t>(e)]);
    const auto n = static_cast<size_t>(where_off_[static_cast<size_t>(e) + 1]) - b;
    return std::span<const int32_t>(where_rank_).subspan(b, n);
  }

  // One sweep over all rank pairs: the swap that brings the two loads closest,
  // when it brings them closer. Never raises the max, always lowers the sum of
  // squared loads; it makes room for the max-rank steps to continue.
  bool pair_sweep() {
    bool any = false;
    for (int32_t r1 = 0; r1 < m_; ++r1) {
      for (int32_t r2 = r1 + 1; r2 < m_; ++r2) {
        const bool first_high = load_[static_cast<size_t>(r1)] >= load_[static_cast<size_t>(r2)];
        const int32_t hi = first_high ? r1 : r2, lo = first_high ? r2 : r1;
        const double diff = load_[static_cast<size_t>(hi)] - load_[static_cast<size_t>(lo)];
        if (diff <= 1e-9 * load_[static_cast<size_t>(hi)]) continue;
        double best_gap = diff * (1 - 1e-9);
        size_t bi = 0, bj = 0;
        bool found = false;
        for (int32_t s = 0; s < S_; ++s) {
          const size_t i = idx(hi, s);
          const int32_t a = slot_[i];
          if (a < 0 || holds(lo, a) || !spread_ok(a, hi, lo)) continue;
          const double sa = size_of(a);
          for (int32_t t = 0; t < S_; ++t) {
            const size_t j = idx(lo, t);
            const int32_t b = slot_[j];
            const double d = sa - size_of(b);
            if (d <= 0 || d >= diff) continue;
            const double gap = std::abs(diff - 2 * d);
            if (gap >= best_gap) continue;
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
        }
      }
    }
    return any;
  }

  bool out_of_time() {
    if (deadline_ == nullptr) return false;
    if (Clock::now() < *deadline_) return false;
    budget_hit_ = true;
    return true;
  }

  void local_search() {
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

  std::vector<double> w_;
  int32_t n_, m_, S_, cap_;
  std::vector<int32_t> host_;
  const OmniOptions& opt_;
  const Clock::time_point* deadline_;
  bool spread_ = false;
  bool hard_spread_ = false;  // spread_hosts: every expert with >= 2 replicas on >= 2 hosts
  int32_t num_hosts_ = 1;
  std::vector<int32_t> min_cnt_;        // [n]: replicas re-allocation keeps (2 for protected experts)
  std::vector<int32_t> protect_order_;  // protected experts, heaviest first

  std::vector<int32_t> cnt_;
  std::vector<double> size_;
  std::vector<int32_t> slot_;
  std::vector<double> load_;
  std::vector<int32_t> used_;
  std::vector<char> has_;          // [m, n]: rank r holds expert e (empty when too large)
  std::vector<int32_t> host_cnt_;  // [n, num_hosts]: replicas of e on host h (spread only)
  std::vector<int32_t> where_off_, where_rank_, where_fill_;  // build_where(): ranks of expert e
  std::vector<int32_t> aff_;                                  // realloc_step scratch: affected ranks
  std::vector<double> slot_size_;                             // [m * S]: see refresh_slot_sizes()
  bool sizes_ok_ = false;
  std::vector<int32_t> ref_;      // incremental: the starting slots (empty otherwise)
  std::vector<int32_t> changes_;  // incremental: per rank, slots differing from ref_
  int32_t change_budget_ = -1;
  int64_t moves_ = 0;
  bool budget_hit_ = false;
  int32_t sweeps_ = 0;
  static constexpr int32_t kMaxSweeps = 8;
};

// ---- Exact shares by max-flow ------------------------------------------------

class MaxFlow {
 public:
  explicit MaxFlow(int32_t n) : head_(static_cast<size_t>(n), -1), level_(static_cast<size_t>(n)), it_(static_cast<size_t>(n)) {}
  int32_t add_edge(int32_t u, int32_t v, double cap) {
    edges_.push_back({v, head_[static_cast<size_t>(u)], cap, cap});
    head_[static_cast<size_t>(u)] = static_cast<int32_t>(edges_.size()) - 1;
    edges_.push_back({u, head_[static_cast<size_t>(v)], 0, 0});
    head_[static_cast<size_t>(v)] = static_cast<int32_t>(edges_.size()) - 1;
    return static_cast<int32_t>(edges_.size()) - 2;
  }
  void set_capacity(int32_t e, double cap) { edges_[static_cast<size_t>(e)].orig = cap; }
  void reset() {
    for (size_t i = 0; i < edges_.size(); ++i) edges_[i].cap = edges_[i].orig;
  }
  double flow_on(int32_t e) const { return edges_[static_cast<size_t>(e)].orig - edges_[static_cast<size_t>(e)].cap; }
  double run(int32_t s, int32_t t) {
    double total = 0;
    while (bfs(s, t)) {
      for (size_t i = 0; i < head_.size(); ++i) it_[i] = head_[i];
      for (;;) {
        const double f = dfs(s, t, std::numeric_limits<double>::infinity());
        if (f <= 0) break;
        total += f;
      }
    }
    return total;
  }

 private:
  struct Edge {
    int32_t to, next;
    double cap, orig;
  };
  static constexpr double kTiny = 1e-12;
  bool bfs(int32_t s, int32_t t) {
    std::fill(level_.begin(), level_.end(), -1);
    std::vector<int32_t> q{s};
    level_[static_cast<size_t>(s)] = 0;
    for (size_t k = 0; k < q.size(); ++k) {
      const int32_t u = q[k];
      for (int32_t e = head_[static_cast<size_t>(u)]; e >= 0; e = edges_[static_cast<size_t>(e)].next) {
        const Edge& ed = edges_[static_cast<size_t>(e)];
        if (ed.cap > kTiny && level_[static_cast<size_t>(ed.to)] < 0) {
          level_[static_cast<size_t>(ed.to)] = level_[static_cast<size_t>(u)] + 1;
          q.push_back(ed.to);
        }
      }
    }
    return level_[static_cast<size_t>(t)] >= 0;
  }
  double dfs(int32_t u, int32_t t, double f) {
    if (u == t) return f;
    for (int32_t& e = it_[static_cast<size_t>(u)]; e >= 0; e = edges_[static_cast<size_t>(e)].next) {
      Edge& ed = edges_[static_cast<size_t>(e)];
      if (ed.cap <= kTiny || level_[static_cast<size_t>(ed.to)] != level_[static_cast<size_t>(u)] + 1) continue;
      const double d = dfs(ed.to, t, std::min(f, ed.cap));
      if (d > 0) {
        ed.cap -= d;
        edges_[static_cast<size_t>(e ^ 1)].cap += d;
        return d;
      }
    }
    return 0;
  }
  std::vector<Edge> edges_;
  std::vector<int32_t> head_, level_, it_;
};

}  // namespace

std::vector<double> optimal_shares(std::span<const double> w, std::span<const ExpertId> phy2log, int32_t num_ranks) {
  const int32_t E = static_cast<int32_t>(w.size());
  const size_t G = phy2log.size();
  const int32_t S = static_cast<int32_t>(G / static_cast<size_t>(num_ranks));
  std::vector<int32_t> cnt(static_cast<size_t>(E), 0);
  for (ExpertId e : phy2log)
    if (e >= 0) ++cnt[static_cast<size_t>(e)];
  std::vector<double> shares(G, 0.0);
  std::vector<double> even_load(static_cast<size_t>(num_ranks), 0.0);
  double total = 0;
  for (size_t g = 0; g < G; ++g) {
    const ExpertId e = phy2log[g];
    if (e < 0) continue;
    shares[g] = 1.0 / cnt[static_cast<size_t>(e)];
    even_load[g / static_cast<size_t>(S)] += w[static_cast<size_t>(e)] * shares[g];
  }
  for (ExpertId e = 0; e < E; ++e) total += cnt[static_cast<size_t>(e)] > 0 ? w[static_cast<size_t>(e)] : 0.0;
  if (total <= 0) return shares;
  // Nodes: source, experts, ranks, sink.
  const int32_t src = 0, sink = E + num_ranks + 1;
  MaxFlow mf(E + num_ranks + 2);
  for (ExpertId e = 0; e < E; ++e) mf.add_edge(src, 1 + e, cnt[static_cast<size_t>(e)] > 0 ? w[static_cast<size_t>(e)] : 0.0);
  std::vector<int32_t> slot_edge(G, -1);
  for (size_t g = 0; g < G; ++g) {
    const ExpertId e = phy2log[g];
    if (e < 0) continue;
    // Capacity W rather than infinity, so that flow = capacity - residual stays finite.
    slot_edge[g] = mf.add_edge(1 + e, 1 + E + static_cast<int32_t>(g / static_cast<size_t>(S)), total);
  }
  std::vector<int32_t> rank_edge(static_cast<size_t>(num_ranks));
  for (int32_t r = 0; r < num_ranks; ++r) rank_edge[static_cast<size_t>(r)] = mf.add_edge(1 + E + r, sink, 0);
  auto feasible = [&](double T) {
    for (int32_t r = 0; r < num_ranks; ++r) mf.set_capacity(rank_edge[static_cast<size_t>(r)], T);
    mf.reset();
    return mf.run(src, sink) >= total * (1 - 1e-12);
  };
  double hi = *std::max_element(even_load.begin(), even_load.end());
  double lo = total / num_ranks;
  for (ExpertId e = 0; e < E; ++e)
    if (cnt[static_cast<size_t>(e)] > 0) lo = std::max(lo, w[static_cast<size_t>(e)] / static_cast<double>(num_ranks));
  lo = std::min(lo, hi);
  if (!feasible(hi)) return shares;  // numerical trouble: keep the even split
  for (int it = 0; it < 60 && hi - lo > 1e-9 * hi; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (feasible(mid)) hi = mid;
    else lo = mid;
  }
  OMNI_CHECK(feasible(hi));
  std::vector<double> sum(static_cast<size_t>(E), 0.0);
  for (size_t g = 0; g < G; ++g) {
    if (slot_edge[g] < 0) continue;
    sum[static_cast<size_t>(phy2log[g])] += std::max(0.0, mf.flow_on(slot_edge[g]));
  }
  // Two replicas of one expert on one rank (not produced by omni) would get
  // the flow of both edges; normalising per expert keeps the sum at 1.
  for (size_t g = 0; g < G; ++g) {
    const ExpertId e = phy2log[g];
    if (e < 0 || sum[static_cast<size_t>(e)] <= 0) continue;
    shares[g] = std::max(0.0, mf.flow_on(slot_edge[g])) / sum[static_cast<size_t>(e)];
  }
  return shares;
}

namespace {

// Assignment of experts to hosts: host_experts[h] lists the experts of host h.
using HostSets = std::vector<std::vector<ExpertId>>;

// Expert groups onto hosts: largest group first to the lightest host with
// room (G / H groups each), then pairwise swaps while the heaviest host drops.
HostSets group_hosts(std::span<const double> w, int32_t num_groups, int32_t num_hosts) {
  const int32_t E = static_cast<int32_t>(w.size());
  const int32_t gs = E / num_groups, per_host = num_groups / num_hosts;
  std::vector<double> gl(static_cast<size_t>(num_groups), 0.0);
  for (int32_t g = 0; g < num_groups; ++g)
    for (int32_t k = 0; k < gs; ++k) gl[static_cast<size_t>(g)] += w[static_cast<size_t>(g * gs + k)];
  std::vector<int32_t> order(static_cast<size_t>(num_groups));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return gl[static_cast<size_t>(a)] > gl[static_cast<size_t>(b)]; });
  std::vector<int32_t> host_of(static_cast<size_t>(num_groups));
  std::vector<double> hl(static_cast<size_t>(num_hosts), 0.0);
  std::vector<int32_t> items(static_cast<size_t>(num_hosts), 0);
  for (int32_t g : order) {
    int32_t best = -1;
    for (int32_t h = 0; h < num_hosts; ++h)
      if (items[static_cast<size_t>(h)] < per_host && (best < 0 || hl[static_cast<size_t>(h)] < hl[static_cast<size_t>(best)])) best = h;
    host_of[static_cast<size_t>(g)] = best;
    hl[static_cast<size_t>(best)] += gl[static_cast<size_t>(g)];
    ++items[static_cast<size_t>(best)];
  }
  for (int it = 0; it < 1000; ++it) {
    const int32_t hmax = static_cast<int32_t>(std::max_element(hl.begin(), hl.end()) - hl.begin());
    double best = hl[static_cast<size_t>(hmax)] * (1 - 1e-12);
    int32_t ba = -1, bb = -1;
    for (int32_t a = 0; a < num_groups; ++a) {
      if (host_of[static_cast<size_t>(a)] != hmax) continue;
      for (int32_t b = 0; b < num_groups; ++b) {
        const int32_t hb = host_of[static_cast<size_t>(b)];
        if (hb == hmax) continue;
        const double d = gl[static_cast<size_t>(a)] - gl[static_cast<size_t>(b)];
        if (d <= 0) continue;
        const double nm = std::max(hl[static_cast<size_t>(hmax)] - d, hl[static_cast<size_t>(hb)] + d);
        if (nm < best) { best = nm; ba = a; bb = b; }
      }
    }
    if (ba < 0) break;
    const int32_t hb = host_of[static_cast<size_t>(bb)];
    const double d = gl[static_cast<size_t>(ba)] - gl[static_cast<size_t>(bb)];
    hl[static_cast<size_t>(hmax)] -= d;
    hl[static_cast<size_t>(hb)] += d;
    host_of[static_cast<size_t>(ba)] = hb;
    host_of[static_cast<size_t>(bb)] = hmax;
  }
  HostSets sets(static_cast<size_t>(num_hosts));
  for (int32_t g = 0; g < num_groups; ++g)
    for (int32_t k = 0; k < gs; ++k) sets[static_cast<size_t>(host_of[static_cast<size_t>(g)])].push_back(g * gs + k);
  return sets;
}

// Experts onto hosts by co-activation. Raw pair counts grow with both experts'
// popularity (a hot expert is co-chosen with everything), so the affinity of
// a pair is its lift over independence: coact(a, b) - c_a c_b / C, where c_a
// is a's row sum and C the total. Heaviest expert first, each goes to the host
// (with room for E / H experts and load below (1 + slack) x W / H where
// possible) with the largest affinity to the experts already there, ties to
// the lightest host; then pairwise swaps between hosts while one raises the
// total affinity inside hosts without taking a host above that load cap
// (or above the heaviest host's load, when that is already above it).
HostSets coactivation_hosts(std::span<const double> w, const double* coact, int32_t num_hosts, double slack) {
  const int32_t E = static_cast<int32_t>(w.size());
  const size_t En = static_cast<size_t>(E), Hn = static_cast<size_t>(num_hosts);
  const int32_t per_host = E / num_hosts;
  double total = 0;
  for (double v : w) total += v;
  const double soft_cap = (1 + slack) * total / num_hosts;
  std::vector<double> row(En, 0.0);
  double all = 0;
  for (size_t a = 0; a < En; ++a) {
    for (size_t b = 0; b < En; ++b) row[a] += coact[a * En + b];
    all += row[a];
  }
  std::vector<double> lift(En * En, 0.0);
  for (size_t a = 0; a < En; ++a)
    for (size_t b = 0; b < En; ++b)
      if (a != b) lift[a * En + b] = coact[a * En + b] - (all > 0 ? row[a] * row[b] / all : 0.0);
  std::vector<int32_t> order(En);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return w[static_cast<size_t>(a)] > w[static_cast<size_t>(b)]; });
  std::vector<int32_t> host_of(En, -1), size(Hn, 0);
  std::vector<double> hl(Hn, 0.0);
  std::vector<double> aff(En * Hn, 0.0);  // aff[e * H + h]: lift of e to the experts on host h
  auto add_to = [&](int32_t e, int32_t h, double sign) {
    for (size_t f = 0; f < En; ++f) aff[f * Hn + static_cast<size_t>(h)] += sign * lift[f * En + static_cast<size_t>(e)];
    hl[static_cast<size_t>(h)] += sign * w[static_cast<size_t>(e)];
    size[static_cast<size_t>(h)] += sign > 0 ? 1 : -1;
  };
  for (int32_t e : order) {
    int32_t best = -1;
    bool best_fits = false;
    for (int32_t h = 0; h < num_hosts; ++h) {
      if (size[static_cast<size_t>(h)] >= per_host) continue;
      const bool fits = hl[static_cast<size_t>(h)] + w[static_cast<size_t>(e)] <= soft_cap;
      const double a = aff[static_cast<size_t>(e) * Hn + static_cast<size_t>(h)];
      const double ab = best < 0 ? 0 : aff[static_cast<size_t>(e) * Hn + static_cast<size_t>(best)];
      if (best < 0 || (fits && !best_fits) ||
          (fits == best_fits && (a > ab || (a == ab && hl[static_cast<size_t>(h)] < hl[static_cast<size_t>(best)])))) {
        best = h;
        best_fits = fits;
      }
    }
    host_of[static_cast<size_t>(e)] = best;
    add_to(e, best, +1);
  }
  // Swap refinement: the best swap of a pass, repeated while it gains.
  for (int pass = 0; pass < 4 * E; ++pass) {
    const double cap = std::max(soft_cap, *std::max_element(hl.begin(), hl.end()));
    double best_gain = 1e-9 * (all > 0 ? all : 1.0);
    int32_t ba = -1, bb = -1;
    for (int32_t a = 0; a < E; ++a) {
      const int32_t ha = host_of[static_cast<size_t>(a)];
      for (int32_t b = a + 1; b < E; ++b) {
        const int32_t hb = host_of[static_cast<size_t>(b)];
        if (ha == hb) continue;
        const double gain = aff[static_cast<size_t>(a) * Hn + static_cast<size_t>(hb)] -
                            aff[static_cast<size_t>(a) * Hn + static_cast<size_t>(ha)] +
                            aff[static_cast<size_t>(b) * Hn + static_cast<size_t>(ha)] -
                            aff[static_cast<size_t>(b) * Hn + static_cast<size_t>(hb)] -
                            2 * lift[static_cast<size_t>(a) * En + static_cast<size_t>(b)];
        if (gain <= best_gain) continue;
        const double d = w[static_cast<size_t>(b)] - w[static_cast<size_t>(a)];
        if (hl[static_cast<size_t>(ha)] + d > cap || hl[static_cast<size_t>(hb)] - d > cap) continue;
        best_gain = gain;
        ba = a;
        bb = b;
      }
    }
    if (ba < 0) break;
    const int32_t ha = host_of[static_cast<size_t>(ba)], hb = host_of[static_cast<size_t>(bb)];
    add_to(ba, ha, -1);
    add_to(bb, hb, -1);
    add_to(ba, hb, +1);
    add_to(bb, ha, +1);
    host_of[static_cast<size_t>(ba)] = hb;
    host_of[static_cast<size_t>(bb)] = ha;
  }
  HostSets sets(Hn);
  for (int32_t e = 0; e < E; ++e) sets[static_cast<size_t>(host_of[static_cast<size_t>(e)])].push_back(e);
  return sets;
}

struct LayerOut {
  std::vector<ExpertId> phy2log;
  int64_t moves = 0;
  bool budget_hit = false;
};

double max_rank_load(std::span<const double> w, const std::vector<ExpertId>& phy2log, int32_t R) {
  const size_t S = phy2log.size() / static_cast<size_t>(R);
  std::vector<int32_t> cnt(w.size(), 0);
  for (ExpertId e : phy2log)
    if (e >= 0) ++cnt[static_cast<size_t>(e)];
  double mx = 0;
  for (size_t r = 0; r < static_cast<size_t>(R); ++r) {
    double s = 0;
    for (size_t k = 0; k < S; ++k) {
      const ExpertId e = phy2log[r * S + k];
      if (e >= 0) s += w[static_cast<size_t>(e)] / cnt[static_cast<size_t>(e)];
    }
    mx = std::max(mx, s);
  }
  return mx;
}

LayerOut plan_flat(std::span<const double> w, int32_t R, int32_t S, int32_t cap, const std::vector<int32_t>& host,
                   const OmniOptions& opt, const Clock::time_point* deadline) {
  BlockSolver solver(std::vector<double>(w.begin(), w.end()), R, S, cap, host, opt, deadline);
  solver.solve();
  return {solver.slots(), solver.moves(), solver.budget_hit()};
}

// Each host planned on its own ranks with its own experts.
LayerOut plan_by_host(std::span<const double> w, int32_t S, int32_t cap, const Topology& topo, const HostSets& sets,
                      const OmniOptions& opt, const Clock::time_point* deadline) {
  const int32_t R = topo.num_ranks();
  LayerOut out;
  out.phy2log.assign(static_cast<size_t>(R) * static_cast<size_t>(S), kEmptySlot);
  for (HostId h = 0; h < topo.num_hosts(); ++h) {
    const auto ranks = topo.ranks_of_host(h);
    const auto& experts = sets[static_cast<size_t>(h)];
    std::vector<double> sub(experts.size());
    for (size_t i = 0; i < experts.size(); ++i) sub[i] = w[static_cast<size_t>(experts[i])];
    BlockSolver solver(std::move(sub), static_cast<int32_t>(ranks.size()), S, cap, {}, opt, deadline);
    solver.solve();
    for (size_t lr = 0; lr < ranks.size(); ++lr)
      for (int32_t s = 0; s < S; ++s) {
        const int32_t le = solver.slots()[lr * static_cast<size_t>(S) + static_cast<size_t>(s)];
        out.phy2log[static_cast<size_t>(ranks[lr]) * static_cast<size_t>(S) + static_cast<size_t>(s)] =
            le < 0 ? kEmptySlot : experts[static_cast<size_t>(le)];
      }
    out.moves += solver.moves();
    out.budget_hit |= solver.budget_hit();
  }
  return out;
}

// Every expert with two or more replicas in `phy2log` ([R * S]) sits on at
// least two hosts (host[r] = host of rank r), where there are two hosts.
bool spread_over_hosts(const std::vector<ExpertId>& phy2log, const std::vector<int32_t>& host, int32_t S) {
  if (*std::max_element(host.begin(), host.end()) == 0) return true;
  int32_t E = 0;
  for (ExpertId e : phy2log) E = std::max(E, e + 1);
  std::vector<int32_t> first(static_cast<size_t>(E), -1);
  std::vector<char> count(static_cast<size_t>(E), 0), two_hosts(static_cast<size_t>(E), 0);
  for (size_t g = 0; g < phy2log.size(); ++g) {
    const ExpertId e = phy2log[g];
    if (e < 0) continue;
    const int32_t h = host[g / static_cast<size_t>(S)];
    auto& f = first[static_cast<size_t>(e)];
    if (f < 0) f = h;
    else if (f != h) two_hosts[static_cast<size_t>(e)] = 1;
    count[static_cast<size_t>(e)] = static_cast<char>(std::min(2, count[static_cast<size_t>(e)] + 1));
  }
  for (int32_t e = 0; e < E; ++e)
    if (count[static_cast<size_t>(e)] >= 2 && !two_hosts[static_cast<size_t>(e)]) return false;
  return true;
}

// Incremental: local search from the layer's current slots under the move
// budget; with no budget, a from-scratch plan relabelled onto the current ranks
// (maximum overlap) is taken instead when it is better by more than min_gain.
LayerOut plan_incremental(std::span<const double> w, const Placement& cur, LayerId l, int32_t S, int32_t cap,
                          const std::vector<int32_t>& host, const OmniOptions& opt, const Clock::time_point* deadline) {
  const int32_t R = cur.num_ranks();
  const int32_t So = cur.slots_per_rank(l);
  const auto old_row = cur.phy2log(l);
  std::vector<int32_t> start(static_cast<size_t>(R) * static_cast<size_t>(S), kEmptySlot);
  for (int32_t r = 0; r < R; ++r)
    for (int32_t s = 0; s < std::min(S, So); ++s)
      start[static_cast<size_t>(r) * static_cast<size_t>(S) + static_cast<size_t>(s)] =
          old_row[static_cast<size_t>(r) * static_cast<size_t>(So) + static_cast<size_t>(s)];
  BlockSolver solver(std::vector<double>(w.begin(), w.end()), R, S, cap, host, opt, deadline);
  solver.solve_from(start, opt.max_moves_per_rank);
  LayerOut out{solver.slots(), solver.moves(), solver.budget_hit()};
  if (opt.max_moves_per_rank >= 0) {
    if (opt.escalate_gain <= 0) return out;
    // Escalation: the layer is planned again without the move budget, and that
    // plan is taken when the budget leaves more than escalate_gain x mean rank
    // load of max rank load on the table (a phase shift), so that a shift is
    // followed at once instead of over many budgeted re-plans that chase noise.
    OmniOptions free_opt = opt;
    free_opt.max_moves_per_rank = -1;
    free_opt.escalate_gain = 0;
    LayerOut free = plan_incremental(w, cur, l, S, cap, host, free_opt, deadline);
    double total = 0;
    for (double v : w) total += v;
    free.moves += out.moves;
    free.budget_hit |= out.budget_hit;
    if (max_rank_load(w, free.phy2log, R) < max_rank_load(w, out.phy2log, R) - opt.escalate_gain * total / R) {
      return free;
    }
    out.moves = free.moves;
    out.budget_hit = free.budget_hit;
    return out;
  }
  LayerOut scratch = plan_flat(w, R, S, cap, host, opt, deadline);
  const std::vector<RankId> to = match_ranks(old_row, scratch.phy2log, R);
  scratch.phy2log = relabel_and_align(old_row, scratch.phy2log, R, to);
  double total = 0;
  for (double v : w) total += v;
  const double margin = opt.min_gain * total / R;
  scratch.moves += out.moves;
  scratch.budget_hit |= out.budget_hit;
  // The relabelling ignores hosts: with spread_hosts a relabelled plan that
  // leaves a replicated expert on one host is not taken.
  const bool scratch_spread = !opt.spread_hosts || host.empty() || spread_over_hosts(scratch.phy2log, host, S);
  if (scratch_spread && max_rank_load(w, scratch.phy2log, R) < max_rank_load(w, out.phy2log, R) - margin) return scratch;
  out.moves = scratch.moves;
  out.budget_hit = scratch.budget_hit;
  return out;
}

}  // namespace

std::vector<ExpertId> omni_plan_layer(std::span<const double> expert_loads, int32_t num_ranks, int32_t slots_per_rank,
                                      const OmniOptions& options) {
  OMNI_CHECK(static_cast<int64_t>(expert_loads.size()) <= static_cast<int64_t>(num_ranks) * slots_per_rank);
  const int32_t cap = options.max_replicas_per_expert > 0 ? options.max_replicas_per_expert : num_ranks;
  return plan_flat(expert_loads, num_ranks, slots_per_rank, cap, {}, options, nullptr).phy2log;
}

namespace {

// omni(per_batch=true): reshapes layer l's plan for the per-batch split
// (batch_refine.h), on the samples (spread around their mean) or the load.
// Mean over layers of the total variation distance between two loads'
// per-layer shares of tokens (0: same mix, 1: disjoint experts).
double load_distance(const LoadMatrix& a, const LoadMatrix& b) {
  double sum = 0;
  for (LayerId l = 0; l < a.num_layers(); ++l) {
    const double ta = a.layer_total(l), tb = b.layer_total(l);
    if (ta <= 0 || tb <= 0) continue;
    const auto ra = a.row(l), rb = b.row(l);
    double d = 0;
    for (size_t e = 0; e < ra.size(); ++e) d += std::abs(ra[e] / ta - rb[e] / tb);
    sum += 0.5 * d;
  }
  return a.num_layers() > 0 ? sum / a.num_layers() : 0.0;
}

// The samples omni(per_batch=true) scores on: those whose distance to the
// newest is within per_batch_shift x the median distance between
// consecutive samples (older ones describe a workload that has moved on).
std::vector<const LoadMatrix*> current_samples(const std::vector<LoadMatrix>& samples, double shift) {
  std::vector<const LoadMatrix*> out;
  if (samples.empty()) return out;
  const LoadMatrix& newest = samples.back();
  if (shift <= 0 || samples.size() < 3) {
    for (const LoadMatrix& m : samples) out.push_back(&m);
    return out;
  }
  std::vector<double> steps;
  for (size_t k = 1; k < samples.size(); ++k) steps.push_back(load_distance(samples[k - 1], samples[k]));
  std::nth_element(steps.begin(), steps.begin() + static_cast<std::ptrdiff_t>(steps.size() / 2), steps.end());
  const double noise = steps[steps.size() / 2];
  for (size_t k = 0; k + 1 < samples.size(); ++k)
    if (load_distance(samples[k], newest) <= shift * noise) out.push_back(&samples[k]);
  out.push_back(&newest);
  return out;
}

void refine_layer_for_batch_split(const PlanInput& in, const std::vector<const LoadMatrix*>& kept, LayerId l,
                                  int32_t S, int32_t cap, const OmniOptions& opt, const Clock::time_point* deadline,
                                  LayerOut& lo) {
  const LoadMatrix& load = *in.load;
  const int32_t E = load.num_experts(), R = in.num_ranks;
  std::vector<std::vector<double>> samples;
  if (!kept.empty()) {
    for (const LoadMatrix* m : kept) samples.emplace_back(m->row(l).begin(), m->row(l).end());
    std::vector<double> mean(static_cast<size_t>(E), 0.0);
    for (const auto& x : samples)
      for (size_t e = 0; e < x.size(); ++e) mean[e] += x[e] / static_cast<double>(samples.size());
    for (auto& x : samples)
      for (size_t e = 0; e < x.size(); ++e) x[e] = std::max(0.0, mean[e] + opt.per_batch_spread * (x[e] - mean[e]));
  } else {
    samples.emplace_back(load.row(l).begin(), load.row(l).end());
  }
  std::span<const ExpertId> current;
  if (in.current != nullptr && in.current->slots_per_rank(l) == S) {
    current = in.current->phy2log(l);
    // Only a placement holding every expert can be a starting point.
    std::vector<char> held(static_cast<size_t>(E), 0);
    for (ExpertId e : current)
      if (e >= 0) held[static_cast<size_t>(e)] = 1;
    if (std::find(held.begin(), held.end(), 0) != held.end()) current = {};
  }
  detail::BatchRefineOptions bo;
  bo.num_ranks = R;
  bo.slots_per_rank = S;
  bo.max_replicas_per_expert = cap;
  bo.move_cost = current.empty() ? 0.0 : opt.per_batch_move_cost;
  bo.max_moves_per_rank = current.empty() ? -1 : opt.max_moves_per_rank;
  bo.max_evals = opt.per_batch_evals > 0 ? opt.per_batch_evals : int64_t{400} * R * S;
  bo.seed = 0x5EEDULL + static_cast<uint64_t>(l);
  detail::BatchRefineResult r = detail::refine_for_batch_split(lo.phy2log, current, samples, bo, deadline);
  lo.phy2log = std::move(r.phy2log);
  lo.moves += r.moves;
  lo.budget_hit |= r.budget_hit;
}

}  // namespace

StatusOr<PlanResult> omni_plan(const PlanInput& in, const OmniOptions& opt) {
  const auto start = Clock::now();
  OMNI_ASSIGN_OR_RETURN(std::vector<int32_t> spr, in.resolve_slots_per_rank());
  OMNI_ASSIGN_OR_RETURN(int32_t num_nodes, in.resolve_num_nodes());
  const LoadMatrix& load = *in.load;
  const int32_t L = load.num_layers(), E = load.num_experts(), R = in.num_ranks;
  const int32_t cap = opt.max_replicas_per_expert > 0 ? std::min(opt.max_replicas_per_expert, R) : R;

  // Topology for locality.
  if (opt.spread_hosts && (opt.locality == Locality::kGroups || opt.locality == Locality::kCoactivation)) {
    return invalid_argument_error(str_cat("omni(spread_hosts=true) keeps an expert's replicas on different hosts; it "
                                          "combines with locality=none or spread, not ", locality_name(opt.locality)));
  }
  const bool needs_topology = opt.locality != Locality::kNone || opt.spread_hosts;
  Topology topo;
  if (needs_topology) {
    if (in.topology) {
      topo = *in.topology;
    } else {
      if (R % num_nodes != 0) {
        return invalid_argument_error(str_cat("omni(", opt.spread_hosts ? "spread_hosts" : "locality=",
                                              opt.spread_hosts ? "" : locality_name(opt.locality), "): num_ranks (", R,
                                              ") must be a multiple of num_nodes (", num_nodes,
                                              ") or a topology must be given"));
      }
      OMNI_ASSIGN_OR_RETURN(topo, Topology::uniform(R, R / num_nodes));
    }
  }
  const int32_t H = needs_topology ? topo.num_hosts() : 1;
  if (opt.locality == Locality::kGroups) {
    if (in.num_groups < 1 || E % in.num_groups != 0 || in.num_groups % H != 0) {
      return invalid_argument_error(str_cat("omni(locality=groups): needs num_experts (", E,
                                            ") a multiple of num_groups (", in.num_groups,
                                            ") and num_groups a multiple of the number of hosts (", H, ")"));
    }
  }
  if (opt.locality == Locality::kCoactivation) {
    if (in.coactivation == nullptr) {
      return invalid_argument_error("omni(locality=coactivation): PlanInput::coactivation is required");
    }
    const size_t need = static_cast<size_t>(L) * static_cast<size_t>(E) * static_cast<size_t>(E);
    if (in.coactivation->size() != need) {
      return invalid_argument_error(str_cat("omni(locality=coactivation): coactivation has ", in.coactivation->size(),
                                            " elements, expected num_layers x num_experts x num_experts = ", need));
    }
    if (E % H != 0) {
      return invalid_argument_error(str_cat("omni(locality=coactivation): num_experts (", E,
                                            ") must be a multiple of the number of hosts (", H, ")"));
    }
  }
  if (opt.per_batch && (opt.locality != Locality::kNone || opt.spread_hosts)) {
    return invalid_argument_error(str_cat("omni(per_batch=true) reshapes layers for the per-batch split without host "
                                          "constraints; it needs locality=none and spread_hosts=false (got locality=",
                                          locality_name(opt.locality), ", spread_hosts=",
                                          opt.spread_hosts ? "true" : "false", ")"));
  }
  if (in.samples != nullptr) {
    for (size_t k = 0; k < in.samples->size(); ++k) {
      const LoadMatrix& m = (*in.samples)[k];
      if (m.num_layers() != L || m.num_experts() != E) {
        return invalid_argument_error(str_cat("omni: sample ", k, " has ", m.num_layers(), " layers x ",
                                              m.num_experts(), " experts; the load has ", L, " x ", E));
      }
    }
  }
  std::vector<int32_t> host;
  if (opt.locality == Locality::kSpread || opt.spread_hosts) host = topo.host_of_rank();
  if (in.current != nullptr) {
    const Placement& cur = *in.current;
    if (cur.num_layers() != L || cur.num_experts() != E || cur.num_ranks() != R) {
      return invalid_argument_error(str_cat("omni: the current placement (", cur.summary(),
                                            ") does not match the load (", L, " layers, ", E, " experts) and ", R,
                                            " ranks"));
    }
    if (opt.locality == Locality::kGroups || opt.locality == Locality::kCoactivation) {
      return invalid_argument_error(str_cat("omni: incremental planning (a current placement) supports locality=none "
                                            "or spread, not ", locality_name(opt.locality)));
    }
  }

  Clock::time_point deadline_value{};
  const Clock::time_point* deadline = nullptr;
  if (opt.time_budget_ms > 0) {
    deadline_value = start + std::chrono::microseconds(static_cast<int64_t>(opt.time_budget_ms * 1000.0));
    deadline = &deadline_value;
  }

  std::vector<const LoadMatrix*> kept_samples;
  if (opt.per_batch && in.samples != nullptr) kept_samples = current_samples(*in.samples, opt.per_batch_shift);

  PlanResult result;
  PlacementLayout layout;
  layout.num_ranks = R;
  layout.num_experts = E;
  layout.slots_per_rank = spr;
  layout.phy2log.resize(static_cast<size_t>(L));
  if (opt.shares) layout.shares.resize(static_cast<size_t>(L));
  for (LayerId l = 0; l < L; ++l) {
    const auto w = load.row(l);
    const int32_t S = spr[static_cast<size_t>(l)];
    LayerOut lo;
    if (opt.locality == Locality::kGroups || opt.locality == Locality::kCoactivation) {
      const HostSets sets =
          opt.locality == Locality::kGroups
              ? group_hosts(w, in.num_groups, H)
              : coactivation_hosts(w, in.coactivation->data() + static_cast<size_t>(l) * static_cast<size_t>(E) *
                                                                    static_cast<size_t>(E),
                                   H, opt.locality_slack);
      bool fits = true;
      for (HostId h = 0; h < H; ++h) {
        fits &= static_cast<int64_t>(sets[static_cast<size_t>(h)].size()) <=
                static_cast<int64_t>(topo.ranks_of_host(h).size()) * S;
      }
      LayerOut flat = plan_flat(w, R, S, cap, {}, opt, deadline);
      if (fits) {
        lo = plan_by_host(w, S, cap, topo, sets, opt, deadline);
        const double mean = load.layer_total(l) / R;
        if (max_rank_load(w, lo.phy2log, R) > max_rank_load(w, flat.phy2log, R) + opt.locality_slack * mean) {
          flat.moves += lo.moves;
          flat.budget_hit |= lo.budget_hit;
          lo = std::move(flat);
        } else {
          lo.moves += flat.moves;
          lo.budget_hit |= flat.budget_hit;
        }
      } else {
        lo = std::move(flat);
      }
    } else if (in.current != nullptr) {
      lo = plan_incremental(w, *in.current, l, S, cap, host, opt, deadline);
    } else {
      lo = plan_flat(w, R, S, cap, host, opt, deadline);
    }
    if (opt.per_batch) refine_layer_for_batch_split(in, kept_samples, l, S, cap, opt, deadline, lo);
    result.stats.local_search_moves += lo.moves;
    result.stats.time_budget_hit |= lo.budget_hit;
    if (opt.shares) layout.shares[static_cast<size_t>(l)] = optimal_shares(w, lo.phy2log, R);
    layout.phy2log[static_cast<size_t>(l)] = std::move(lo.phy2log);
  }
  OMNI_ASSIGN_OR_RETURN(result.placement, Placement::create(std::move(layout)));
  if (in.current != nullptr) {
    // min_gain: keep the placement in force when the plan would not improve
    // the mean over layers of max / mean rank load by at least that much.
    const Placement& cur = *in.current;
    bool same_shape = true;
    for (LayerId l = 0; l < L; ++l) same_shape &= cur.slots_per_rank(l) == spr[static_cast<size_t>(l)];
    if (same_shape && opt.min_gain > 0) {
      OMNI_ASSIGN_OR_RETURN(PlacementBalance before, placement_balance(cur, load));
      OMNI_ASSIGN_OR_RETURN(PlacementBalance after, placement_balance(result.placement, load));
      if (before.mean_max_over_mean - after.mean_max_over_mean < opt.min_gain) {
        result.placement = cur;
        result.stats.skipped = true;
      }
    }
    result.stats.slots_changed = slots_changed(cur, result.placement);
  }
  result.replica_rank = replica_rank_by_slot(result.placement.layout());
  result.stats.same_rank_duplicates = same_rank_duplicates(result.placement);
  result.stats.policy = locality_name(opt.locality);
  result.stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace omni
