// Small operations on placements that the runtime, the migration plan and the
// failover share: which layers differ, which experts have no replica, one
// placement's layers spliced into another, shares renormalised after slots
// changed hands.
//
//   auto p = omni::compose_layers(in_force, plan, std::vector<omni::LayerId>{0, 1});
//   // p: layers 0 and 1 (experts and shares) from `plan`, the rest from `in_force`
//   omni::layers_equal(*p, plan, 0);                 // true
//   omni::count_lost_experts(*p);                    // (layer, expert) pairs without a replica
//
// Thread safety: pure functions on immutable inputs; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/core/coverage.h"
#include "omniplacement/core/ids.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/validation.h"

namespace omni {

// Validation rules that accept experts without a replica (a placement after a
// failure); every structural check still runs.
ValidationRules lost_experts_allowed();

// Whether layer l holds the same slots_per_rank, the same expert in every slot
// and the same share in every slot (share_of: explicit or even) in a and b.
// Requires 0 <= l < num_layers of both (checked: aborts on a library bug).
bool layers_equal(const Placement& a, const Placement& b, LayerId l);

// Whether any slot of any layer on one of `ranks` holds an expert. Ranks out
// of [0, num_ranks) are ignored. O(layers x |ranks| x slots per rank).
bool holds_on_ranks(const Placement& p, std::span<const RankId> ranks);

// (layer, expert) pairs with no replica, in layer then expert order; and their count.
std::vector<LostExpert> experts_without_replica(const Placement& p);
int64_t count_lost_experts(const Placement& p);

// In place: shares [row.size()] of one layer whose slots hold the experts in
// row [num_ranks x slots_per_rank] (kEmptySlot for an empty slot) rescaled so
// that every expert's shares sum to 1; an expert whose shares sum to 0 gets an
// even split; empty slots get 0. Requires shares.size() == row.size() and
// every expert id in [-1, num_experts) (checked: aborts on a library bug).
void renormalise_shares(std::span<const ExpertId> row, std::span<double> shares, int32_t num_experts);

// `base` with the layers in `layers` (slots_per_rank, experts and shares)
// taken from `next`. When either placement has explicit shares the result has
// them for every layer (base's layers keep base.share_of). Both must have the
// same num_layers, num_ranks and num_experts (INVALID_ARGUMENT otherwise, as
// for a layer out of range). Experts without a replica are allowed in the
// result (base's untouched layers may miss experts lost to a failure).
StatusOr<Placement> compose_layers(const Placement& base, const Placement& next, std::span<const LayerId> layers);

}  // namespace omni
