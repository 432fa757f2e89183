// Internal (not installed): BlockSolver, the core of the omni planner
// (omni_planner.h, steps 1-3): one sub-problem of some experts on some ranks,
// every rank with the same number of slots, solved by water-filling the
// replica counts, largest-first packing and local search (best move or swap
// off the most loaded rank, replica re-allocation, pairwise sweeps on small
// problems), optionally under host rules (locality=spread, spread_hosts,
// protect) and, for incremental plans, a per-rank budget of changed slots.
// Experts and ranks are numbered locally 0..n-1 and 0..m-1; the caller maps
// them to global ids.
//
//   detail::BlockSolver solver(loads, /*num_ranks=*/8, /*slots_per_rank=*/9, /*cap=*/8, {}, options, nullptr);
//   solver.solve();
//   solver.slots();                       // [8 * 9] local expert per slot, -1 empty
//
// Deterministic: the same input gives the same slots (unless the deadline
// stops the search; budget_hit() says so). Thread safety: one thread per solver.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/planner/omni_planner.h"

namespace omni::detail {

using Clock = std::chrono::steady_clock;

class BlockSolver {
 public:
  // w: load of each local expert [n] (>= 0); ranks 0..num_ranks-1 with slots_per_rank
  // slots each; cap: most replicas of one expert (clamped to [1, num_ranks]);
  // host_of_rank: [num_ranks] host of each local rank, or empty (no host rules);
  // opt and *deadline (may be null) are borrowed for the solver's lifetime.
  BlockSolver(std::vector<double> w, int32_t num_ranks, int32_t slots_per_rank, int32_t cap,
              std::vector<int32_t> host_of_rank, const OmniOptions& opt, const Clock::time_point* deadline);
  // Runs steps 1-3. Requires n_ <= m_ * S_.
  void solve();
  // Incremental: starts from `start` ([m * S] local expert ids, -1 empty),
  // first giving a replica to every expert that has none (always allowed),
  // then improves by local search while no rank has more than
  // max_changes_per_rank slots whose expert differs from `start` (< 0: no limit).
  void solve_from(const std::vector<int32_t>& start, int32_t max_changes_per_rank);

  // The local expert of every slot, [num_ranks * slots_per_rank], -1 empty.
  const std::vector<int32_t>& slots() const { return slot_; }
  // Accepted local-search steps so far.
  int64_t moves() const { return moves_; }
  // Whether the deadline stopped the search.
  bool budget_hit() const { return budget_hit_; }
  // The most loaded rank's load (sum of its replicas' load / count).
  double max_load() const { return *std::max_element(load_.begin(), load_.end()); }

 private:
  // Defined here so that the search loops inline it.
  bool holds(int32_t r, int32_t e) const {
    if (!has_.empty()) return has_[static_cast<size_t>(r) * static_cast<size_t>(n_) + static_cast<size_t>(e)] != 0;
    for (int32_t s = 0; s < S_; ++s)
      if (slot_[idx(r, s)] == e) return true;
    return false;
  }
  // Keeps the rank x expert counts (when used) in step with slot_.
  void mark(int32_t r, int32_t e, int32_t delta);
  int32_t& host_count(int32_t e, int32_t h);
  // Moving one replica of e from rank a to rank b keeps e on as many hosts.
  bool spread_ok(int32_t e, int32_t a, int32_t b);
  // Hosts holding a replica of e (spread only).
  int32_t hosts_of(int32_t e);
  // Adding a replica of x on rank r would leave x with two or more replicas on one host.
  bool single_host_after_add(int32_t x, int32_t r);
  // protect: the heaviest experts carrying opt_.protect of the load need two
  // replicas (when the cap and the number of ranks allow two).
  void set_min_counts();
  // spread_hosts after packing: every expert with two or more replicas all on
  // one host swaps one of them with a slot of another host, choosing the swap
  // that keeps the two ranks' larger load smallest and never costs the other
  // expert a host.
  void repair_spread();
  double sum_sq() const;
  // Steps 2-3 from the water-filled counts (cnt_, size_): packing, then local search.
  void run();
  // Replica counts: water-filling under the cap; variant k > 0 also caps each
  // expert at ceil(k x load / mean rank load) replicas (slots left over stay empty).
  void water_fill(int32_t variant);
  void place(int32_t r, int32_t s, int32_t e);
  // Empties every slot and clears the derived state.
  void clear_slots();
  void pack();
  // pack() without hosts: the same choice (least loaded rank with a free slot
  // that lacks the expert, ties to the lower rank id) from ranks kept sorted
  // by (load, rank), instead of a scan of every rank for every replica.
  void pack_by_load(const std::vector<int32_t>& order);
  // Experts without a replica (e.g. after a failure or a shrink of the slots)
  // take, heaviest first, the slot that leaves its rank least loaded among
  // empty slots and replicas of experts with two or more.
  void add_missing_experts();
  // Puts expert x (or -1) in slot g, updating counts, sizes and loads.
  void set_slot(size_t g, int32_t x);
  // Change in rank g's count of slots differing from the start when slot g
  // goes from expert `from` to expert `to`.
  int32_t change_delta(size_t g, int32_t from, int32_t to) const;
  // Whether swapping slots i and j keeps both ranks within the change budget.
  bool swap_in_budget(size_t i, size_t j) const;
  bool set_in_budget(size_t g, int32_t x) const;
  // Every rank with a free slot already holds e: some rank r has a free slot
  // and holds e, a full rank q lacks e and (having more distinct experts than
  // r) holds some f that r lacks. Move f from q to r; q's slot is then free.
  int32_t make_room(int32_t e);
  int32_t argmax_rank() const;
  void do_swap(size_t i, size_t j);
  void recompute(int32_t r);
  // The best move or swap between the most loaded rank and another rank: the
  // one giving the smallest new max of the two ranks, if below the old max.
  // The hot loop of the planner (about 60 accepted steps per layer at
  // DeepSeek-V3 scale): slot sizes are kept in a flat array and the
  // rank x expert counts are read directly.
  bool swap_step();
  // slot_size_[g] = size of slot g's replica (0 when empty), rebuilt after any
  // change of counts or slots other than a swap (which do_swap mirrors).
  void refresh_slot_sizes();
  // Re-allocation: one replica slot moves from expert y (count >= 2, or an
  // empty slot) to expert x on the most loaded rank, if the global max drops.
  bool realloc_step();
  // Ranks holding each expert, ascending, in one flat array (a counting sort:
  // no allocation per expert, as this runs once per re-allocation step).
  void build_where();
  std::span<const int32_t> where(int32_t e) const;
  // One sweep over all rank pairs: the swap that brings the two loads closest,
  // when it brings them closer. Never raises the max, always lowers the sum of
  // squared loads; it makes room for the max-rank steps to continue.
  bool pair_sweep();
  bool out_of_time();
  void local_search();

  size_t idx(int32_t r, int32_t s) const { return static_cast<size_t>(r) * static_cast<size_t>(S_) + static_cast<size_t>(s); }
  double size_of(int32_t e) const { return e < 0 ? 0.0 : size_[static_cast<size_t>(e)]; }
  // Slots per sub-problem up to which the count variants are tried.
  static constexpr int64_t kVariantSlots = 256;
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
  std::vector<uint16_t> has_;      // [m, n]: copies of expert e on rank r (empty when too large)
  std::vector<int32_t> host_cnt_;  // [n, num_hosts]: replicas of e on host h (spread only)
  std::vector<int32_t> where_off_, where_rank_, where_fill_;  // build_where(): ranks of expert e
  std::vector<int32_t> aff_;                                  // realloc_step scratch: affected ranks
  std::vector<int32_t> give_off_, give_slot_;                 // realloc_step scratch: slots that may take x
  std::vector<double> lo_sorted_;                             // pair_sweep scratch: the lower rank's slot sizes, ascending
  std::vector<double> slot_size_;                             // [m * S]: see refresh_slot_sizes()
  bool sizes_ok_ = false;
  // pair_sweep's memo, on one clock (++clock_ per event): when slot_size_ was
  // last rebuilt (any change but a swap comes before a rebuild), when each
  // rank last swapped ([m]), and when each pair r1 < r2 was last searched
  // without a swap found ([m * m], 0: never).
  int64_t clock_ = 0;
  int64_t sizes_stamp_ = 0;
  std::vector<int64_t> rank_stamp_;
  std::vector<int64_t> pair_seen_;
  std::vector<int32_t> ref_;      // incremental: the starting slots (empty otherwise)
  std::vector<int32_t> changes_;  // incremental: per rank, slots differing from ref_
  int32_t change_budget_ = -1;
  int64_t moves_ = 0;
  bool budget_hit_ = false;
  int32_t sweeps_ = 0;
  static constexpr int32_t kMaxSweeps = 8;
};

}  // namespace omni::detail
