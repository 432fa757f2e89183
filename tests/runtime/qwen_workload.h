// Test helper shared by the runtime's end-to-end demo tests: the shipped
// Qwen1.5-MoE series as a RoutingWorkload (4 steps per window, 16 tokens per
// rank and step, top-4), with each window's dataset name in `names`.
#pragma once

#include <string>
#include <vector>

#include "omniplacement/io/trace.h"
#include "omniplacement/runtime/routing_workload.h"

namespace omni::testing {

// Iterations 0..last_iteration of each of `datasets`, in that order.
inline StatusOr<RoutingWorkload> qwen_workload(std::vector<std::string>& names,
                                               const std::vector<std::string>& datasets, int32_t last_iteration,
                                               uint64_t seed) {
  OMNI_ASSIGN_OR_RETURN(auto trace,
                        Trace::read_csv(std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv"));
  OMNI_ASSIGN_OR_RETURN(auto windows, trace.windows(datasets, 0, last_iteration));
  std::vector<LoadMatrix> loads;
  for (const auto& w : windows) {
    loads.push_back(w.load);
    names.push_back(w.group);
  }
  return RoutingWorkload::create(std::move(loads), /*steps_per_window=*/4, /*tokens_per_rank=*/16, /*top_k=*/4, seed);
}

}  // namespace omni::testing
