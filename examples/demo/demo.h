// The OmniPlacement demo (examples/demo, not part of the installed library):
// N ranks serve a toy MoE model (real arithmetic, toy_moe.h) on a routing
// time series while a PlacementManager per rank re-plans, moves expert weights
// and commits new epochs; every output is checked against the logical
// expert's reference. `omniplace demo` runs it.
//
//   omni::DemoConfig config;                        // 6 slots per rank, 4 ranks per host
//   auto workload = omni::trace_workload(trace_csv, {"bookcorpus", "wikitext", "wmt19"},
//                                        /*steps_per_window=*/10, /*tokens_per_rank=*/64, /*top_k=*/4, /*seed=*/1);
//   auto reports = omni::run_local_demo(/*num_ranks=*/12, config, *workload);   // ranks as threads
//   // (*reports)[0] is complete; under mpirun each process calls run_demo_rank(transport, config, *workload).
//
// The parts, each in its own file: the workload (demo_workload.h: the trace
// drawn as RoutingWorkload), the cluster (LocalCluster, runtime/local_cluster.h:
// per rank a LocalTransport, HostWeightStore, PlacementManager and, with
// failure injection, a FailureDetector), the serving loop of one rank
// (rank_loop.h) and its all-to-all (expert_exchange.h), the failure injection
// (demo_failure.h) and the result table (phase_table.h).
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
// Thread safety: run_local_demo from any thread (it owns its cluster);
// run_demo_rank is called once per rank, by that rank's thread or process,
// with its Transport.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "demo/demo_failure.h"
#include "demo/demo_workload.h"
#include "demo/phase_table.h"
#include "omniplacement/core/status.h"
#include "omniplacement/runtime/placement_manager.h"
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
  // Failure injection: these ranks crash just before step fail_at_step (as
  // threads: LocalCluster::kill, they stop serving and their heartbeats go
  // silent; as processes: SIGKILL). Each rank runs a FailureDetector with this
  // period and timeout; the survivors' detectors declare the dead ranks failed
  // and fail them over in every PlacementManager, lost experts are restored
  // from `backup` ("host": a host-memory copy per rank, "safetensors": a
  // checkpoint per rank in a temp file, "none"), and the requests that died
  // with a rank are served again on the new map.
  std::vector<RankId> fail_ranks;
  int64_t fail_at_step = -1;
  // Stall injection: rank stall_rank stops for stall_ms just before step
  // stall_at_step (as a thread: LocalCluster::stall, its heartbeats go silent
  // too; as a process: SIGSTOP, resumed by a child process). Longer than the
  // heartbeat timeout, the survivors declare it failed and fail it over as
  // for a crash; when it comes back it is fenced (transport.h) and leaves:
  // its report says so (rank_failed, fenced).
  RankId stall_rank = -1;
  int64_t stall_at_step = -1;
  std::chrono::milliseconds stall_ms{0};
  std::chrono::microseconds heartbeat_period{10000};
  std::chrono::microseconds heartbeat_timeout{50000};
  std::string backup = "host";

  // Test hook (fault injection at chosen protocol moments): called on every
  // rank's engine thread at the start of every step, with its rank and
  // manager. A crash from here (a process that kills itself) is a crash.
  std::function<void(int64_t step, RankId rank, const PlacementManager& manager)> on_step;

  // Failures may come from outside this schedule (a test hook that kills its
  // own process at a protocol moment): every rank runs its detector, backup
  // and failover as with an injected failure.
  bool expect_failures = false;

  // Whether the ranks prepare for failures (a crash or stall is injected, or expected).
  bool injects_failures() const { return !fail_ranks.empty() || stall_rank >= 0 || expect_failures; }
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
  // At the end, every live rank compares the weights in each slot it holds
  // (placement in force) with the expert's own: slots checked, all ranks, and
  // of which differ (a transfer that committed corrupted or half-copied bytes).
  int64_t weights_checked = 0;
  int64_t weights_corrupted = 0;
  std::vector<DemoPhase> phases;
  DemoPhase overall;
  double engine_us_per_step = 0;       // record + dispatch + step_boundary, mean over ranks
  double dispatch_us_per_step = 0;     // record + dispatch alone
  double step_boundary_us_per_step = 0;
  double wall_seconds = 0;
  DemoFailure failure;
  bool rank_failed = false;            // this rank was made to crash or stall (its report holds nothing else)
  std::string fenced;                  // a stalled rank that came back: how it learnt it was declared failed
};

// Runs the demo on num_ranks ranks as threads of this process (a
// LocalCluster) and returns every rank's report, indexed by rank: a crashed or
// stalled rank's has rank_failed set (a stalled one also `fenced`), every
// survivor's is complete. Errors: a bad config or workload (INVALID_ARGUMENT
// naming it), or the lowest failing rank's error (with "rank r").
StatusOr<std::vector<DemoReport>> run_local_demo(int32_t num_ranks, const DemoConfig& config,
                                                 const DemoWorkload& workload);

// Runs the demo as rank transport.rank() of transport.size() ranks, each
// calling it with its own transport (one MpiTransport or UcxTransport per
// process): it builds this rank's store and manager (and, with failure
// injection, its FailureDetector and backup) and serves. Collective: every
// rank calls it with the same config and workload. Failure injection needs a
// transport on which a dead peer is an error (UcxTransport; INVALID_ARGUMENT
// otherwise): a crashed rank's process is killed (SIGKILL) and never returns;
// a stalled one is stopped (SIGSTOP) and, once fenced, returns its report
// with rank_failed and fenced set.
StatusOr<DemoReport> run_demo_rank(Transport& transport, const DemoConfig& config, const DemoWorkload& workload);

}  // namespace omni
