// Workloads of the planner evaluation harness (omniplace_plan_eval).
//
// A workload is a sequence of windows as a planner sees them (tokens per
// expert summed over the window's steps) and, where the steps are known, the
// steps themselves, so that a plan can be served step by step under the
// runtime's per-batch split. Sizes follow the deployments of the issue
// (docs/BENCHMARKS.md): the demo's Qwen1.5-MoE run, the Qwen trace replay,
// a DeepSeek-V3-size drift, and held-out synthetic shapes that the planner
// was not tuned on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"
#include "omniplacement/planner/planner.h"

namespace omni::plan_eval {

// One step's token counts per (layer, expert), [num_layers * num_experts].
using StepCounts = std::vector<int32_t>;

struct EvalWorkload {
  std::string name;
  std::string description;
  bool held_out = false;          // not used to tune the planner
  int32_t num_ranks = 0;
  int32_t slots_per_rank = 0;
  int32_t ranks_per_host = 0;
  int32_t num_groups = 1;
  std::vector<LoadMatrix> windows;            // [T], each [num_layers, num_experts]
  std::vector<std::vector<StepCounts>> steps;  // [T][steps of the window]; empty: each window is one step
  // What the planner is told about serving (the dispatch is set per run):
  // the steps of a window and of the interval, and the cost figures.
  ServingModel serving;
};

// The shipped Qwen1.5-MoE series as it is replayed everywhere in the project:
// bookcorpus iterations 0-19, then wikitext 0-19, then wmt19 0-19 (60 windows
// of [12 layers, 60 experts] token counts).
StatusOr<std::vector<LoadMatrix>> qwen_trace_windows();

// The demo's workload (omniplace demo defaults): the Qwen series drawn as
// tokens by RoutingWorkload (10 steps per window, 64 tokens per rank and step,
// top-4, seed 1) on 12 ranks x 6 slots, 3 hosts of 4.
StatusOr<EvalWorkload> demo_workload();
// The Qwen replay of `omniplace plan --current`: the trace windows themselves,
// 12 ranks x 6 slots, 3 hosts of 4 (no steps: a window is served as one step).
StatusOr<EvalWorkload> qwen_replay_workload();
// DeepSeek-V3 size: 58 x 256, 64 ranks x 5 slots (320), 8 hosts of 8, 8
// expert groups; the simulator's default decode workload (Zipf 0.5, 8192
// tokens x top-8 per step, drift 0.0005) with one partial phase shift (25%
// of the experts) at step 550; 10 windows of 100 steps (the simulator's
// default interval).
StatusOr<EvalWorkload> dsv3_drift_workload();
// Held-out synthetic drifts: shapes 61 x 256 on 64 ranks, 48 x 128 on 16,
// 24 x 64 on 8; Zipf and lognormal skews; drift, bursts and phase shifts.
StatusOr<std::vector<EvalWorkload>> held_out_workloads();

// Every workload by name: "demo", "qwen", "dsv3", "held-out" (all held-out
// ones) or a held-out workload's own name.
StatusOr<std::vector<EvalWorkload>> workloads_named(const std::string& name);

}  // namespace omni::plan_eval
