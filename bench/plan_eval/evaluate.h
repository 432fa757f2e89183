// The evaluation of omniplace_plan_eval: every policy re-plans after every
// window of a workload and each plan is measured on the NEXT window, under
// the dispatch in force (static shares, or the runtime's per-batch split
// applied to each step of that window).
//
// Policies are written "<mode>:<planner spec>":
//   scratch:<spec>  planned on the last window alone, no placement in force
//                   (e.g. scratch:eplb, eplb re-planned from scratch)
//   inc:<spec>      given the placement in force and the recent windows
//                   (PlanInput::current and ::samples)
//   oracle:<spec>   planned on the next window itself (sees the future;
//                   the reference, its moves are not counted)
// Every policy starts from the same placement (eplb on window 0) and re-plans
// after windows 0..T-2.
#pragma once

#include <string>
#include <vector>

#include "plan_eval/workloads.h"

namespace omni::plan_eval {

enum class Dispatch { kShares, kPerBatch };
const char* dispatch_name(Dispatch d);  // "shares", "per-batch"

struct EvalOptions {
  std::vector<std::string> policies;
  std::vector<Dispatch> dispatch = {Dispatch::kShares, Dispatch::kPerBatch};
  int32_t history = 6;  // windows handed to the planner as samples (the last one included)
  // Overrides of the workloads' serving figures (< 0: the workload's).
  double expert_bytes = -1;
  double seconds_per_token = -1;
  double interval_windows = -1;  // interval_steps = this x window_steps
  // The planner of the common start (its plan of window 0, from scratch, static shares):
  // eplb, or the demo's default omni (the demo starts from its planner's plan of window 0).
  std::string start = "eplb";
};

struct PolicyFigures {
  std::string policy;
  Dispatch dispatch = Dispatch::kShares;
  double realised = 0;        // mean over re-plans of the next window's mean over layers of max/mean rank load
  double realised_sum = 0;    // sum over re-plans and layers of max rank load / sum of mean rank load
  double fitted = 0;          // the same, measured on the window planned on (shares only)
  int64_t moves = 0;          // slots given another expert, over all re-plans
  int32_t replans = 0;
  // Time in the serving model's units, summed over re-plans: compute_s, the
  // next window's busiest rank per layer (sum over layers of max rank load x
  // seconds_per_token); migration_s, the moves' estimated time as a stall
  // (diff()'s time model, migration_plan.h, with the serving expert_bytes).
  // Their sum is what a re-plan costs and saves, moves included.
  double compute_s = 0;
  double migration_s = 0;
  // Where the moves' bytes go (diff()'s transfers, summed over re-plans): the
  // transfers within a host and across hosts; per re-plan, the busiest
  // receiving rank's summed link time (latency + bytes / bandwidth of each
  // transfer into it) and the mean over ranks of that time, summed over
  // re-plans. busiest / mean is how far the moves pile onto some receivers
  // (1: spread evenly). JSON rows only.
  int64_t transfers_same_host = 0;
  int64_t transfers_cross_host = 0;
  double receive_busiest_s = 0;
  double receive_mean_s = 0;
  double cpu_ms_mean = 0;     // planner CPU time per re-plan (this thread)
  double cpu_ms_max = 0;
  std::string error;          // non-empty: the policy failed
};

// Runs every policy on `w` under every dispatch mode of `options`.
StatusOr<std::vector<PolicyFigures>> evaluate(const EvalWorkload& w, const EvalOptions& options);

// A table of the figures (policy rows, eplb-relative columns when scratch:eplb is present).
std::string figures_table(const EvalWorkload& w, const std::vector<PolicyFigures>& figures);
// One JSON object per figure row, one per line.
std::string figures_json(const EvalWorkload& w, const std::vector<PolicyFigures>& figures);

}  // namespace omni::plan_eval
