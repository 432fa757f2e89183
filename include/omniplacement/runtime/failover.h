// Failover planning: the pure decisions a PlacementManager makes when ranks
// fail (docs/DESIGN.md, "The runtime protocol", step 6), apart from the
// threads and transports that carry them out.
//
//   auto fresh = omni::newly_failed(reported, already_failed, my_rank, num_ranks);   // which ranks are news
//   auto restore = omni::plan_restore(in_force, failed, slot_bytes);                 // lost experts -> backup
//   if (restore.ok() && *restore) stage((*restore)->transfers);                      // src_rank kFromBackup
//   auto plan = omni::plan_on_survivors(*planner, load, in_force, topology, failed); // re-plan on the live ranks
//
// Every function is deterministic: every survivor computes the same result
// from the same inputs, which is what lets them commit it at the same step.
// Thread safety: pure functions; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/planner/migration_plan.h"
#include "omniplacement/planner/planner.h"

namespace omni {

// The ranks of `reported` not yet in `already` (ascending; `already` must be
// ascending), each once. INVALID_ARGUMENT naming the rank when one is outside
// [0, num_ranks) or is `self` (a rank never fails itself over).
StatusOr<std::vector<RankId>> newly_failed(std::span<const RankId> reported, std::span<const RankId> already,
                                           RankId self, int32_t num_ranks);

// A restore round: the placement after it and one transfer per reloaded
// expert (src_rank kFromBackup, src_slot -1, bytes the layer's slot bytes).
struct RestorePlan {
  Placement next;
  std::vector<Transfer> transfers;  // in (layer, expert) order
};

// Where each expert of `current` without a replica is reloaded: an empty slot
// of a live rank first, else a slot holding a replica of the expert with the
// most replicas (at least two, so none is left without one); spread over
// ranks (fewest restores so far), ties to the lowest global slot. Explicit
// shares of a changed layer are renormalised (the restored replica gets the
// whole of its expert's load). nullopt when nothing is lost or no lost expert
// finds room (it stays lost). slot_bytes: [num_layers] bytes of one slot.
StatusOr<std::optional<RestorePlan>> plan_restore(const Placement& current, std::span<const RankId> failed,
                                                  std::span<const int64_t> slot_bytes);

// The planner's plan for the live ranks only, expanded back to every rank
// with the failed ranks' slots empty: the live ranks' rows of `current` as a
// group of their own (hosts renumbered densely, `topology` giving the hosts),
// the same slots per rank. A planner that refuses the now uneven hosts is
// asked again with one host. max_moves_per_rank goes to the planner as
// PlanInput::max_moves_per_rank (-1: the planner's own setting), `serving`
// as PlanInput::serving (how omni prices its moves). Errors: the planner's,
// with the number of live ranks in the message.
StatusOr<PlanResult> plan_on_survivors(const Planner& planner, const LoadMatrix& load, const Placement& current,
                                       const Topology& topology, std::span<const RankId> failed,
                                       int32_t max_moves_per_rank = -1, const ServingModel& serving = {});

}  // namespace omni
