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

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
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

// Shared by the ranks of one process (LocalTransport) when failures are
// injected: when the first rank died, and when the survivors are done (a dead
// rank's manager must outlive the survivors' use of the shared transport).
// Any thread.
class DemoFailureSync {
 public:
  explicit DemoFailureSync(int32_t survivors) : survivors_(survivors) {}
  void note_kill(int64_t steady_ns);
  int64_t kill_ns() const;  // 0 before any kill
  void survivor_done();
  bool wait_survivors(std::chrono::milliseconds timeout);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int32_t survivors_ = 0;
  int32_t done_ = 0;
  int64_t kill_ns_ = 0;
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
  // Failure injection (LocalTransport only): these ranks crash just before
  // step fail_at_step (they stop serving and their heartbeats go silent). Each
  // rank runs a FailureDetector with this period and timeout; the survivors'
  // detectors declare the dead ranks failed and fail them over in every
  // PlacementManager, lost experts are restored from `backup` ("host": a
  // host-memory copy, "safetensors": a checkpoint each rank writes to a temp
  // file, "none"), and the requests that died with a rank are served again on
  // the new map. failure_sync is required then.
  std::vector<RankId> fail_ranks;
  int64_t fail_at_step = -1;
  std::chrono::microseconds heartbeat_period{10000};
  std::chrono::microseconds heartbeat_timeout{50000};
  std::string backup = "host";
  std::shared_ptr<DemoFailureSync> failure_sync;
};

// What a failure did (survivors' view; times from std::chrono::steady_clock,
// -1 when the phase was not reached before the run ended).
struct DemoFailure {
  bool injected = false;
  std::vector<RankId> failed;           // the ranks made to crash
  std::vector<RankId> declared_failed;  // what the survivors' detectors declared (more: false positives)
  int64_t fail_at_step = -1;
  std::string backup;
  double detection_ms = -1;       // crash to the first survivor's detector declaring it failed
  double detection_all_ms = -1;   // crash to the last survivor declaring it
  double failover_ms = -1;        // first detection to every survivor routing on the map without it
  double failover_cost_us = 0;    // fail_ranks() on one survivor (the slowest): new map built and published
  int64_t experts_lost = 0;       // (layer, expert) pairs with no surviving replica
  int64_t experts_restored = 0;   // reloaded from the backup
  double restore_ms = -1;         // first detection to no expert lost on every survivor
  double restore_us_per_expert = 0;  // backup read into staging, mean per expert
  double redundancy_ms = -1;      // first detection to the survivors' rebuild round ended everywhere
  int64_t tokens_lost_expert = 0; // tokens of lost experts (kLostExpertSlot: reported, not served)
  int64_t requests_reserved = 0;  // requests that died with a rank, served again on the new map
};

struct DemoPhase {
  std::string name;
  int32_t num_windows = 0;
  double dynamic = 0;  // mean over windows and layers of max/mean rank load
  double static_ = 0;
  double oracle = 0;   // a plan made on each window's own counts, priced with the run's dispatch mode (rank 0 only)
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
  DemoFailure failure;
  bool rank_failed = false;            // this rank was made to crash (its report holds nothing else)
};

// Runs the demo on this rank (a crashed rank returns a report with
// rank_failed set once the survivors are done). window_names[w] names the phase of window w
// (consecutive equal names form a phase). Collective: every rank calls it with
// the same config and workload.
StatusOr<DemoReport> run_demo(Transport& transport, const DemoConfig& config, const RoutingWorkload& workload,
                              const std::vector<std::string>& window_names);

}  // namespace omni
