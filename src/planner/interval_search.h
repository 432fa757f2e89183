// Internal (not installed): IntervalSearch, the local search of omni's plan
// for the next interval (omni_planner.h). One layer at a time.
//
// It minimises value = F + C over placements of one layer, where
//   F = (1 / K) sum over scenarios k of max over ranks r of L_k(r): the
//       expected busiest rank's tokens in the next window, the scenarios
//       being the forecast's (load_forecast.h); L_k(r) is rank r's load under
//       the dispatch in force: with static shares each expert's scenario load
//       split evenly over its replicas; with the per-batch split the split
//       the runtime runs on that load (water-filled over the replicas);
//   C = sum of MovePrices::price(r, e) over the experts each rank holds that
//       it does not hold in the placement in force (tokens per window).
// A move is kept only when it lowers F by more than it adds to C, so no
// threshold is needed: noise the forecast does not expect to last saves
// nothing, a shift the forecast carries pays for its moves.
//
// Moves: swap the experts of two slots on different ranks (either may be an
// empty slot), give a slot to another expert (taking it from an expert with
// another replica, or an empty slot), or empty a slot of an expert with
// another replica. Never two replicas of an expert on one rank, never more
// than `cap` replicas, never fewer than one.
//
// run(false) looks for where the forecast wants the layer to go: every step
// takes the best move off a busiest rank that lowers F by more than half the
// cheapest move's price (smaller gains are noise-sized and would only be
// given back). run(true) then prices every move: it also tries every move
// that brings an expert back to a rank that held it (or drops a spare replica
// that was moved in), so a move that does not pay for itself in the company
// of the others is given back; single moves seldom pay alone when a shift
// needs several, which a search that priced every step would never start.
//
// Scoring is incremental (only the ranks a move touches change): with static
// shares exactly, from the three busiest ranks of each scenario; with the
// per-batch split from the split's last result: the ranks at the busiest
// level form a pool that the split keeps level, so a move that takes load
// off the pool lowers the level by that load over the pool's size, and a
// replica that links a rank outside the pool to it lets the pool spread onto
// that rank. After every move taken the split is run again, and a move whose
// split is not better is undone and not tried again in that step.
//
//   detail::IntervalSearch s(problem);
//   s.start_from(current_row);   // [R * S], experts missing there get a slot first
//   s.run(false);
//   s.run(true);
//   s.aligned_slots(current_row);
//
// Deterministic (ties: the first candidate in scan order); the deadline, when
// given and hit, stops the search early (budget_hit()).
// Thread safety: one thread per instance.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/dispatch/batch_balancer.h"
#include "omniplacement/dispatch/dispatch_mode.h"
#include "move_prices.h"

namespace omni::detail {

struct IntervalProblem {
  int32_t num_ranks = 0;
  int32_t slots_per_rank = 0;
  int32_t num_experts = 0;
  int32_t cap = 0;                     // most replicas of one expert, in [1, num_ranks]
  DispatchMode dispatch = DispatchMode::kShares;
  // Scenario loads [K][E] (K >= 1, tokens, >= 0). Borrowed.
  const std::vector<std::vector<double>>* scenarios = nullptr;
  // Prices of moves against the placement in force (`reference`, [R * S],
  // -1 empty; the prices' own placement); null: moves are free. Both borrowed.
  const MovePrices* prices = nullptr;
  std::span<const ExpertId> reference;
  // Most experts one rank may receive (held there in no reference slot); -1: no limit.
  int32_t max_moves_per_rank = -1;
  // Moves taken at most per run() (a safety net; 0: 4 x slots).
  int64_t max_steps = 0;
  const std::chrono::steady_clock::time_point* deadline = nullptr;
};

// The indices in [0, n) whose per-scan terms were prepared since the last
// forget(): each is prepared once per scan (bound_of, prepare_split_rank,
// prepare_replace_rank, ...). claim(i) says whether i is new (and marks it);
// forget() unmarks the marked ones only, not all n.
class PreparedMarks {
 public:
  void reset(size_t n) {
    ready_.assign(n, 0);
    marked_.clear();
  }
  bool has(int32_t i) const { return ready_[static_cast<size_t>(i)] != 0; }
  bool claim(int32_t i) {
    if (ready_[static_cast<size_t>(i)]) return false;
    ready_[static_cast<size_t>(i)] = 1;
    marked_.push_back(i);
    return true;
  }
  void forget() {
    for (int32_t i : marked_) ready_[static_cast<size_t>(i)] = 0;
    marked_.clear();
  }

 private:
  std::vector<char> ready_;
  std::vector<int32_t> marked_;
};

class IntervalSearch {
 public:
  explicit IntervalSearch(const IntervalProblem& problem);
  // Takes another problem (the next layer's; any sizes): the search is then
  // as if constructed with it, its storage kept for reuse (fewer allocations
  // than a new search per layer). start_from() comes next.
  void reset(const IntervalProblem& problem);

  // Starts from `slots` ([R * S], -1 empty; a second replica of an expert on
  // a rank starts empty): experts without a replica first take the slot
  // (empty, or of an expert with another replica) that leaves the rank least
  // loaded on average, whatever it costs (they must be served).
  void start_from(std::span<const ExpertId> slots);
  // See the top of this header.
  void run(bool priced);
  // run(false), keeping the state along the way with the least F + C: the
  // unpriced search takes the largest gains first, so the best prefix of its
  // path is the set of moves that pays (a move that only pays in the company
  // of the next ones is kept with them).
  void run_path();
  // Priced, with only the moves that give a move back (scan of the slots
  // that received an expert): what a candidate plan keeps of its moves when
  // each must pay for itself. Cheap: no scan of the busiest ranks.
  void prune();
  // Gives every empty slot a replica that does not raise F + C (priced; C is
  // 0 without prices): of the experts its rank lacks, under the cap, the one
  // that raises F + C least, ties to the most forecast tokens per replica
  // (per-batch: the first of the best few by estimate that does not raise
  // the split's F; the split can rise with another replica).
  // An empty slot serves nothing: a replica there halves its expert's swing
  // (static shares) or gives the per-batch split another rank to send it to,
  // in a next window that the scenarios describe only in part.
  void fill_empty();

  // Current slots, [R * S].
  std::span<const ExpertId> slots() const { return slot_; }
  // The slots with every expert that a rank holds in `reference` ([R * S])
  // kept in its reference slot; other experts fill the rank's free slots in
  // their current order.
  std::vector<ExpertId> aligned_slots(std::span<const ExpertId> reference) const;
  double expected_max() const { return f_; }   // F, tokens
  double move_cost() const { return cost_; }   // C, tokens
  double value() const { return f_ + cost_; }
  int64_t moves() const { return steps_; }
  bool budget_hit() const { return budget_hit_; }

 private:
  struct Move {
    double delta = 0;  // change of F (+ C when priced)
    int32_t kind = -1; // 0 swap slots i and j; 1 slot j gets expert x (-1: emptied)
    int32_t i = -1, j = -1;
    ExpertId x = kEmptySlot;
    bool operator==(const Move& o) const { return kind == o.kind && i == o.i && j == o.j && x == o.x; }
  };

  size_t at(int32_t k, int32_t r) const { return static_cast<size_t>(k) * static_cast<size_t>(R_) + static_cast<size_t>(r); }
  // Whether m is a move set aside in this step (tabu_; consider() passes over it).
  bool set_aside(const Move& m) const {
    for (const Move& t : tabu_)
      if (t == m) return true;
    return false;
  }
  bool holds(int32_t r, ExpertId e) const {
    return has_[static_cast<size_t>(r) * static_cast<size_t>(E_) + static_cast<size_t>(e)] != 0;
  }
  double price(int32_t r, ExpertId e) const { return p_.prices == nullptr ? 0.0 : p_.prices->price(r, e); }
  bool received(int32_t r, ExpertId e) const { return p_.prices != nullptr && !p_.prices->held(r, e); }
  double x(int32_t k, ExpertId e) const {
    return (*p_.scenarios)[static_cast<size_t>(k)][static_cast<size_t>(e)];
  }
  bool per_batch() const { return p_.dispatch == DispatchMode::kPerBatch; }
  // e's amount on rank r in scenario 0 (scenario k at k x ranks_[e].size()
  // further), null when r holds no replica of e.
  // Defined here so that the evaluations inline it.
  const double* replica_amounts(ExpertId e, int32_t r) const {
    const auto& rs = ranks_[static_cast<size_t>(e)];
    for (size_t i = 0; i < rs.size(); ++i)
      if (rs[i] == r) return amt_[static_cast<size_t>(e)].data() + i;
    return nullptr;
  }

  // Bookkeeping of slot contents (no loads).
  void put(int32_t g, ExpertId e);
  void take(int32_t g);
  // Loads from the slots: even split (shares) or the split (per-batch); then
  // the busiest ranks, the pools and F.
  void evaluate();
  void even_amounts(ExpertId e);
  void split();
  // split() of the scenarios flagged in `only` ([K]; null: all); the others
  // keep their loads and amounts (they must be the split of the current slots).
  void split_scenarios(const std::vector<char>* only);
  // Per-batch, after a move whose changed experts had or now have a replica
  // on the ranks in `touched`: the split again of the part of the layer
  // linked to them only (BatchBalancer::balance_all_passes), the rest kept,
  // when that gives split()'s result to the bit (every scenario's last split
  // ran all passes, and so does the part's; a scenario where the part's
  // does not is split whole); else false, nothing done.
  bool split_part(const std::vector<int32_t>& touched);
  void summarize();
  void summarize_touched();
  void summarize_pools_touched();

  double max_excluding(int32_t k, const int32_t* ranks, int32_t n, const std::vector<int32_t>& top) const;
  double max_excluding_scan(int32_t k, const int32_t* ranks, int32_t n, const std::vector<int32_t>& top) const;

  void add_missing();
  bool step(bool priced, bool hot = true);
  // The price change of swapping a (on ra) and b (on rb); -1 = an empty slot.
  double swap_price(int32_t ra, int32_t rb, ExpertId a, ExpertId b) const;
  void consider(Move m, Move& best, bool priced);
  // m (evaluated, m.delta) against the best move so far, keeping the
  // runner-up in second_ (ties: the first in scan order; a move equal to
  // best is not its own runner-up). second_.delta >= best.delta: most moves
  // take the first comparison only.
  void offer(const Move& m, Move& best) {
    if (m.delta < second_.delta) {
      if (m.delta < best.delta) {
        if (!(m == best)) second_ = best;
        best = m;
      } else if (!(m == best)) {
        second_ = m;
      }
    }
  }
  // Whether the moves with a lower bound `lb` on their change are passed
  // over (lb >= best.delta). One at or above the runner-up then is never
  // chosen after best is set aside (the runner-up only falls, and a tie goes
  // to it, found first); the least other such bound is kept in passed_lb_.
  bool passes(double lb, const Move& best) {
    if (lb >= second_.delta) return true;
    if (lb < best.delta) return false;
    passed_lb_ = std::min(passed_lb_, lb);
    return true;
  }
  double eval_swap(int32_t i, int32_t j, bool priced);
  // What swap_on_pair and swap_on_pool_pair read of slot i (which holds an expert a), found
  // once for all the slots of one rank rb (the scans' loop over them): a's
  // amounts on ra = i / S (replica_amounts, scenario k at k * na) and, when
  // priced, the part of the price change that a's move makes (swap_price's
  // first term, by the same operations).
  struct SwapFrom {
    const double* pa;
    size_t na;
    double dcost_a;
  };
  SwapFrom swap_from(int32_t i, int32_t rb, bool priced) const;
  // The same with a's amounts on ra given (scenario k at k * na).
  SwapFrom swap_from_at(const double* pa, size_t na, int32_t i, int32_t rb, bool priced) const;
  // Static shares, with pair_max_, swap_b_ and pair_load_ prepared for
  // ra = i / S and rb = j / S (scan_hot, prepare_pair), and
  // from = swap_from(i, rb, priced): eval_swap(i, j, priced) (the same
  // operations in the same order, so the same value), for a move that no
  // per-rank limit can refuse; slot i holds an expert.
  double swap_on_pair(const SwapFrom& from, int32_t i, int32_t j, bool priced) const;
  // Per-batch, with pool_pair_ (from pair_max_, the busiest rank outside the
  // pool other than ra and rb) and swap_b_ prepared for ra = i / S and
  // rb = j / S (scan_hot, prepare_pair), and from = swap_from(i, rb, priced):
  // eval_swap(i, j, priced) (the same operations in the same order), for a
  // move that no per-rank limit can refuse; slot i holds an expert.
  double swap_on_pool_pair(const SwapFrom& from, int32_t i, int32_t j, bool priced) const;
  // swap_on_pool_pair that stops once the value is known to be at least
  // `cut`: rest[k] ([K + 1]) is the sum of lower bounds on the terms of the
  // scenarios after k (the scan's per-slot bound), rest[K] at least the sum
  // of their magnitudes. Returns the value when below cut, else a value >= cut.
  // (Static shares keep swap_on_pair: their cut, the best move, is seldom
  // reached early, and the test per scenario costs more than it saves.)
  double swap_on_pool_pair_cut(const SwapFrom& from, int32_t i, int32_t j, bool priced, const double* rest,
                               double cut) const;
  // The three above (kPool: swap_on_pool_pair's terms; kCut: with the cut).
  template <bool kPool, bool kCut>
  double swap_on_pair_terms(const SwapFrom& from, int32_t i, int32_t j, bool priced, const double* rest,
                            double cut) const;
  // Prepares pair_max_, pair_load_ and swap_b_ (the slots of rb whose expert
  // ra does not hold) for swap_on_pair between ra and rb (per-batch:
  // pair_max_ outside the pool, for swap_on_pool_pair).
  void prepare_pair(int32_t ra, int32_t rb);
  // Per-batch, with pair_max_ prepared for ra and rb: pool_pair_ (what
  // pool_pair_max reads, per scenario) for swap_on_pool_pair.
  void prepare_pool_pair(int32_t ra, int32_t rb);
  // Static shares, in scan_hot: prepares y_on_ and y_max_ for the slots of rj.
  void prepare_replace_rank(int32_t rj);
  // Static shares, in scan_hot with bound_of(xe) and prepare_replace_rank(j / S)
  // done: eval_replace(j, xe, priced) (the same operations in the same
  // order) when every scenario takes its terms from the bound; else NaN
  // (eval_replace decides). xe >= 0; no per-rank limit.
  double replace_on_rank(int32_t j, ExpertId xe, bool priced) const;
  // Per-batch, in scan_hot: prepares y_level_, y_out_ and y_bridge_ for the slots of rj.
  void prepare_pool_replace_rank(int32_t rj);
  // Per-batch, in scan_hot with prepare_split_expert(xe) and
  // prepare_pool_replace_rank(j / S) done: eval_replace(j, xe, priced) (the
  // same operations in the same order). xe >= 0; no per-rank limit.
  double pool_replace_on_rank(int32_t j, ExpertId xe, bool priced) const;
  double eval_replace(int32_t j, ExpertId x, bool priced);
  double swap_bound(int32_t ra, int32_t rb) const;
  // Per-batch: max(pool level, busiest outside) after ra changes by d0 and rb by d1.
  double pool_pair_max(int32_t k, int32_t ra, double d0, int32_t rb, double d1, double outside) const;
  // Per-batch, scenario k of eval_replace with y (ranks ry, cy of them,
  // amounts py) leaving rj: the pool's level and the busiest rank outside it
  // before any bridge, and the load of bridge_rank (-1: none) or -1 when it
  // is not touched outside the pool. touched_ holds rj and y's other ranks.
  struct ReplaceTerms {
    double level, outside, bridge_load;
  };
  ReplaceTerms replace_terms(int32_t k, int32_t rj, int32_t bridge_rank, ExpertId y, const std::vector<int32_t>& ry,
                             double cy, const double* py) const;
  double swap_refund(int32_t ra, int32_t rb, bool priced) const;
  // Per-batch: a lower bound on eval_replace's F change for x given a slot of rj (any slot).
  double split_replace_bound(ExpertId x, int32_t rj);
  // Its parts: rj's (rank_out_, rank_term_, rank_merged_) and x's (pool_amount_), each
  // prepared once per scan_hot; the bound with the pool amounts given ([K]).
  void prepare_split_rank(int32_t rj);
  void prepare_split_expert(ExpertId x);
  double split_replace_bound_at(int32_t rj, const double* pool_amount) const;
  // Static shares: prepares x's ReplaceBound (once per scan_hot: the loads do
  // not change during a scan; scan_hot forgets them when it ends).
  void bound_of(ExpertId x);
  double replace_bound(ExpertId x, int32_t rj) const;
  void scan_hot(Move& best, bool priced);
  void scan_reverts(Move& best);
  void scan_reverts_of(int32_t i, Move& best);
  // Per-batch: whether x given a slot on ra bridges to no pool in any
  // scenario (ra in the pool, or none of x's ranks in it; eval_replace).
  bool no_bridge(int32_t ra, ExpertId x) const;
  // Lists the ranks holding each expert in the reference (ref_ranks_).
  void list_reference_ranks();
  // Whether rank r is in no scenario's pool (per-batch, in_pool_) or is no
  // scenario's busiest rank (static shares, top_): moves that take load
  // only off such ranks leave F where it is or raise it (scan_reverts_of).
  // Found once per summarize (cool_, cool_ready_).
  bool cool(int32_t r);
  // Applies a move and updates the loads, the busiest ranks and F.
  // The two experts move m changes (before it is applied): a swap's two, or
  // the replaced expert and the incoming one (-1: none). changed: [2].
  void changed_by(const Move& m, ExpertId* changed) const;
  void apply(const Move& m);
  // The slot bookkeeping of apply(m); `changed`: the two experts m moves (-1: none).
  void rebook(const Move& m, const ExpertId* changed);
  // Per-batch: keeps the split's loads and amounts before a move that undo() may take back.
  void save_split();
  // Undoes `m` (applied; `replaced`: the expert slot m.j held before a give-to
  // move). Per-batch: only after save_split() before apply(m).
  void undo(const Move& m, ExpertId replaced);
  // The slot bookkeeping of undo(m, replaced), without the split.
  void unbook(const Move& m, ExpertId replaced);
  // Per-batch: the split of save_split() back (the slots are those of then).
  void restore_split();
  // Per-batch: applies `m` with the loads moved as the estimate moves them
  // (the amounts follow a swapped replica; a dropped replica's amounts go
  // evenly to the expert's other replicas; a new replica gets none), no split.
  void apply_estimate(const Move& m);
  // Per-batch prune pass: every give-back that pays by the estimate, then one
  // split. 1: the split is better than before the pass (kept); 0: no
  // give-back pays; -1: not better (the state before the pass is back).
  int prune_batch();
  // prune's best give-back for slot i (scan_reverts_of, nothing set aside;
  // kind -1 when none pays).
  Move best_give_back(int32_t i);
  void reamount(ExpertId e, double sign);  // adds (sign 1) or removes e's amounts from the loads
  bool out_of_time();

  IntervalProblem p_;
  int32_t R_, S_, E_, K_;
  BatchBalancer<double> balancer_;             // the runtime's split (per-batch)
  std::vector<ExpertId> slot_;                 // [G]
  std::vector<int32_t> cnt_;                   // [E]
  std::vector<char> has_;                      // [R * E]
  std::vector<std::vector<int32_t>> ranks_;    // [E]: replica ranks, in the order they were added
  std::vector<std::vector<double>> amt_;       // [E]: K x ranks_[e].size() amounts
  std::vector<double> load_;                   // [K * R]
  std::vector<double> peak_;                   // [K]: max over ranks
  std::vector<int32_t> top_;                   // [K * 3]: the three busiest ranks (shares)
  // Per-batch: the pool of each scenario (ranks at the busiest level) and
  // the three busiest ranks outside it.
  std::vector<char> in_pool_;                  // [K * R]
  std::vector<int32_t> pool_size_;             // [K]
  std::vector<int32_t> out_top_;               // [K * 3]
  std::vector<int32_t> received_;              // [R]: experts received (not held in the reference)
  std::vector<double> total_;                  // [E]: tokens over the scenarios (summed in scenario order)
  // The ranks holding expert e in the reference: ref_ranks_[ref_start_[e] ..
  // ref_end_[e]), ascending; listed at the first scan_reverts_of after reset() (ref_ready_).
  std::vector<int32_t> ref_start_, ref_end_, ref_ranks_;
  bool ref_ready_ = false;
  double f_ = 0, cost_ = 0;
  double noise_gain_ = 0;                      // run(false): smallest gain worth a step
  int64_t steps_ = 0;
  bool budget_hit_ = false;
  // Per-batch: the split before the last move that may be undone (save_split()).
  std::vector<double> saved_load_;
  std::vector<std::vector<double>> saved_amt_;
  std::vector<std::vector<int32_t>> saved_ranks_;
  std::vector<int32_t> split_index_;           // split(): each replica's index among the balancer's
  // Per-batch, per scenario: 1 when its loads and amounts are the balancer's
  // split of the current slots and that split ran all passes ([K]).
  std::vector<char> split_full_, saved_split_full_;
  // Per-batch, [K * E]: in which refinement passes each expert with several
  // replica ranks changed its amounts in the split it last had (change_mask).
  std::vector<uint8_t> part_change_, saved_part_change_;
  // split_part(): scratch.
  std::vector<int32_t> part_root_;             // [R]: union-find over ranks linked by an expert
  std::vector<char> part_mark_;                // [R]: a root of the part
  std::vector<std::vector<RankId>> part_ranks_of_;  // [E]: the part's experts' ranks, ascending
  std::vector<ExpertId> part_experts_, part_rest_;  // the part's experts; the others with several ranks
  std::vector<int32_t> part_ranks_, part_touched_;
  std::vector<char> part_whole_;               // [K]: scenarios split_part leaves to split_scenarios
  std::vector<ExpertId> split_experts_;        // split(): the experts with several replicas
  std::vector<std::pair<Move, ExpertId>> batch_;  // prune_batch(): the moves taken, and `replaced`
  std::vector<int32_t> est_ranks_[2];          // apply_estimate(): scratch
  std::vector<double> est_amt_[2];
  std::vector<Move> tabu_;                     // per-batch: moves whose split disappointed, this step
  // step()'s scans: the runner-up (kind -1: none below the starting
  // threshold) and the least lower bound of the per-batch moves passed over
  // by a bound. When the best move is set aside, the next step's scans
  // (the same state, that move set aside) would find the runner-up if no
  // move passed over can reach it: then it is kept in next_ (next_ready_)
  // for that step instead of scanning again.
  Move second_;
  double passed_lb_ = 0;
  Move next_;
  bool next_ready_ = false;
  bool next_priced_ = false;
  double next_threshold_ = 0;                  // the scans' starting threshold (the best move's change below it)
  // Static shares, per scenario: bound_of(x)'s parts of replace_bound, and
  // of eval_replace's F for x (the busiest rank outside x's and rj).
  struct ReplaceBound {
    double own = 0;         // the busiest of x's ranks after the move
    double first = 0;       // the busiest rank outside x's, and its load
    double second = 0;      // the next one (used when rj is `first_rank`)
    int32_t first_rank = -1;
    int32_t second_rank = -1;
    double share = 0;       // x's amount on a new replica: x / (cx + 1)
  };
  // x's bound_of, or null when not prepared in this scan_hot.
  const ReplaceBound* prepared_bound(ExpertId x) const {
    return x >= 0 && bound_ready_.has(x) ? &bound_[static_cast<size_t>(x) * static_cast<size_t>(K_)]
                                                         : nullptr;
  }
  std::vector<ReplaceBound> bound_;           // [E * K]
  PreparedMarks bound_ready_;                  // [E]: bound_of(x) / prepare_split_expert(x) done in this scan_hot
  std::vector<double> bound_sum_;              // [E]: replace_bound's sum for most ranks
  std::vector<char> first_of_;                 // [R]: scan_hot, the first_rank of some scenario in x's bound
  // Per-batch, prepared once per scan_hot for split_replace_bound: per rank
  // and scenario the busiest rank outside the pool other than it, the
  // bound's term where it does not depend on the expert (the rank in the
  // pool, or the expert without amount in the pool) and the merged level
  // with the rank's least bridge load (rank outside the pool); per expert
  // and scenario its amount on pool ranks.
  std::vector<double> rank_out_, rank_term_, rank_merged_;  // [R * K]
  PreparedMarks rank_ready_;                   // [R]: prepare_split_rank(r) done
  std::vector<double> pool_amount_;            // [E * K]
  // scan_hot (per-batch): the largest pool amount of ra's experts ([K]) and
  // the bound per partner rank, and the dearest price a partner rank gives up (priced).
  std::vector<double> group_pool_, group_bound_, group_refund_;
  // Static shares, scan_hot's swaps of ra with rb, per scenario: the busiest
  // rank other than the two; the least and largest amount rb may give.
  std::vector<double> pair_max_, swap_bmin_, swap_bmax_;  // [K]
  // Static shares, scan_hot's swaps of ra with rb: the amount of the expert
  // of each slot t of rb on rb ([S * K], 0 for an empty slot or an expert ra
  // holds), and the loads of ra and rb ([2 * K]), for eval_swap's operations
  // without its look-ups (swap_on_pair).
  std::vector<double> swap_b_, pair_load_;
  // What swap_on_pair and swap_on_pool_pair read as rb's rows of swap_b_:
  // swap_b_ (prepare_pair) or rb's slot_amounts (scan_hot).
  const double* swap_b_rows_ = nullptr;
  // scan_hot: per slot g of a rank r prepared in this scan, the amount of
  // g's expert on r per scenario ([R * S * K], 0 for an empty slot).
  std::vector<double> slot_amt_;
  PreparedMarks amt_ready_;                    // [R]: slot_amounts(r) done in this scan_hot
  // Rank r's rows of slot_amt_ (prepared once per scan_hot: the amounts do
  // not change during a scan).
  const double* slot_amounts(int32_t r);
  // Per-batch, the same pair: per scenario the peak, the pool's size, the
  // busiest rank outside the pool other than the two (pair_max_), the loads
  // of ra and rb and whether each is in the pool ([K], prepare_pool_pair).
  struct PoolPairTerms {
    double peak = 0, n = 0, outside = 0, load_a = 0, load_b = 0;
    bool a_in_pool = false, b_in_pool = false;
    // pool_pair_max(k, ra, d0, rb, d1, outside): the same operations.
    double max_after(double d0, double d1) const {
      double level = peak;
      double out = outside;
      if (a_in_pool) {
        level += d0 / n;
      } else {
        out = std::max(out, load_a + d0);
      }
      if (b_in_pool) {
        level += d1 / n;
      } else {
        out = std::max(out, load_b + d1);
      }
      return std::max(level, out);
    }
    // A lower bound on max_after(-u, u) for every u with |u| <= spread: a
    // swap moves u = (a's amount - b's) from ra to rb, and eval_swap's d1 is
    // exactly -d0 (rounding is symmetric). With one rank in the pool, the
    // level falls and the other rank rises with u (each monotone, rounding
    // included), so at any point c one of them is at least its value at c:
    // c is where they meet. Neither in the pool: the same with the two loads.
    // Both in the pool: the level stays up to two roundings, a few 1e-16
    // relative; the slack (1e-12 relative) covers them.
    double floor(double spread) const {
      if (a_in_pool && b_in_pool) return std::max(outside, peak - 1e-12 * (1.0 + std::abs(peak) + spread));
      if (a_in_pool) {
        const double c = (peak - load_b) * n / (n + 1);
        return std::min(peak + (-c) / n, std::max(outside, load_b + c));
      }
      if (b_in_pool) {
        const double c = (load_a - peak) * n / (n + 1);
        return std::min(peak + c / n, std::max(outside, load_a + (-c)));
      }
      const double c = (load_a - load_b) / 2;
      return std::max(std::max(peak, outside), std::min(load_a + (-c), load_b + c));
    }
  };
  std::vector<PoolPairTerms> pool_pair_;
  // Per-batch, scan_hot's swaps of ra with rb, per scenario: the largest
  // amount (absolute) of an expert of ra, and pool_pair_'s floor with the
  // spread that and rb's amounts give ([K]).
  std::vector<double> swap_aabs_, swap_floor_;
  // Per-batch, scan_hot's swaps of a slot of ra with rb: what
  // swap_on_pool_pair_cut reads as `rest` ([K + 1]; while the per-slot
  // bound is summed, its partial sums).
  std::vector<double> slot_rest_;
  // Static shares, scan_hot's give-a-replica moves to a slot t of rank rj,
  // prepared once per rank and scan (prepare_replace_rank): the amount of
  // the slot's expert y on rj and the busiest of y's other ranks after
  // that amount goes evenly to them (-inf: none), [R * S * K].
  std::vector<double> y_on_, y_max_;
  // Per-batch, the same per rank and scan (prepare_pool_replace_rank), for a
  // new replica of some expert in slot t of rj: eval_replace's pool level,
  // busiest rank outside the pool and bridge load (-1: rj in the pool) after
  // the slot's expert y leaves rj, before the bridge, [R * S * K].
  std::vector<double> y_level_, y_out_, y_bridge_;
  // Per-batch, the same: per slot a lower bound on pool_replace_on_rank's F
  // change for every expert that takes the slot ([R * S]).
  std::vector<double> y_floor_;
  // Per rank, over the slots scan_hot may give (empty, or an expert with
  // another replica): the least y_floor_ and the dearest price given up ([R]).
  std::vector<double> y_rank_floor_, y_rank_refund_;
  PreparedMarks y_ready_;                      // [R]: prepare_replace_rank / prepare_pool_replace_rank(r) done
  // Scratch of the evaluations.
  mutable std::vector<int32_t> touched_;
  PreparedMarks cool_ready_;                   // [R]: cool(r) found since the last summarize (which forgets)
  std::vector<char> cool_;                     // [R]: then cool(r)
  std::vector<char> touched_mark_;             // [R]: apply() (static shares) and apply_estimate(), the ranks in touched_
};

}  // namespace omni::detail
