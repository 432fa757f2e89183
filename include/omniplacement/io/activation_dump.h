// omni-infer activation dumps: per-global-slot token counts, one text file per
// collection (docs/formats.md, "Activation dumps").
//
// One line per MoE layer; on line l, the tab-separated int64 token counts of
// every global slot of layer l, rank-major (g = rank * slots_per_rank[l] + slot).
// Counts are per slot, so the placement in force when they were collected is
// needed to turn them into per-expert loads: the load of expert e is the sum
// of the counts of the slots that hold e. A count in an empty slot means the
// dump and the placement do not belong together and is refused.
//
//   omni::StatusOr<omni::Placement> p = omni::read_pattern("data/patterns/placement_pattern_test_for_optimizer.txt");
//   omni::StatusOr<omni::LoadMatrix> load =
//       omni::read_activation_dump("data/dumps/test_for_optimizer_step0.txt", *p);   // 20 x 8 counts
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"

namespace omni {

// slot_counts[l][g]: tokens served by global slot g of layer l. Rows may differ
// in length (layer-wise uneven placements).
using SlotCounts = std::vector<std::vector<int64_t>>;

// Parses the text; `name` prefixes errors, which give the line (= layer + 1)
// and the field. Blank trailing lines are ignored; counts must be >= 0.
StatusOr<SlotCounts> parse_activation_dump(std::string_view text, std::string_view name = "<dump>");
// The text of a dump: one line per layer, counts separated by tabs, '\n' after each line.
std::string encode_activation_dump(const SlotCounts& slot_counts);

// Per-expert loads [num_layers, num_experts] (counts) from per-slot counts
// under `placement`: one row per layer, num_slots(l) counts in row l.
StatusOr<LoadMatrix> loads_from_slot_counts(const SlotCounts& slot_counts, const Placement& placement);

// read + parse + loads_from_slot_counts.
StatusOr<LoadMatrix> read_activation_dump(const std::string& path, const Placement& placement);
Status write_activation_dump(const std::string& path, const SlotCounts& slot_counts);

}  // namespace omni
