// Load matrices in files: .npy and CSV, shape [num_layers, num_experts].
//
//   .npy  a 2-D array [layers, experts]; int32/int64 give exact counts
//         (LoadMatrix::kCounts), float32/float64 give weights (kWeights).
//   .csv  one line per layer, num_experts comma-separated values; lines that
//         start with '#' and blank lines are skipped; an optional first line
//         whose first field is not a number is a header and is skipped. All
//         integers give counts; any value with a fraction or exponent gives weights.
//
// A CSV in one of the trace layouts (trace.h) is recognised by its header and
// needs a selector, e.g. "dataset=wikitext,iteration=3".
//
//   omni::StatusOr<omni::LoadMatrix> m = omni::read_load_file("load.npy");
//   omni::StatusOr<omni::LoadMatrix> q = omni::read_load_file(
//       "data/traces/qwen15moe_expert_freq_by_iteration.csv", "dataset=bookcorpus,iteration=0");  // 12 x 60
//   omni::Status s = omni::write_load_file("load.csv", *q);
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"

namespace omni {

// Parses the plain CSV layout above; `name` prefixes errors (with line numbers).
StatusOr<LoadMatrix> parse_load_csv(std::string_view text, std::string_view name = "<csv>");
// Counts as integers, weights in their shortest exact form: reading back is exact.
std::string encode_load_csv(const LoadMatrix& load);

// Every load source, by extension: .npy, .csv (plain or trace), and .txt
// activation dumps (activation_dump.h), which need the placement in force.
// `selector` picks one window from a trace CSV (trace.h); it must be empty
// for the other sources. `placement_in_force` (not owned, may be null) is used
// only for dumps.
StatusOr<LoadMatrix> read_load_file(const std::string& path, std::string_view selector = "",
                                    const Placement* placement_in_force = nullptr);
// .npy: int64 for counts, float64 for weights. .csv: encode_load_csv.
Status write_load_file(const std::string& path, const LoadMatrix& load);

}  // namespace omni
