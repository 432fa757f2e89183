// Workloads of the planner evaluation harness (omniplace_plan_eval).
#pragma once

#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"

namespace omni::plan_eval {

// The shipped Qwen1.5-MoE series as it is replayed everywhere in the project:
// bookcorpus iterations 0-19, then wikitext 0-19, then wmt19 0-19 (60 windows
// of [12 layers, 60 experts] token counts).
StatusOr<std::vector<LoadMatrix>> qwen_trace_windows();

}  // namespace omni::plan_eval
