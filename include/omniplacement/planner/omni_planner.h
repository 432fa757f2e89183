// The OmniPlacement planner ("omni"): balance first, then locality.
//
// Per layer, independently:
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
//      load over its replicas that minimises the most loaded rank, found
//      exactly by a max-flow feasibility search; the even-split plan is kept
//      underneath, so even-split metrics stay meaningful.
// Locality (needs num_nodes > 1 or a topology):
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
// search never lowers an expert's number of hosts; the
// heaviest experts get their second replica first. core/coverage.h measures
// the result (what survives any single rank or host failure).
//
// Incremental planning (PlanInput::current given; issue 5): the local search
// starts from the placement in force, every expert that stays on a rank keeps
// its slot, and no rank changes more than max_moves_per_rank slots per layer
// (each changed slot is one expert's weights to receive). Experts without a
// replica in the current placement (a failed rank) get one first. With no move
// limit, a from-scratch plan whose ranks are relabelled onto the current ones
// by a maximum-overlap assignment (rank_matching.h) replaces the incremental
// result when it is better by more than min_gain x mean rank load. The whole
// re-plan is skipped (PlanStats::skipped, the current placement returned) when
// it would improve the mean over layers of max / mean by less than min_gain.
// escalate_gain > 0 (with a move limit): a layer is also planned without the
// limit (as above), and that plan is taken when it lowers the layer's max rank
// load below the budgeted plan's by more than escalate_gain x mean rank load.
// With max_moves_per_rank=0 this re-plans only the layers that a shift has put
// clearly off balance and leaves the others alone: on windows whose loads are
// noisy, routine budgeted moves chase the noise (docs/BENCHMARKS.md,
// "Migration-aware re-planning").
//
// Deterministic: the same input gives the same plan, unless time_budget_ms > 0
// and the budget is hit (PlanStats::time_budget_hit says so).
//
//   omni::OmniOptions opt;
//   opt.max_replicas_per_expert = 8;
//   auto result = omni::omni_plan(input, opt);   // or make_planner("omni(max_replicas_per_expert=8)")
//
// Spec parameters (defaults omitted from the canonical spec):
//   max_replicas_per_expert=<int, 0 = num_ranks>   time_budget_ms=<number, 0 = none>
//   shares=<bool, false>   reallocate=<bool, true>   locality=none|groups|coactivation|spread
//   locality_slack=<number, 0.05>   max_iterations=<int, 0 = 64 x slots per layer>
//   max_moves_per_rank=<int, -1 = no limit>   min_gain=<number, 0>   escalate_gain=<number, 0 = off>
//   spread_hosts=<bool, false>   protect=<number in [0, 1], 0>
//   per_batch=<bool, false>   per_batch_spread=<number in [0, 100], 2>   per_batch_shift=<number >= 0, 2.5>
//   per_batch_move_cost=<number >= 0, 0.003>   per_batch_evals=<int >= 0, 0 = automatic>
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
  int32_t max_replicas_per_expert = 0;  // 0: no cap beyond num_ranks
  double time_budget_ms = 0;            // whole plan() call; 0: no budget
  bool shares = false;
  bool reallocate = true;
  bool pair_sweeps = true;              // pairwise balancing sweeps when the max rank is stuck
  Locality locality = Locality::kNone;
  double locality_slack = 0.05;
  int64_t max_iterations = 0;           // local-search steps per layer; 0: 64 x slots of the layer
  // Incremental planning (PlanInput::current given):
  int32_t max_moves_per_rank = -1;      // slots per rank per layer that may change; -1: no limit
  double min_gain = 0;                  // keep the current placement unless max/mean improves by this
  double escalate_gain = 0;             // with a move limit: drop it for a layer when that gains this (0: off)
  // Failure-aware placement (fault domains; issue 9). Replicas of one expert
  // are always on distinct ranks; spread_hosts also puts the replicas of every
  // expert with two or more on at least two hosts (needs num_nodes > 1 or a
  // topology; combines with locality none or spread). protect: the heaviest
  // experts that together carry this fraction of a layer's load get at least
  // two replicas before water-filling hands out the rest (cap and slots
  // permitting), and re-allocation never takes them below two.
  bool spread_hosts = false;
  double protect = 0;
  // Per-batch dispatch (the runtime's DispatchMode::kPerBatch, where each
  // batch's tokens of an expert are divided over its replicas after the batch
  // is seen; dispatch/batch_split.h). per_batch: after planning, a local search
  // reshapes every layer for that split (swap two slots' experts, or give a
  // slot of an expert with a spare replica, or an empty slot, to another
  // expert), scored by the mean over PlanInput::samples (else over load
  // alone) of (most loaded rank after the split) / (mean rank load). The
  // search starts from the better of the plan and, when given and complete,
  // the placement in force. per_batch_spread: each sample's deviation from
  // the samples' mean is scaled by this first (> 1 hedges against windows not
  // seen; 1 scores the samples as they are). per_batch_shift: with three or
  // more samples, those whose distance to the newest (total variation of the
  // per-layer token shares, mean over layers) exceeds this x the median
  // distance between consecutive samples are left out, so that a workload
  // that shifted is planned on its new windows only (0: keep all).
  // per_batch_move_cost (with a
  // current placement): each slot given an expert it does not hold now must
  // improve that score by this much (max/mean units); max_moves_per_rank caps
  // such slots per rank. per_batch_evals: placements scored per layer (0: 400
  // x slots of the layer); time_budget_ms also stops it. Requires
  // locality=none and spread_hosts=false; min_gain still compares the plans'
  // shares-based balance, so leave it at 0 and use per_batch_move_cost
  // instead. Served with shares dispatch these placements are worse than
  // plain omni's (they rely on the split). Cost: each score runs the split on
  // every sample, so a layer takes ~0.1 s at 60 experts, 72 slots and 6
  // samples (BENCHMARKS.md).
  bool per_batch = false;
  double per_batch_spread = 2.0;
  double per_batch_shift = 2.5;
  double per_batch_move_cost = 0.003;
  int64_t per_batch_evals = 0;
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
