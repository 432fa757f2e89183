// Placement files: OmniPlacement's own JSON format, and one entry point for
// every placement container (JSON, and omni-infer's .npy/.txt/.bin patterns).
//
// The JSON file is self-describing (docs/formats.md, "Placement JSON"):
//
//   {
//     "format": "omniplacement.placement", "version": 1,
//     "num_layers": 2, "num_ranks": 2, "num_experts": 3,
//     "slots_per_rank": [2, 2],
//     "phy2log": [[0, 1, 2, -1],
//                 [2, 0, 1, 2]],
//     "shares": [[1, 1, 1, 0],                       (optional)
//                [0.5, 1, 1, 0.5]],
//     "topology": {"host_of_rank": [0, 1]},         (optional)
//     "logcnt": [[1, 1, 1], [1, 1, 2]],              (optional, derived; checked)
//     "log2phy": [[[0, -1], [1, -1], [2, -1]],        (optional, derived; checked)
//                 [[1, -1], [2, -1], [0, 3]]]
//   }
//
//   omni::StatusOr<omni::PlacementFile> f = omni::read_placement_file("plan.json");
//   f->placement.num_layers();
//   omni::Status s = omni::write_placement_file("plan.npy", *f);   // as an omni-infer pattern
//
// Doubles are written in their shortest exact form, so JSON round trips are exact.
// Thread safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/io/npy.h"

namespace omni {

// A placement with the topology it was planned for, when the file names one.
struct PlacementFile {
  Placement placement;
  std::optional<Topology> topology;
};

// Parses the JSON placement format; `name` prefixes errors (which give the
// JSON line and column of syntax errors and the layer/slot of bad values).
// `rules` are checked after parsing (structure always).
StatusOr<PlacementFile> parse_placement_json(std::string_view text, std::string_view name = "<json>",
                                             const ValidationRules& rules = {});
// What the JSON writer adds beyond phy2log.
struct PlacementJsonOptions {
  // Also write the derived EPLB-style maps "logcnt" [L][E] (replicas per
  // expert) and "log2phy" [L][E][width] (each expert's global slots,
  // ascending, padded with -1 to the largest replica count in the file). The
  // reader accepts them and checks that they agree with phy2log.
  bool expert_maps = false;
};

// The JSON text of `file` (one line per layer for phy2log and shares).
// A topology, when present, must have placement.num_ranks() ranks.
StatusOr<std::string> encode_placement_json(const PlacementFile& file, const PlacementJsonOptions& options = {});

// By extension: .json is ours; .npy, .txt, .bin are omni-infer patterns
// (which carry no topology and no shares).
StatusOr<PlacementFile> read_placement_file(const std::string& path, const ValidationRules& rules = {});
// By extension. Writing shares or a topology into a pattern container loses
// them; that is refused (drop them first, e.g. placement.without_shares()).
// npy_dtype applies to .npy patterns.
Status write_placement_file(const std::string& path, const PlacementFile& file, NpyDtype npy_dtype = NpyDtype::kInt32,
                            const PlacementJsonOptions& json_options = {});
Status write_placement_file(const std::string& path, const Placement& placement, NpyDtype npy_dtype = NpyDtype::kInt32);

// True when `path` has an extension read_placement_file() understands.
bool is_placement_path(const std::string& path);

}  // namespace omni
