// The OmniPlacement planner ("omni"): plans for the interval it will serve.
//
// A placement is judged on the steps after it commits, not on the window it
// was planned from. By default (forecast=true, locality=none, no host rules)
// omni, per layer:
//   1. Forecasts the next window from the recent windows (PlanInput::samples,
//      oldest first; `load` alone when there are none): the windows since the
//      last shift of the mix, each expert's level since its own last jump, a
//      significant trend followed, and the variation as scenarios (the recent
//      windows' deviations around the forecast; borrowed from the windows
//      before a shift when too few follow it). See src/planner/load_forecast.h.
//   2. Scores a placement by the expected busiest rank over the scenarios
//      under the dispatch in force (PlanInput::serving.dispatch): static
//      shares (each replica an even part), or the runtime's per-batch split
//      (which moves each batch's tokens to the least loaded replicas), plus
//      the price of its moves: each expert a rank receives costs its link
//      time from the nearest replica in force (PlanInput::topology's
//      bandwidths, ServingModel::expert_bytes) shared over the ranks that
//      receive in parallel, in the unit of the gain: busiest-rank tokens per
//      window saved over the interval (ServingModel::seconds_per_token,
//      interval_steps / window_steps). A move that costs more than it saves
//      is not made; no threshold knob is needed.
//   3. Chooses, by that score, between the placement in force, the best
//      prefix of a search from it (which takes the largest gains first), and
//      a from-scratch fit of the forecast relabelled onto the ranks in force
//      with every move that does not pay given back; small layers also get a
//      priced search from the best. Volatile hot experts get replicas where
//      the scenarios show them paying. On layers above 128 slots under the
//      per-batch split, the searches run under static shares (cheaper) and
//      their candidates are judged under the split. See
//      src/planner/interval_planner.h.
// Without a placement in force it fits the forecast from scratch (moves free).
//
// The fit itself (BlockSolver, src/planner/block_solver.h), also the whole
// planner with forecast=false or host rules:
//   1. Replica counts by water-filling: each redundant slot goes to the expert
//      with the largest load / count whose count is below the cap
//      (max_replicas_per_expert, and never more than num_ranks).
//   2. Largest-first packing: replicas (load / count each) in descending size,
//      each to the least loaded rank that has a free slot and does not hold
//      that expert yet. Never two replicas of one expert on one rank.
//   3. Local search until no improvement: the best move or swap of a replica
//      between the most loaded rank and any other rank; when none helps, move a
//      replica slot from an expert that can spare it to an expert on the most
//      loaded rank (replica-count re-allocation).
//   4. Optional per-replica shares (shares=true): the split of each expert's
//      load over its replicas that minimises the most loaded rank (of the
//      forecast by default, of `load` with forecast=false), found exactly by a
//      max-flow feasibility search (optimal_shares).
// Locality (needs num_nodes > 1 or a topology; plans `load` as with forecast=false):
//   locality=groups  expert groups are packed onto hosts (as EPLB's hierarchical
//                    policy) and each host is planned on its own ranks; a layer
//                    falls back to the flat plan when that costs more than
//                    locality_slack (fraction of the mean rank load) in balance.
//   locality=coactivation  like groups, but the expert-to-host sets are grown
//                    from PlanInput::coactivation so that co-activated experts
//                    share a host (affinity = lift over independence, greedy
//                    then pairwise swaps between hosts within the load slack).
//   locality=spread  replicas of one expert go to distinct hosts where load
//                    allows, so more tokens find a replica on their own host
//                    (core's dispatch_traffic metric).
//
// Failure-aware placement (spread_hosts, protect; see OmniOptions): replicas
// of an expert go to distinct hosts first during packing (host before load),
// a repair pass swaps a replica onto another host for any expert still on one
// host (incremental plans: as far as max_moves_per_rank allows), and the local
// search never lowers an expert's number of hosts; the heaviest experts get
// their second replica first. core/coverage.h measures the result.
//
// forecast=false with a placement in force: the local search starts from it,
// every expert that stays on a rank keeps its slot, and no rank changes more
// than max_moves_per_rank slots per layer; with no limit, a from-scratch plan
// relabelled onto the current ranks (rank_matching.h) replaces the result
// when it is better on `load`. max_moves_per_rank also caps the default
// planner's moves (a hard limit on staging memory, not a price).
//
// Deterministic: the same input gives the same plan, unless time_budget_ms > 0
// and the budget is hit (PlanStats::time_budget_hit says so).
//
//   omni::PlanInput in;                       // load, num_ranks, slots, topology, current
//   in.samples = &recent_windows;             // oldest first
//   in.serving.dispatch = omni::DispatchMode::kPerBatch;
//   in.serving.window_steps = in.serving.interval_steps = 1000;
//   auto result = omni::omni_plan(in, omni::OmniOptions{});   // or make_planner("omni")
//
// Spec parameters (defaults omitted from the canonical spec):
//   forecast=<bool, true>   max_replicas_per_expert=<int, 0 = num_ranks>   time_budget_ms=<number, 0 = none>
//   shares=<bool, false>   reallocate=<bool, true>   locality=none|groups|coactivation|spread
//   locality_slack=<number, 0.05>   max_iterations=<int, 0 = 64 x slots per layer>
//   max_moves_per_rank=<int, -1 = no limit>   spread_hosts=<bool, false>   protect=<number in [0, 1], 0>
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "omniplacement/planner/planner.h"

namespace omni {

enum class Locality { kNone, kGroups, kCoactivation, kSpread };
const char* locality_name(Locality l);  // "none", "groups", "coactivation", "spread"

struct OmniOptions {
  // Plan for the next interval (forecast from PlanInput::samples, expected
  // busiest rank under PlanInput::serving, priced moves); false: fit `load`.
  bool forecast = true;
  int32_t max_replicas_per_expert = 0;  // 0: no cap beyond num_ranks
  double time_budget_ms = 0;            // whole plan() call; 0: no budget
  bool shares = false;
  bool reallocate = true;
  bool pair_sweeps = true;              // pairwise balancing sweeps when the max rank is stuck
  Locality locality = Locality::kNone;
  double locality_slack = 0.05;
  int64_t max_iterations = 0;           // local-search steps per layer; 0: 64 x slots of the layer
  // Most slots per rank per layer that may change from the placement in
  // force (each one expert's weights to receive: staging memory); -1: no
  // limit. A hard cap, not a price: omni prices every move by itself.
  int32_t max_moves_per_rank = -1;
  // Failure-aware placement (fault domains; issue 9). Replicas of one expert
  // are always on distinct ranks; spread_hosts also puts the replicas of every
  // expert with two or more on at least two hosts (needs num_nodes > 1 or a
  // topology; combines with locality none or spread). protect: the heaviest
  // experts that together carry this fraction of a layer's load get at least
  // two replicas before water-filling hands out the rest (cap and slots
  // permitting), and re-allocation never takes them below two.
  bool spread_hosts = false;
  double protect = 0;
};

StatusOr<PlanResult> omni_plan(const PlanInput& input, const OmniOptions& options);

// One layer, flat (no locality): plans `expert_loads` [num_experts] on
// num_ranks ranks with slots_per_rank slots each. Returns phy2log
// [num_ranks * slots_per_rank] (-1 for empty slots). Used by the layer-wise
// redundancy budget; requires num_experts <= num_ranks * slots_per_rank.
std::vector<ExpertId> omni_plan_layer(std::span<const double> expert_loads, int32_t num_ranks,
                                      int32_t slots_per_rank, const OmniOptions& options);

// Shares minimising the most loaded rank for a fixed layer placement:
// [num_slots] with shares of each expert summing to 1 (even split for an
// expert with no load; 0 for empty slots). phy2log as in Placement.
std::vector<double> optimal_shares(std::span<const double> expert_loads, std::span<const ExpertId> phy2log,
                                   int32_t num_ranks);

}  // namespace omni
