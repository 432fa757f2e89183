// PlacementManager: what an inference engine links, one per rank. It records
// activations, dispatches tokens to replicas, re-plans in the background, moves
// expert weights while serving goes on, and switches every rank to the new
// placement at the same step.
//
//   omni::PlacementManagerOptions opt;
//   opt.replan_interval_steps = 200;
//   opt.planner_spec = "omni";
//   auto pm = omni::PlacementManager::create(transport, topology, initial_placement, store, opt);
//   // Failures: heartbeats fail dead ranks over from the detector's thread;
//   // an engine that learns of one first reports it (it spreads to everyone).
//   omni::FailureDetectorOptions fo;
//   fo.on_change = [m = pm->get()](const omni::Membership& ms) { m->on_membership(ms); };
//   auto detector = omni::FailureDetector::start(transport, fo);
//   ... (void)(*detector)->report_failure(7);   // e.g. rank 7's NIC died under a transfer
//   for (int64_t step = 0;; ++step) {
//     for (omni::LayerId l = 0; l < num_layers; ++l) {
//       (*pm)->record(l, topk_ids);                    // logical expert ids of this batch
//       (void)(*pm)->dispatch(l, topk_ids, slots);     // global slots to send the tokens to
//       ...all-to-all, experts, combine...
//     }
//     if (auto s = (*pm)->step_boundary(step); !s.ok()) handle(s);
//   }
//
// Protocol (docs/DESIGN.md, "The runtime protocol"; commit_protocol.h):
// every replan_interval_steps the ranks agree (a tiny collective) to start a
// round: each takes its recorder's window and hands it to its planner thread,
// which all-reduces the window over its own duplicate of the transport and
// appends it to its WindowHistory (capture/window_history.h: the last
// plan_samples windows and their EMA). The round's leader (the lowest live
// rank) plans with planner_spec and broadcasts the plan with its checksum
// (plan_broadcast.h); every rank verifies the checksum, keeps the old
// placement when the predicted gain is below min_gain, and derives the same
// migration steps: the rounds of the planner's migration plan under
// staging_bytes_per_rank and layers_per_commit (migration_steps.h; the
// simulator prices the same rounds). The MigrationExecutor stages one step at
// a time into the WeightStore's staging buffers while the engine keeps
// serving the old epoch. At every commit_cadence_steps-th step
// step_boundary() runs the agreement collective; when every rank has the step
// staged, every rank copies staging into its slots and publishes the new
// snapshot (epoch + 1, routing_after_round() of the plan) at that same step. A
// failed or timed-out transfer, a planning error, a checksum mismatch or a
// disagreement aborts the round: staging is dropped and the old epoch stays.
//
// Shift detection (shift_check_steps, shift_threshold; shift_check.h): every
// shift_check_steps steps while no round runs, step_boundary takes the
// recorder's window (the steps since the last take) and queues it to the
// planner thread, which all-reduces it, keeps it as the start of the next
// round's window and prices it under the placement in force. On the next step,
// then every commit_cadence_steps steps until decided, the engine threads
// all-reduce {verdict, planner busy} (two words): a shift, with every planner
// idle, starts a round at that step on every rank, planning on those steps
// alone. A regular round due first takes over, and prices its own newest
// steps (those since the last check) the same way on the planner thread: a
// shift there makes it plan on them alone too (counted in shift_rounds).
// After a plan made on a shift's steps alone, the next round comes
// kShiftFollowUpChecks (4) check periods after its commit, or at the regular
// interval if sooner, and plans on the steps since the shift.
// The engine thread's cost is the take_window every shift_check_steps steps
// and the small collective after it.
//
// Failures (docs/DESIGN.md, step 6). fail_ranks(failed) — wired to a
// FailureDetector's on_change (on_membership()) or called by an engine that
// learned of a failure first — marks the ranks failed on the manager's
// transports (every wait involving them returns at once; collectives go on
// among the survivors) and publishes, at once and from the calling thread, a
// snapshot without the failed ranks' slots: epoch + the number of newly failed
// ranks, the placement drop_ranks(placement in force, failed). Their traffic
// goes to the surviving replicas by the usual dispatch policy; an expert left
// without a replica is listed by lost_experts() and dispatched to
// kLostExpertSlot (dispatch_table.h), never to a dead slot. A round in flight
// aborts (its staging is dropped, the old weights stay); a commit decided
// before the failure still completes on every survivor and is published with
// the failed ranks dropped. Epochs count commits plus failed ranks, so the
// survivors agree on epoch and checksum whatever the order in which a commit
// and a failure reached them. The next round (at the usual interval) is a
// restore round when experts are lost: each is reloaded from options.backup
// into an empty or redundant slot on a survivor (deterministically chosen,
// the same on every rank) and committed like any batch. Later rounds re-plan
// on the survivors only (the planner sees the live ranks), which rebuilds
// redundancy through the normal migration path while serving goes on.
// An agreement collective that a failure cuts short (UNAVAILABLE, or
// FAILED_PRECONDITION while the survivors' failed sets differ) aborts the
// round on every survivor at that step instead of switching dynamic placement
// off; this relies on every participant getting the same outcome from one
// collective, which LocalTransport guarantees (tested here); failover over
// MpiTransport is not tested.
//
// Threads. record() may be called from any thread. dispatch(), step_boundary()
// and the per-step calls are made by the rank's engine thread (one thread), on
// every rank in the same order (dispatch in per-batch mode and step_boundary
// make collectives on the engine's Transport). expert_map(), snapshot(),
// epoch(), stats(), failed_ranks() and lost_experts() may be called from any
// thread and never block the engine; fail_ranks()/on_membership() from any
// thread (they publish under a mutex the engine takes only at commits). The
// manager owns one planner thread.
//
// Dumps (enable_dump, dump_dir; io/dump_writer.h): with dynamic placement on,
// rank 0 writes every aggregated window (the sum over all ranks that the round
// plans on; at a shift round, the checked steps since the previous window
// instead; id_space "expert", rank -1, file prefix "window") through a
// DumpWriter: the planner thread only queues it, the writer's own thread does
// the I/O, and a full queue drops the window (counted in stats().dumps_dropped)
// rather than wait. With dynamic placement off there are no rounds and no
// aggregation: every rank writes its own window (rank r, file prefix
// "window_r<r>") every replan_interval_steps, queued from step_boundary. Either
// way read_dump_dir_load(dump_dir) sums to everything recorded up to the last
// dumped window (the steps after it are not dumped).
//
// Ownership: the Transport and the WeightStore are borrowed and must outlive
// the manager; the manager duplicates the transport for its planner thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "omniplacement/capture/activation_recorder.h"
#include "omniplacement/capture/window_history.h"
#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/thread_annotations.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/dispatch/batch_split.h"
#include "omniplacement/dispatch/dispatch_mode.h"
#include "omniplacement/io/dump_writer.h"
#include "omniplacement/planner/migration_plan.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/core/coverage.h"
#include "omniplacement/runtime/backup_source.h"
#include "omniplacement/runtime/commit_protocol.h"
#include "omniplacement/runtime/migration_executor.h"
#include "omniplacement/runtime/routing_snapshot.h"
#include "omniplacement/runtime/shift_check.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/failure_detector.h"
#include "omniplacement/transport/transport.h"

namespace omni {

struct PlacementManagerOptions {
  // Dynamic placement on/off (omni-infer's enable_dynamic). Off: record and
  // dispatch only; step_boundary never communicates.
  bool dynamic = true;
  // A round starts every this many steps (the first after this many steps).
  int64_t replan_interval_steps = 1000;
  // The agreement collective runs at steps that are multiples of this, while a
  // round is due or running (other steps cost a compare and a return).
  int32_t commit_cadence_steps = 4;
  // A batch not staged on every rank this many steps after it began is aborted.
  int64_t commit_timeout_steps = 2000;
  // Planner spec string (planner.h), run by the round's leader.
  std::string planner_spec = "omni";
  // At most this many slots per rank and layer change in one re-plan
  // (PlanInput::max_moves_per_rank, a typed value; needs a planner that takes
  // it, such as omni, and a spec that does not set it too). -1: no limit
  // beyond the planner's own setting.
  int32_t max_moves_per_rank = -1;
  // Keep the old placement when the plan improves the window's mean max/mean
  // rank load by less than this (absolute, e.g. 0.02). >= 0; 0 (default):
  // every plan that changes the placement is taken (no check on the window).
  double min_gain = 0.0;
  // Plan on an exponential moving average of the aggregated windows
  // (capture/window_history.h): ema = ema_decay * ema + (1 - ema_decay) *
  // window. In [0, 1); 0 plans on the last window.
  double ema_decay = 0.0;
  // Plan on load + volatility_weight * |load - previous window's load| per
  // expert (0: off): hedges volatile experts with replicas.
  double volatility_weight = 0.0;
  // The planner also gets the aggregated windows of the last plan_samples
  // rounds one by one, oldest first (PlanInput::samples; windows without a
  // token are left out): omni forecasts the next interval from them. >= 1.
  int32_t plan_samples = 6;
  // At most this many layers per commit, i.e. per round of the migration plan
  // (MigrationOptions::layers_per_commit). 0: as many as staging allows.
  int32_t layers_per_commit = 0;
  // While a round runs, step_boundary waits up to this long for this rank's
  // planner thread to finish the current batch (staged, no change, or failed)
  // before it votes. 0 (default): never wait, serving is never held up, and the
  // step at which a batch commits depends on thread timing. A positive value
  // trades a bounded engine-thread stall for a commit schedule that does not
  // depend on machine load: reproducible tests, benchmarks and replays.
  std::chrono::milliseconds stage_wait{0};
  // Bytes of expert weights one rank receives in one commit, its staging
  // memory (MigrationOptions::staging_bytes_per_rank; the WeightStore checks
  // its own limit too). 0: no limit. >= 0.
  int64_t staging_bytes_per_rank = kDefaultStagingBytesPerRank;
  DispatchMode dispatch_mode = DispatchMode::kShares;
  // Shift detection (shift_check.h; the simulator's options of the same
  // names): every shift_check_steps steps while no round runs, the load of
  // those steps (all ranks summed) is priced under the placement in force with
  // dispatch_mode; when it exceeds what the last plan gave on the load it was
  // planned on by more than shift_threshold (mean over layers of max/mean,
  // absolute), every rank starts a round at the same step, planning on those
  // steps only, and the rounds after it use only the steps since then.
  // 0: off; kShiftCheckAuto (-1): a tenth of replan_interval_steps (at least
  // 1; off when the interval is 1 step). >= -1. No check before the first
  // round has planned, and none with dynamic off. shift_threshold: finite, >= 0.
  int64_t shift_check_steps = kShiftCheckAuto;
  double shift_threshold = 0.07;
  // Activation dumps (the YAML keys enable_dump and dump_dir; see the overview
  // above for who writes what). dump_dir is created if missing; it must be set
  // when enable_dump is. dump_queue_capacity: windows waiting for the writer
  // thread before further ones are dropped (>= 1).
  bool enable_dump = false;
  std::string dump_dir;
  int32_t dump_queue_capacity = 4;
  // Timeouts of the engine's collectives and of each weight transfer.
  std::chrono::milliseconds collective_timeout{30000};
  std::chrono::milliseconds transfer_timeout{30000};
  // Test hook, called on the destination rank's planner thread before each
  // transfer it receives (local copies included); an error fails the batch.
  std::function<Status(const TransferEvent&)> before_transfer;
  // Test hook, called on the source rank's sender thread before each transfer
  // it sends to another rank; an error fails the batch.
  std::function<Status(const TransferEvent&)> before_send;
  // Where lost experts are restored from after a failure (backup_source.h).
  // Borrowed; must outlive the manager. Null: lost experts stay lost (and
  // re-planning waits, since no plan can place them without weights).
  const BackupSource* backup = nullptr;
};

struct PlacementManagerStats {
  int64_t steps = 0;                 // step_boundary calls
  uint64_t epoch = 0;                // epochs committed (one per committed batch)
  uint64_t placement_checksum = 0;   // of the placement in force
  int64_t rounds_started = 0;
  int64_t rounds_completed = 0;      // every batch committed
  int64_t rounds_no_change = 0;      // below min_gain, or the same placement
  int64_t rounds_aborted = 0;
  std::string last_abort;            // reason and message of the last abort
  int64_t batches_committed = 0;
  int64_t experts_moved = 0;         // transfers in committed batches, all ranks
  int64_t bytes_moved = 0;           // their bytes, all ranks
  int64_t bytes_received = 0;        // bytes this rank staged in committed batches
  int64_t agreement_collectives = 0;
  // Shift detection: checks priced by this rank's planner thread, rounds
  // started by a detected shift or regular rounds whose newest steps showed
  // one (all ranks alike), the engine's small flag collectives, and the
  // planner thread's time in the checks (aggregation and pricing;
  // engine-thread time is in step_boundary_seconds).
  int64_t shift_checks = 0;
  int64_t shift_rounds = 0;
  int64_t shift_collectives = 0;
  double shift_check_seconds = 0;
  // Engine thread: total time in step_boundary, split into the agreement
  // collectives, commit work excluding the staging copy, and the staging copy.
  double step_boundary_seconds = 0;
  double agreement_seconds = 0;
  double commit_seconds = 0;
  double staging_copy_seconds = 0;
  // Planner thread: total time in the planner (only the round's leader, the
  // lowest live rank, plans: 0 on the other ranks), and in transfers.
  double planning_seconds = 0;
  int64_t plans_made = 0;            // rounds in which this rank ran the planner (as the leader)
  double transfer_seconds = 0;
  // Predicted mean max/mean of the last planned round: before and after.
  double last_predicted_before = 0;
  double last_predicted_after = 0;
  // Dumps (enable_dump): windows queued to the writer, written, dropped because
  // its queue was full, and failed to write (all on this rank).
  int64_t dumps_queued = 0;
  int64_t dumps_written = 0;
  int64_t dumps_dropped = 0;
  int64_t dumps_failed = 0;
  // Failures (fail_ranks). Counts are of this rank's view; survivors agree.
  int64_t failed_ranks = 0;           // ranks failed so far
  int64_t failovers = 0;              // fail_ranks calls that failed new ranks
  int64_t experts_lost = 0;           // (layer, expert) pairs without replica after the last failover
  int64_t experts_restored = 0;       // reloaded from the backup in committed restore rounds
  int64_t restore_rounds = 0;         // restore rounds fully committed
  double restore_load_seconds = 0;    // planner thread: reading the backup into staging (this rank)
  int64_t experts_loaded = 0;         // experts this rank read from the backup
  double last_failover_seconds = 0;   // fail_ranks() entry to the new map published, this rank
  // Phases of the last failure on this rank, as std::chrono::steady_clock
  // times in ns since its epoch (0: not reached yet).
  int64_t failure_noticed_ns = 0;     // fail_ranks() called with a new failed rank
  int64_t failover_published_ns = 0;  // the map without the failed ranks published
  int64_t restored_ns = 0;            // no lost expert left (restore committed, or none was lost)
  int64_t redundancy_rebuilt_ns = 0;  // after that, the first re-plan round on the survivors ended
};

class PlacementManager {
 public:
  // `initial` is the placement whose weights `store` holds on this rank (same
  // on every rank); the store has initial.slots_per_rank(l) slots per layer.
  // Collective: every rank calls create (it duplicates the transport).
  static StatusOr<std::unique_ptr<PlacementManager>> create(Transport& transport, const Topology& topology,
                                                            const Placement& initial, WeightStore& store,
                                                            PlacementManagerOptions options);
  // Stops the planner thread and writes what the dump queue holds. A round
  // or shift check already handed to the planner still takes part in its
  // collectives (the other ranks' planners may be in them) and then aborts
  // on every rank: destroying the managers of every rank after the same
  // step returns within a few collectives, not after collective_timeout.
  // Engine thread, after its last step_boundary.
  ~PlacementManager();
  PlacementManager(const PlacementManager&) = delete;
  PlacementManager& operator=(const PlacementManager&) = delete;

  // Counts topk_ids (logical expert ids, -1 padding) of layer l. Any thread, lock-free.
  void record(LayerId l, std::span<const ExpertId> topk_ids) { recorder_->record(l, topk_ids); }
  // out[i] = global slot serving topk_ids[i] under the epoch in force (-1 for
  // padding or invalid ids, kLostExpertSlot for an expert without replica).
  // Engine thread.
  Status dispatch(LayerId l, std::span<const ExpertId> topk_ids, std::span<GlobalSlot> out);
  // The routing view of layer l in force. Any thread.
  std::shared_ptr<const LayerRouting> expert_map(LayerId l) const;
  std::shared_ptr<const RoutingSnapshot> snapshot() const { return cell_.load(); }
  uint64_t epoch() const { return snapshot()->epoch(); }
  // Between forward passes, with the step number (increasing). Engine thread.
  // An error means the agreement collective failed: the placement in force
  // stays, and dynamic placement is switched off on this rank (its peers see
  // the same failure or a timeout).
  Status step_boundary(int64_t step) OMNI_EXCLUDES(mu_, publish_mu_);
  // In per-batch mode: the [num_ranks, num_experts] counts gathered by the last
  // dispatch() of layer l (empty before). Engine thread.
  std::span<const int64_t> last_batch_counts(LayerId l) const;
  PlacementManagerStats stats() const OMNI_EXCLUDES(mu_);
  RankId rank() const { return rank_; }
  // Waits until every dump queued so far is written (OK when dumps are off);
  // returns the first write error since the previous call. Any thread.
  Status flush_dumps();

  // Declares ranks failed (see the overview): marks them on the manager's
  // transports and publishes the map without their slots before returning.
  // Ranks already failed are ignored; this rank itself or a rank out of
  // [0, num_ranks) is INVALID_ARGUMENT (nothing changes). Any thread; every
  // survivor must be told the same ranks (a FailureDetector does that).
  Status fail_ranks(std::span<const RankId> failed) OMNI_EXCLUDES(mu_, publish_mu_);
  // fail_ranks(m.failed), for FailureDetectorOptions::on_change. An error
  // (a bad rank from the detector) is kept in stats().last_abort. Any thread.
  void on_membership(const Membership& m);
  // Ranks this manager has failed, ascending. Any thread.
  std::vector<RankId> failed_ranks() const OMNI_EXCLUDES(publish_mu_);
  // (layer, expert) pairs with no replica in the map in force. Any thread.
  std::vector<LostExpert> lost_experts() const;

 private:
  struct Job;
  struct CheckJob;
  struct ShiftState;
  struct Prepared;
  PlacementManager() = default;
  void planner_main() OMNI_EXCLUDES(mu_, publish_mu_);
  struct RoundKind;
  struct RoundPlan;
  // Planner thread, one round: aggregate the window, plan (plan_round: the
  // leader's plan or a restore, and the migration steps; nullopt when nothing
  // moves), stage the steps one at a time and hand each to the engine.
  Status run_round(const Job& job) OMNI_EXCLUDES(mu_, publish_mu_);
  // The round's window summed over the ranks (the checks' chunks since the
  // last round first); newest, when not null, gets the steps the round took
  // from the recorder alone (those since the last check).
  StatusOr<LoadMatrix> aggregate_window(const Job& job, LoadMatrix* newest) OMNI_EXCLUDES(mu_);
  // Planner thread: the shift test of a chunk (aggregated) under `in_force`
  // against the promise of the last plan; false before the first plan.
  StatusOr<bool> is_shifted(const Placement& in_force, const LoadMatrix& chunk);
  // Planner thread: sums `local` over the ranks (planner transport), with the
  // invalid-id count of meta riding along; meta gets the sum.
  StatusOr<LoadMatrix> aggregate(const LoadMatrix& local, DumpMetadata& meta, const std::string& what);
  // Planner thread, one shift check: aggregate the chunk, keep it for the next
  // round's window, price it and publish the verdict.
  void run_check(const CheckJob& check) OMNI_EXCLUDES(mu_);
  // Engine thread, shift detection while no round runs: hand over a check
  // every shift_check_steps steps, then agree on its verdict (tiny collective).
  Status shift_step(int64_t step) OMNI_EXCLUDES(mu_, publish_mu_);
  // Collective: every rank's (leader, restore, placement in force, failure
  // seen) compared; a difference fails the round on every rank alike, and so
  // does a rank that is shutting down (its destructor has run).
  // missing_chunk: a shift round whose check this rank could not aggregate.
  Status agree_on_round(const Job& job, const RoundKind& kind, bool missing_chunk);
  StatusOr<Placement> leader_plan(const Job& job, RankId leader, const LoadMatrix& load,
                                  const std::vector<LoadMatrix>& samples) OMNI_EXCLUDES(mu_);
  StatusOr<std::optional<RoundPlan>> plan_round(const Job& job, const RoundKind& kind, const LoadMatrix& load,
                                                const std::vector<LoadMatrix>& samples) OMNI_EXCLUDES(mu_);
  Status stage_steps(const Job& job, const RoundPlan& plan) OMNI_EXCLUDES(mu_);
  void set_vote(int64_t round, int64_t batch, StagePhase phase, int64_t last, int64_t plan_checksum)
      OMNI_EXCLUDES(mu_);
  // Planner waits for the engine's verdict on (round, batch): true = committed.
  bool wait_verdict(int64_t round, int64_t batch) OMNI_EXCLUDES(mu_);
  void apply_decision(const DecisionResult& d, int64_t step) OMNI_EXCLUDES(mu_, publish_mu_);
  // Engine thread, the decisions of apply_decision(): hand the window to the
  // planner; publish the staged step (epoch + 1); end the round (finished
  // unchanged, or aborted).
  // shift_check >= 0: a round started by that shift check (plans on its chunk).
  void start_round(int64_t step, int64_t shift_check = -1) OMNI_EXCLUDES(mu_, publish_mu_);
  void commit_step(const DecisionResult& d, int64_t step) OMNI_EXCLUDES(mu_, publish_mu_);
  void end_round(const DecisionResult& d, int64_t step) OMNI_EXCLUDES(mu_, publish_mu_);
  // Queues a window to the dump writer (never blocks); counts drops.
  void submit_dump(LoadMatrix load, const DumpMetadata& meta) OMNI_EXCLUDES(mu_);
  // Engine thread: takes the snapshot published by another thread (failover).
  void refresh_hot() {
    hot_gen_ = published_gen_.load(std::memory_order_acquire);
    hot_owner_ = cell_.load();
    hot_ = hot_owner_.get();
  }
  // PlanInput::serving for this manager (dispatch, interval, expert bytes).
  ServingModel serving_model() const;

  Transport* transport_ = nullptr;
  std::unique_ptr<Transport> planner_transport_;
  std::unique_ptr<MigrationExecutor> executor_;  // stages on the planner thread over planner_transport_
  Topology topology_;
  WeightStore* store_ = nullptr;
  PlacementManagerOptions options_;
  RankId rank_ = 0;
  std::unique_ptr<Planner> planner_;
  std::unique_ptr<ActivationRecorder> recorder_;
  SnapshotCell cell_{nullptr};
  const RoutingSnapshot* hot_ = nullptr;  // engine thread's copy of cell_
  std::shared_ptr<const RoutingSnapshot> hot_owner_;  // keeps hot_ alive when another thread publishes
  uint64_t hot_gen_ = 0;
  // Publication: the engine commits and fail_ranks() publish under publish_mu_
  // and bump published_gen_; the engine's dispatch compares it with hot_gen_.
  std::atomic<uint64_t> published_gen_{0};
  mutable Mutex publish_mu_;
  std::vector<RankId> failed_ OMNI_GUARDED_BY(publish_mu_);  // ascending
  std::atomic<uint64_t> failure_gen_{0};    // bumps on every failover (the planner aborts)
  std::vector<std::vector<uint32_t>> counters_;   // [layer][expert] dispatch positions
  std::vector<std::vector<int64_t>> batch_counts_;  // per-batch mode: last gathered counts per layer
  std::vector<BatchSplit> batch_splits_;

  // Engine-thread round state (identical on every rank).
  RoundState round_;
  int64_t next_round_step_ = 0;
  int64_t next_round_id_ = 0;
  bool broken_ = false;
  // Engine-thread shift detection state (identical on every rank).
  int64_t shift_steps_ = 0;         // resolved shift_check_steps; 0: off
  int64_t last_take_step_ = 0;      // step of the last take_window (round start or check)
  int64_t pending_check_ = -1;      // check handed over, verdict not agreed yet
  int64_t pending_check_step_ = 0;
  int64_t next_check_id_ = 0;
  std::atomic<int64_t> steps_{0};  // step_boundary calls (written by the engine thread only)

  // Shared between the engine and planner threads (and fail_ranks' caller).
  mutable Mutex mu_;
  std::condition_variable cv_;  // waits on mu_
  Vote vote_ OMNI_GUARDED_BY(mu_);
  std::unique_ptr<Job> job_ OMNI_GUARDED_BY(mu_);
  std::unique_ptr<Prepared> prepared_ OMNI_GUARDED_BY(mu_);
  std::deque<std::unique_ptr<CheckJob>> checks_ OMNI_GUARDED_BY(mu_);  // before job_ (queued earlier)
  int64_t verdict_check_ OMNI_GUARDED_BY(mu_) = -1;   // the last check priced
  int64_t check_verdict_ OMNI_GUARDED_BY(mu_) = 0;    // its verdict (kNoShift / kShift in the .cc)
  int64_t verdict_round_ OMNI_GUARDED_BY(mu_) = -1;
  int64_t verdict_batch_ OMNI_GUARDED_BY(mu_) = -1;
  bool verdict_commit_ OMNI_GUARDED_BY(mu_) = false;
  bool stop_ OMNI_GUARDED_BY(mu_) = false;
  PlacementManagerStats stats_ OMNI_GUARDED_BY(mu_);
  std::string planner_error_ OMNI_GUARDED_BY(mu_);  // why this rank's planner failed the round in progress
  bool rebuild_pending_ OMNI_GUARDED_BY(mu_) = false;  // a failure awaits its rebuild round
  WindowHistory history_;  // planner thread only: the aggregated windows and their EMA
  std::unique_ptr<ShiftState> shift_;  // planner thread only: checks' chunks and the plan's promise
  uint64_t next_window_index_ = 0;     // planner thread only: index of the next aggregated window dumped
  std::unique_ptr<DumpWriter> dump_writer_;  // null unless enable_dump; outlives the planner thread
  std::thread planner_thread_;
};

}  // namespace omni
