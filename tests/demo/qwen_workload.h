// Test helper shared by the demo's end-to-end tests: the shipped Qwen1.5-MoE
// series as a DemoWorkload (4 steps per window, 16 tokens per rank and step,
// top-4), each window named by its dataset.
#pragma once

#include <string>
#include <vector>

#include "demo/demo_workload.h"

namespace omni::testing {

// Iterations 0..last_iteration of each of `datasets`, in that order.
inline StatusOr<DemoWorkload> qwen_workload(const std::vector<std::string>& datasets, int32_t last_iteration,
                                            uint64_t seed) {
  return trace_workload(std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv", datasets,
                        /*steps_per_window=*/4, /*tokens_per_rank=*/16, /*top_k=*/4, seed, 0, last_iteration);
}

}  // namespace omni::testing
