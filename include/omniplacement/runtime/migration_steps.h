// MigrationStep: one commit of a migration as the PlacementManager runs it —
// the weight transfers every rank stages before the commit, and the placement
// every rank routes by after it.
//
// A re-plan's steps are exactly the rounds of the planner's migration plan
// (planner/migration_plan.h: diff() under the manager's staging budget and
// layers per commit; routing_after_round() after each), so the simulator,
// which prices the same rounds, and the runtime run one schedule:
//
//   omni::MigrationOptions budget;                         // the manager's options
//   budget.layer_expert_bytes = {...};                     // the WeightStore's slot bytes
//   budget.staging_bytes_per_rank = options.staging_bytes_per_rank;
//   budget.layers_per_commit = options.layers_per_commit;
//   auto steps = omni::migration_steps(current, next, topology, budget);
//   for (const omni::MigrationStep& s : *steps) { stage(s.transfers); commit(s.routing); }
//
// A restore after a failure reloads lost experts from a backup source (no
// diff: the weights have no slot to come from); restore_steps() packs its
// transfers, whole layers at a time, into steps under the same budget.
//
// Thread safety: pure functions; any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/planner/migration_plan.h"

namespace omni {

struct MigrationStep {
  // Staged before the commit; sorted by (layer, dst_rank, dst_slot). Every
  // source is read from the placement in force before this step.
  std::vector<Transfer> transfers;
  // Routed by after the commit (never null).
  std::shared_ptr<const Placement> routing;
  // Layers whose routing differs from the previous step's (the first step:
  // from `current`), ascending.
  std::vector<LayerId> changed;
  // Most bytes one rank receives in this step (its staging need).
  int64_t max_receive_bytes = 0;
};

// The steps from `current` to `next`: one per round of diff(current, next,
// topology, options), routing by routing_after_round(); when the plan has no
// transfer but a layer differs (shares only, or slots emptied), one step
// without transfers that routes by `next`; none when the placements are
// equal. Both placements must have the same slots_per_rank in every layer (a
// runtime's slots do not change) and diff()'s preconditions hold.
// RESOURCE_EXHAUSTED when a round needs more staging on one rank than
// options.staging_bytes_per_rank (> 0): an over_limit round of diff(), a cycle
// that cannot be split; the message names the round, the rank and the bytes.
StatusOr<std::vector<MigrationStep>> migration_steps(const Placement& current, const Placement& next,
                                                     const Topology& topology, const MigrationOptions& options);

// The steps of a restore from `current` to `next` by `transfers` (each writes
// one slot; src_rank may name a backup, any value: it is not read here):
// whole layers in ascending order, as many per step as
// options.staging_bytes_per_rank (bytes received by one rank, > 0) and
// options.layers_per_commit (> 0) allow; each step routes by `current` with
// its layers (and every earlier step's) taken from `next`. RESOURCE_EXHAUSTED
// when one layer alone needs more staging on one rank than the budget;
// INVALID_ARGUMENT when a transfer's layer is out of range.
StatusOr<std::vector<MigrationStep>> restore_steps(const Placement& current, const Placement& next,
                                                   std::span<const Transfer> transfers,
                                                   const MigrationOptions& options);

}  // namespace omni
