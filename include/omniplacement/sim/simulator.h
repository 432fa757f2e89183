// simulate(): replays a trace step by step under several placement policies
// side by side and prices every step with the CostModel.
//
// Time is cut into intervals of `interval_steps` steps. A policy is:
//   kFixed    one placement for the whole run (e.g. contiguous);
//   kStatic   planned once on the first interval's load (a calibration run),
//             in force from step 0;
//   kDynamic  the same start as kStatic, then re-planned at the end of every
//             interval on the load observed in that interval (or the last
//             history_intervals intervals), with the
//             placement in force passed to the planner (incremental planners
//             use it; from-scratch planners ignore it); the weight migration
//             is priced (migration_cost) and charged per MigrationMode: as a
//             stall on the first step of the next interval (kStall), or in
//             the background (kBackground): serving goes on with the old
//             placement while the weights move over the links' idle time (the
//             step's compute time), and the plan comes into force on the step
//             after its migration time has been used up;
//   kOracle   planned on each interval's own load before it is served (it
//             sees the future); its migration bytes are reported but, by
//             default, not charged, so that it is the balance reference.
// The lower bound (step_lower_bound, with the most slots per layer of any
// policy's first placement) is reported beside them.
//
//   omni::sim::SimOptions opts;                       // 100-step intervals, default costs
//   std::vector<omni::sim::PolicySpec> policies = {
//       omni::sim::PolicySpec::fixed("contiguous", *contiguous_placement),
//       omni::sim::PolicySpec::dynamic("dynamic eplb", plan_eplb)};
//   auto trace = omni::sim::SyntheticTrace::create(workload_params, 10000);
//   omni::StatusOr<omni::sim::SimResult> r = omni::sim::simulate(*trace, *topology, policies, opts);
//   r->policies[1].mean_step_s;
//
// Thread safety: simulate() runs on the calling thread; it calls the planners
// and the progress callback from that thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/sim/cost_model.h"
#include "omniplacement/sim/trace.h"

namespace omni::sim {

// A planner as the simulator sees it: the load of a window ([num_layers,
// num_experts], tokens summed over the window's steps), the placement in
// force (nullptr when there is none) and the recent intervals one by one
// (oldest first, each [num_layers, num_experts]; at least one; see
// SimOptions::sample_intervals) -> the next placement, with the same
// num_layers, num_experts and num_ranks as the trace and the topology.
using PlanFn = std::function<StatusOr<Placement>(const LoadMatrix& window, const Placement* current,
                                                 const std::vector<LoadMatrix>& samples)>;

enum class MigrationMode { kStall, kBackground };
const char* migration_mode_name(MigrationMode m);  // "stall", "background"
StatusOr<MigrationMode> parse_migration_mode(const std::string& name);

enum class PolicyKind { kFixed, kStatic, kDynamic, kOracle };
const char* policy_kind_name(PolicyKind k);  // "fixed", "static", "dynamic", "oracle"

struct PolicySpec {
  std::string name;
  PolicyKind kind = PolicyKind::kFixed;
  PlanFn plan;                   // every kind but kFixed
  Placement placement;           // kFixed only
  bool charge_migration = true;  // kDynamic: true; kOracle: false (see above)

  static PolicySpec fixed(std::string name, Placement placement);
  static PolicySpec static_plan(std::string name, PlanFn plan);
  static PolicySpec dynamic(std::string name, PlanFn plan);
  static PolicySpec oracle(std::string name, PlanFn plan);
};

struct SimOptions {
  int64_t interval_steps = 100;  // re-planning period and window length, steps
  // Dynamic policies plan on the load of the last history_intervals intervals
  // (summed): a longer memory smooths noise, a shorter one follows drift.
  int32_t history_intervals = 1;
  // Dynamic policies also get the loads of the last sample_intervals
  // intervals one by one (PlanInput::samples; omni forecasts from them and scores
  // placements on each). After a shift re-plan (below) only the steps since
  // the shift count, for both history and samples.
  int32_t sample_intervals = 1;
  CostParams cost;
  MigrationMode migration_mode = MigrationMode::kStall;
  // The migration's round budget, as the PlacementManager's options of the
  // same names (migration_cost): staging bytes one rank receives per round
  // and layers per round (one round = one commit); 0: no limit, >= 0.
  int64_t staging_bytes_per_rank = kDefaultStagingBytesPerRank;
  int32_t layers_per_commit = 0;
  // Shift detection for dynamic policies (0: off): every shift_check_steps
  // steps within an interval, the load of those steps (summed) is priced
  // under the placement in force; when its mean over layers of max/mean
  // exceeds what the plan gave on the load it was planned on by more than
  // shift_threshold, the policy re-plans at once on those steps (not while a
  // background migration is in flight), and its next regular re-plan uses
  // only the steps since then. A phase shift then costs a few steps instead
  // of the rest of the interval.
  int64_t shift_check_steps = 0;
  double shift_threshold = 0.07;  // the runtime's default (PlacementManagerOptions)
  int64_t max_steps = 0;         // stop after this many steps; 0: the whole trace
  bool record_steps = true;      // fill SimResult::steps
  // Called after every interval with (steps done, total steps); may be empty.
  std::function<void(int64_t, int64_t)> progress;
};

// One policy at one step.
struct StepRecord {
  int64_t step = 0;
  int32_t policy = 0;            // index into SimResult::policies
  double time_s = 0;             // cost-model time + migration stall charged at this step
  double compute_s = 0;
  double comm_s = 0;
  double migration_s = 0;        // stall charged at this step (kStall)
  double max_over_mean = 1;      // mean over layers
  double cross_host_bytes = 0;   // dispatch + combine
  double moved_bytes = 0;        // weights of the placement switched to before this step (charged or not)
  int64_t moved_experts = 0;     // expert copies of that switch (MigrationCost::transfers)
};

struct PolicySummary {
  std::string name;
  std::string kind;              // policy_kind_name, or "bound"
  double mean_step_s = 0;        // including migration stalls
  double p99_step_s = 0;
  double mean_max_over_mean = 1;
  // Mean over the steps after the first interval: for static and dynamic
  // policies the steps served by a placement planned on earlier loads (the
  // first interval is their calibration run, seen in advance), i.e. the
  // realised balance; equal to mean_max_over_mean when the run is one interval.
  double mean_max_over_mean_after_first = 1;
  double cross_host_bytes = 0;   // total over the run
  double moved_bytes = 0;        // total over the run
  int64_t moved_experts = 0;     // expert copies over the run (moved_bytes / expert_bytes)
  double migration_s = 0;        // total stall charged
  int64_t replans = 0;           // placements planned (initial one included)
  int64_t shift_replans = 0;     // of which triggered by shift detection
  double plan_wall_s = 0;        // wall time spent in the planner, total
};

struct SimResult {
  int64_t num_steps = 0;
  int32_t num_layers = 0;
  int32_t num_experts = 0;
  int32_t num_ranks = 0;
  // The policies in the order given, then the lower bound.
  std::vector<PolicySummary> policies;
  // Step-major: steps[i * policies.size() + p] (empty unless record_steps).
  std::vector<StepRecord> steps;
  double wall_s = 0;             // wall time of the whole simulation
};

// Replays `trace` (from its current position) under `policies`. Every planned
// placement is checked for shape; a planner error stops the run with that
// error and the policy's name and step.
StatusOr<SimResult> simulate(TraceSource& trace, const Topology& topology, const std::vector<PolicySpec>& policies,
                             const SimOptions& options);

}  // namespace omni::sim
