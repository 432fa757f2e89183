// Internal helpers shared by the planners of this module (not installed).
#pragma once

#include <vector>

#include "omniplacement/core/placement.h"
#include "omniplacement/core/validation.h"

namespace omni {

// replica_rank[l][g]: index of slot g among its expert's replicas in ascending
// slot order (-1 for an empty slot). For planners whose creation order is the
// slot order.
std::vector<std::vector<int32_t>> replica_rank_by_slot(const PlacementLayout& layout);

// Slots whose expert differs between two placements of the same ranks,
// experts and layers: slot s of rank r in layer l counts when `next` holds an
// expert there and `current` holds another one (or has no such slot).
int64_t slots_changed(const Placement& current, const Placement& next);

}  // namespace omni
