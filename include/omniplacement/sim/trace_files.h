// Trace windows in files (through io): what `omniplace simulate --trace` reads
// and `omniplace gen-trace` writes.
//
// read_trace_windows(path) accepts:
//   - a directory: every load file in it (.npy, .csv; .txt activation dumps
//     when a placement in force is given), one window each, in file-name order;
//   - a trace CSV (io's trace layouts, e.g. the Qwen1.5-MoE time series): the
//     windows of `datasets` in that order (per-iteration traces), or every
//     window in file order;
//   - any other load file: one window.
// write_synthetic_trace() writes window_000000.<npy|csv>, ... into a directory:
// each window the tokens of steps_per_window steps of a SyntheticWorkload.
//
//   auto windows = omni::sim::read_trace_windows(
//       "data/traces/qwen15moe_expert_freq_by_iteration.csv", {.datasets = {"bookcorpus", "wikitext", "wmt19"}});
//   auto trace = omni::sim::WindowTrace::create(std::move(*windows));
//
// Thread safety: functions of their arguments; a directory being written by
// another process is not detected.
#pragma once

#include <string>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/sim/workload.h"

namespace omni::sim {

struct TraceFileOptions {
  // Per-iteration trace CSVs: these datasets, in this order (empty: all windows in file order).
  std::vector<std::string> datasets;
  // Activation dumps (.txt) in a directory: the placement in force when they were
  // collected (not owned; may be null when the directory has no dumps).
  const Placement* placement_in_force = nullptr;
};

StatusOr<std::vector<LoadMatrix>> read_trace_windows(const std::string& path, const TraceFileOptions& options = {});

// format: "npy" (int64 counts) or "csv". Creates `dir` when missing; refuses a
// directory that already holds window files. num_windows, steps_per_window >= 1.
// Returns the paths written.
StatusOr<std::vector<std::string>> write_synthetic_trace(const WorkloadParams& params, int64_t num_windows,
                                                         int64_t steps_per_window, const std::string& dir,
                                                         const std::string& format = "npy");

}  // namespace omni::sim
