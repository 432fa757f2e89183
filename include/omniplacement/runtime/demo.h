// The OmniPlacement demo: N ranks serve a toy MoE model (real arithmetic,
// toy_moe.h) on a routing time series while a PlacementManager per rank
// re-plans, moves expert weights and commits new epochs; every output is
// checked against the logical expert's reference.
//
//   omni::DemoConfig config;                        // 12 ranks x 6 slots, Qwen1.5-MoE series
//   auto workload = omni::RoutingWorkload::create(windows, config.steps_per_window, config.tokens_per_rank,
//                                                 config.top_k, config.seed);
//   std::vector<omni::DemoReport> reports(12);
//   omni::LocalCluster(12, [&](omni::Transport& t) {
//     auto r = omni::run_demo(t, config, *workload, window_names);
//     if (!r.ok()) return r.status();
//     reports[t.rank()] = *r;                       // reports[0] is complete
//     return omni::ok_status();
//   });
//
// Per step, every rank draws its tokens (RoutingWorkload), records and
// dispatches them through its PlacementManager, sends each (token, expert) to
// the rank owning the chosen slot (all-to-all over the transport), which
// applies the weights found in that slot of its WeightStore and sends the
// result back; the requesting rank compares it bit for bit with the reference
// computed from the logical expert. The same tokens are also dispatched under
// the static placement (the initial one, never changed) to count its loads.
// Placement figures are max/mean rank load per layer of each window's steps
// summed, averaged over the layers and windows of a phase.
//
// Thread safety: run_demo is called once per rank, by that rank's thread or
// process, with its Transport.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "omniplacement/core/status.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/routing_workload.h"
#include "omniplacement/transport/transport.h"

namespace omni {

struct DemoProgress {
  int64_t step = 0;
  int64_t steps = 0;
  int32_t window = 0;
  std::string phase;
  uint64_t epoch = 0;
  int64_t rounds_started = 0;
  int64_t experts_moved = 0;
  int64_t wrong_outputs = 0;   // all ranks, so far
  int64_t outputs_checked = 0; // all ranks, so far
};

struct DemoConfig {
  int32_t ranks_per_host = 4;  // topology: hosts of this many ranks (must divide the rank count)
  int32_t slots_per_rank = 6;
  int64_t steps = 600;
  int32_t hidden = 16;  // toy expert width
  uint64_t seed = 1;
  // Manager options (planner_spec, replan_interval_steps, dispatch_mode, ...).
  PlacementManagerOptions manager;
  // Steps between progress callbacks on rank 0 (0: none); each one costs a
  // tiny all-reduce on every rank.
  int64_t progress_every = 0;
  std::function<void(const DemoProgress&)> progress;
};

struct DemoPhase {
  std::string name;
  int32_t num_windows = 0;
  double dynamic = 0;  // mean over windows and layers of max/mean rank load
  double static_ = 0;
  double oracle = 0;   // a plan made on each window's own counts (rank 0 only)
};

struct DemoReport {
  int32_t ranks = 0;
  int64_t steps = 0;
  std::string planner;
  std::string dispatch;
  std::string transport;
  PlacementManagerStats manager;       // this rank's manager (epochs, moves agree on all ranks)
  int64_t outputs_checked = 0;         // (token, expert) results compared, all ranks
  int64_t wrong_outputs = 0;           // of which differed from the reference
  int64_t misrouted = 0;               // requests that reached a rank not owning the slot
  std::vector<DemoPhase> phases;
  DemoPhase overall;
  double engine_us_per_step = 0;       // record + dispatch + step_boundary, mean over ranks
  double dispatch_us_per_step = 0;     // record + dispatch alone
  double step_boundary_us_per_step = 0;
  double wall_seconds = 0;
};

// Runs the demo on this rank. window_names[w] names the phase of window w
// (consecutive equal names form a phase). Collective: every rank calls it with
// the same config and workload.
StatusOr<DemoReport> run_demo(Transport& transport, const DemoConfig& config, const RoutingWorkload& workload,
                              const std::vector<std::string>& window_names);

}  // namespace omni
