// Matching the ranks of a new plan to the ranks of the placement in force.
//
// Ranks are interchangeable for balance, so a plan computed from scratch may
// be relabelled freely: match_ranks() finds the relabelling that keeps the
// most expert weights where they already are (a maximum-weight assignment,
// solved exactly by the Hungarian method), and align_slots() then keeps every
// expert that stays on a rank in the slot it already occupies.
//
//   // old_rows[r], new_rows[r]: experts on rank r (one layer), -1 for empty slots.
//   std::vector<omni::RankId> to = omni::match_ranks(old_phy2log, new_phy2log, num_ranks);
//   // new rank q becomes rank to[q]
//
// Cost: O(num_ranks^3) per layer (about 1 ms at 64 ranks).
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"

namespace omni {

// old_phy2log: [num_ranks * old_slots_per_rank]; new_phy2log: [num_ranks *
// new_slots_per_rank]. Returns to[q]: the rank that new rank q's contents go
// to, a permutation maximising the number of (rank, expert) pairs present in
// both; ties keep new rank q on rank q where possible.
std::vector<RankId> match_ranks(std::span<const ExpertId> old_phy2log, std::span<const ExpertId> new_phy2log,
                                int32_t num_ranks);

// Applies `to` and orders each rank's slots so that an expert present on that
// rank in the old placement keeps its old slot when the slot exists in the new
// layout. Returns the new phy2log [num_ranks * new_slots_per_rank].
std::vector<ExpertId> relabel_and_align(std::span<const ExpertId> old_phy2log, std::span<const ExpertId> new_phy2log,
                                        int32_t num_ranks, std::span<const RankId> to);

// Slots whose expert differs between the two (same shape) layouts, per rank:
// the expert weights each rank must receive. [num_ranks].
std::vector<int32_t> slot_changes_per_rank(std::span<const ExpertId> old_phy2log, std::span<const ExpertId> new_phy2log,
                                           int32_t num_ranks);

}  // namespace omni
