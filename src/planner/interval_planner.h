// Internal (not installed): omni's plan for the next interval, every layer
// (the default path of omni_plan, omni_planner.h).
//
// Per layer: the forecast of the next window from the recent windows
// (load_forecast.h); prices of moves from ServingModel and the topology
// (move_prices.h); candidates scored by IntervalSearch (interval_search.h)
// as expected busiest rank over the forecast's scenarios under the dispatch
// in force plus the prices of their moves, the cheapest kept:
//   - the placement in force (experts it lacks placed);
//   - the best prefix of an unpriced search from it (run_path);
//   - a from-scratch fit of the forecast mean (BlockSolver) relabelled onto
//     the ranks in force by maximum overlap (greedily above 32 ranks), with
//     every move that does not pay for itself given back (prune);
//   - on layers of at most 128 slots, a priced search from the best of these.
// On larger layers under the per-batch split, the path and the fit's prune
// run under static shares (cheaper) and their candidates are judged under
// the split.
// Without a placement in force the from-scratch fit is searched from (moves
// are free).
#pragma once

#include <cstdint>
#include <vector>

#include "omniplacement/core/placement.h"
#include "omniplacement/planner/omni_planner.h"
#include "omniplacement/planner/planner.h"
#include "block_solver.h"

namespace omni::detail {

struct IntervalPlan {
  std::vector<std::vector<ExpertId>> phy2log;  // [L][R * S_l]
  std::vector<std::vector<double>> shares;     // [L][R * S_l] with options.shares, else empty
  int64_t moves = 0;                           // search steps taken, all layers
  bool budget_hit = false;
};

// in: validated by the caller (shapes of load, samples and current; slots
// per layer `spr`); cap: most replicas of one expert, in [1, num_ranks].
StatusOr<IntervalPlan> plan_for_interval(const PlanInput& in, const OmniOptions& options,
                                         const std::vector<int32_t>& spr, int32_t cap,
                                         const Clock::time_point* deadline);

}  // namespace omni::detail
