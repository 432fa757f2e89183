// DemoWorkload: what the demo serves, the routing of every (step, rank,
// layer) drawn from a per-iteration trace (RoutingWorkload) and the name of
// each window's phase (its dataset).
//
//   auto w = omni::trace_workload("data/traces/qwen15moe_expert_freq_by_iteration.csv",
//                                 {"bookcorpus", "wikitext", "wmt19"}, /*steps_per_window=*/10,
//                                 /*tokens_per_rank=*/64, /*top_k=*/4, /*seed=*/1);
//   // w->routing: 60 windows of 12 layers x 60 experts; w->window_names[w]: "bookcorpus", ...
//
// Thread safety: immutable after creation; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "demo/routing_workload.h"
#include "omniplacement/core/status.h"

namespace omni {

struct DemoWorkload {
  RoutingWorkload routing;
  // window_names[w] names the phase of window w (one per routing window);
  // consecutive equal names form a phase of the result table.
  std::vector<std::string> window_names;
};

// The windows of `datasets` (in that order; iterations first_iteration ..
// last_iteration of each, -1: its last) of the per-iteration trace CSV at
// trace_path, drawn as RoutingWorkload::create(windows, steps_per_window,
// tokens_per_rank, top_k, seed) and named by dataset. Errors name the file,
// the missing dataset or iteration, or the bad workload parameter.
StatusOr<DemoWorkload> trace_workload(const std::string& trace_path, const std::vector<std::string>& datasets,
                                      int64_t steps_per_window, int32_t tokens_per_rank, int32_t top_k, uint64_t seed,
                                      int32_t first_iteration = 0, int32_t last_iteration = -1);

}  // namespace omni
