// LocalCluster: N ranks of an expert-parallel group as threads of this
// process, each with its own LocalTransport, HostWeightStore, PlacementManager
// and (optionally) FailureDetector; the one rank orchestration shared by the
// demo (examples/demo), the Python module (omniplacement.LocalCluster), the
// threaded fault-injection suite and the runtime benchmarks.
//
//   omni::LocalClusterOptions opt;
//   opt.manager.planner_spec = "eplb";
//   opt.manager.replan_interval_steps = 10;
//   auto cluster = omni::LocalCluster::create(initial, topology, /*slot_bytes=*/{4096, 4096}, opt);
//   for (omni::RankId r = 0; r < 4; ++r) ...(*cluster)->write_slot(r, l, s, 0, weights_of(l, e));
//   // Either drive every rank from this thread, one call for all ranks:
//   for (int64_t step = 0; step < 100; ++step) {
//     for (LayerId l = 0; l < L; ++l)
//       for (RankId r = 0; r < 4; ++r) {
//         (void)(*cluster)->record(r, l, ids[r]);
//         (void)(*cluster)->dispatch(r, l, ids[r], slots[r]);   // shares mode (per-batch: dispatch_all)
//       }
//     OMNI_RETURN_IF_ERROR((*cluster)->step_boundary(step));   // every rank's, in parallel
//   }
//   // or run a whole engine loop per rank on the ranks' own threads:
//   OMNI_RETURN_IF_ERROR((*cluster)->run([&](omni::RankId r) -> omni::Status {
//     omni::PlacementManager& pm = (*cluster)->manager(r);
//     for (int64_t step = 0; step < 100; ++step) {
//       if ((*cluster)->checkpoint(r)) return omni::ok_status();   // killed: this rank stops here
//       ...pm.record / pm.dispatch / all-to-all over (*cluster)->transport(r)...
//       OMNI_RETURN_IF_ERROR(pm.step_boundary(step));
//     }
//     return omni::ok_status();
//   }));
//
// Ownership. The cluster owns the transports (a LocalGroup), the weight
// stores, the managers and the detectors, and one engine thread per rank.
// Borrowed and required to outlive the cluster: options.manager.backup and
// options.backups (BackupSource), and whatever the hooks in the options
// capture. Every rank's manager is created on its engine thread (creation is
// collective) with the same initial placement, topology and options (except
// the backup, which may differ per rank); stores start zero-filled: load the
// weights with write_slot() (or store(r)) before the first step.
//
// Threads. Every rank has one long-lived engine thread. run(fn) runs fn(r) on
// every live rank's engine thread and waits for all of them; step_boundary()
// and dispatch_all() do the same with the manager call (their collectives need
// every rank at once). dispatch(), read_slot() and write_slot() run on the
// calling thread. These engine-side calls (run, step_boundary, dispatch_all,
// dispatch, read_slot, write_slot) may come from any thread and are serialised
// (one at a time, cluster-wide), so each manager sees one engine at a time.
// record(), stats(), snapshot(), flush_dumps() and the failure-injection calls
// may come from any thread at any time. Inside fn, rank r's code uses
// manager(r), store(r) and transport(r) directly (it is rank r's engine
// thread) and must not call the cluster's engine-side calls (they would wait
// for the run that holds them). close() (or the destructor) may come from any
// thread: it waits for calls in progress, then every later call returns
// FAILED_PRECONDITION "LocalCluster is closed". manager(r), store(r) and
// transport(r) are valid until close().
//
// Failure injection. kill(r) crashes rank r: its detector goes silent (no
// goodbye heartbeat, so the survivors' detectors declare it failed after their
// timeout), it is left out of later run(), step_boundary() and dispatch_all()
// calls, and its engine code must stop: a rank's fn calls checkpoint(r) at the
// points where a crash may happen and returns when it says so.
// request_kill(r) asks for the crash from another thread (e.g. a transfer hook
// on r's planner thread); it happens at r's next checkpoint(). The killed
// rank's manager stays alive until close(), where it is first cut off from
// every other rank (fail_ranks of all others, so that its planner's waits end)
// once no survivor uses the group any more. request_stall(r, d) makes r's
// engine sleep d at its next checkpoint: an engine stall, not a process stall
// (its detector keeps sending heartbeats); stall(r, d) is a process stall
// (the detector goes silent too). Who tells the survivors about a
// kill: their FailureDetectors (options.heartbeats), or the driver itself
// (manager(s).fail_ranks, e.g. from options.on_kill).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <vector>

#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/runtime/backup_source.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/routing_snapshot.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/failure_detector.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {

namespace runtime_internal {
class RankThreads;
}  // namespace runtime_internal

struct LocalClusterOptions {
  // Every rank's PlacementManager options (staging_limit_bytes also bounds
  // each rank's HostWeightStore staging).
  PlacementManagerOptions manager;
  // One backup source per rank (size num_ranks; entry r replaces
  // manager.backup on rank r), or empty: manager.backup on every rank.
  std::vector<const BackupSource*> backups;
  // Heartbeats: each rank runs a FailureDetector over its transport with
  // `detector`'s period and timeout; its on_change fails the ranks over in the
  // rank's manager (on_membership), then calls detector.on_change if set. The
  // detectors are started, and a barrier passed, before create() returns.
  bool heartbeats = false;
  FailureDetectorOptions detector;
  // Called on the killing thread after each kill (kill() or a checkpoint that
  // performed a requested kill), with the killed rank.
  std::function<void(RankId)> on_kill;
};

class LocalCluster {
 public:
  // initial: the placement every rank starts from (its rank count is the
  // cluster's, 1..kMaxRanks); topology: initial.num_ranks() ranks;
  // slot_bytes[l] (> 0): bytes of one slot of layer l, one entry per layer of
  // `initial`. Errors: a bad argument (INVALID_ARGUMENT, naming it), or the
  // first rank whose manager or detector could not be created (with "rank r").
  static StatusOr<std::unique_ptr<LocalCluster>> create(const Placement& initial, const Topology& topology,
                                                        std::vector<int64_t> slot_bytes, LocalClusterOptions options);
  ~LocalCluster();  // close()
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // Stops every detector (live ranks say goodbye), cuts killed ranks off,
  // destroys the managers (each on its engine thread, all at once) and joins
  // the threads. Idempotent; any thread.
  void close();
  bool closed() const { return closed_.load(); }

  int32_t num_ranks() const { return initial_.num_ranks(); }
  const Placement& initial() const { return initial_; }
  const Topology& topology() const { return topology_; }
  const LocalClusterOptions& options() const { return options_; }
  // Bytes of one slot of layer l (0 <= l < initial().num_layers()).
  int64_t slot_bytes(LayerId l) const;

  // Rank r's parts (0 <= r < num_ranks(); aborts otherwise). For rank r's code
  // inside run(), or for a driver thread that acts as r's engine thread while
  // no engine-side call of the cluster runs. Valid until close().
  Transport& transport(RankId r);
  PlacementManager& manager(RankId r);
  HostWeightStore& store(RankId r);

  // Runs fn(r) on the engine thread of every rank not killed, waits for all,
  // and returns OK or the lowest failing rank's status with "rank r" context
  // (an exception escaping fn is that rank's INTERNAL error). Engine-side.
  Status run(const std::function<Status(RankId)>& fn);

  // --- One call for one or all ranks, as an engine driving them would make.
  // Bad rank or layer ids are INVALID_ARGUMENT.
  // manager(r).record(l, topk_ids). Any thread.
  Status record(RankId r, LayerId l, std::span<const ExpertId> topk_ids);
  // manager(r).dispatch on the calling thread (out.size() == topk_ids.size()).
  // Shares mode only: per-batch dispatch is a collective, use dispatch_all.
  // Engine-side.
  Status dispatch(RankId r, LayerId l, std::span<const ExpertId> topk_ids, std::span<GlobalSlot> out);
  // Every live rank's dispatch of layer l at once, on the engine threads:
  // topk_ids[r] and out[r] (equal sizes) are rank r's, one entry per rank.
  // Engine-side.
  Status dispatch_all(LayerId l, std::span<const std::span<const ExpertId>> topk_ids,
                      std::span<const std::span<GlobalSlot>> out);
  // Every live rank's step_boundary(step) at once, on the engine threads.
  // Engine-side.
  Status step_boundary(int64_t step);
  // The rank's stats and routing snapshot. Any thread.
  StatusOr<PlacementManagerStats> stats(RankId r) const;
  StatusOr<std::shared_ptr<const RoutingSnapshot>> snapshot(RankId r) const;
  // flush_dumps() of every rank; the first error. Any thread.
  Status flush_dumps();
  // Bytes [offset, offset + out.size()) of slot (l, s) of rank r, never half a
  // commit's copy. Engine-side.
  Status read_slot(RankId r, LayerId l, SlotId s, int64_t offset, std::span<std::byte> out) const;
  // Writes data into slot (l, s) of rank r at offset: the initial load of the
  // weights (not while a round may commit into that slot). Engine-side.
  Status write_slot(RankId r, LayerId l, SlotId s, int64_t offset, std::span<const std::byte> data);

  // --- Failure injection (see the overview). Any thread unless stated.
  // Crashes rank r now (idempotent; bad rank ids abort: a test bug).
  void kill(RankId r);
  // Rank r crashes at its next checkpoint().
  void request_kill(RankId r);
  // Rank r's engine sleeps `duration` at its next checkpoint() (once).
  void request_stall(RankId r, std::chrono::milliseconds duration);
  // A process stall of rank r, called on r's engine thread: its detector goes
  // silent (FailureDetector::silence_for) and the thread sleeps `duration`.
  // Longer than the heartbeat timeout, the survivors declare r failed and
  // fence it: when r comes back, every call on its transport returns
  // FAILED_PRECONDITION (transport.h, Fencing).
  void stall(RankId r, std::chrono::milliseconds duration);
  // Rank r's engine thread, at a point where a crash or stall may happen:
  // performs a requested stall and kill; true when r is killed (its code must
  // return now).
  bool checkpoint(RankId r);
  bool killed(RankId r) const;
  // Waits until rank r is killed; false on timeout.
  bool wait_killed(RankId r, std::chrono::milliseconds timeout) const;
  std::vector<RankId> killed_ranks() const;
  // std::chrono::steady_clock time (ns since its epoch) of the first kill, 0
  // before any.
  int64_t first_kill_ns() const;
  // The same for the first membership change rank r's detector reported (0:
  // none, or no heartbeats).
  int64_t first_detection_ns(RankId r) const;

 private:
  LocalCluster(const Placement& initial, const Topology& topology, std::vector<int64_t> slot_bytes,
               LocalClusterOptions options);
  Status start(LocalGroup group);
  Status check_rank(const char* what, RankId r) const;
  Status check_layer(const char* what, LayerId l) const;
  // Runs fn(r) on every live rank's engine thread (the caller holds engine_mu_).
  Status run_locked(const std::function<Status(RankId)>& fn);
  void shut_down();

  const Placement initial_;
  const Topology topology_;
  const std::vector<int64_t> slot_bytes_;
  const LocalClusterOptions options_;
  LocalGroup group_;
  std::vector<std::unique_ptr<HostWeightStore>> stores_;
  std::vector<std::unique_ptr<PlacementManager>> managers_;
  // Written on the engine threads at start and close; kill() stops one under
  // detector_mu_ unless closing_.
  std::vector<std::unique_ptr<FailureDetector>> detectors_;
  std::unique_ptr<runtime_internal::RankThreads> threads_;
  std::unique_ptr<std::atomic<int64_t>[]> detected_ns_;  // [num_ranks], first detection

  // Lifetime: shared by every call that uses the parts, exclusive in close().
  mutable std::shared_mutex life_;
  std::atomic<bool> closed_{false};
  // Serialises the engine-side calls.
  mutable std::mutex engine_mu_;

  // Detector lifecycle: kill() stops one, close() destroys them all.
  std::mutex detector_mu_;
  bool closing_ = false;  // guarded by detector_mu_
  // Failure injection state.
  mutable std::mutex kill_mu_;
  mutable std::condition_variable kill_cv_;
  std::vector<char> killed_;                           // guarded by kill_mu_
  std::vector<char> kill_requested_;                   // guarded by kill_mu_
  std::vector<std::chrono::milliseconds> stall_;       // guarded by kill_mu_
  int64_t first_kill_ns_ = 0;                          // guarded by kill_mu_
};

}  // namespace omni
