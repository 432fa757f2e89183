#include "omniplacement/runtime/placement_manager.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "omniplacement/core/metrics.h"
#include "omniplacement/core/placement_ops.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/planner/planner_spec.h"
#include "omniplacement/runtime/failover.h"
#include "omniplacement/runtime/migration_steps.h"
#include "omniplacement/runtime/plan_broadcast.h"

#include "placement_manager_internal.h"

namespace omni {

using namespace manager_internal;

StatusOr<std::unique_ptr<PlacementManager>> PlacementManager::create(Transport& transport, const Topology& topology,
                                                                      const Placement& initial, WeightStore& store,
                                                                      PlacementManagerOptions options) {
  const int32_t R = initial.num_ranks();
  if (transport.size() != R || topology.num_ranks() != R)
    return invalid_argument_error(str_cat("PlacementManager: placement has ", R, " ranks, transport ",
                                          transport.size(), ", topology ", topology.num_ranks()));
  if (store.num_layers() != initial.num_layers())
    return invalid_argument_error(str_cat("PlacementManager: weight store has ", store.num_layers(),
                                          " layers, placement ", initial.num_layers()));
  for (LayerId l = 0; l < initial.num_layers(); ++l)
    if (store.slots_per_rank(l) != initial.slots_per_rank(l))
      return invalid_argument_error(str_cat("PlacementManager: layer ", l, ": weight store has ",
                                            store.slots_per_rank(l), " slots per rank, placement ",
                                            initial.slots_per_rank(l)));
  if (options.replan_interval_steps < 1 || options.commit_cadence_steps < 1 || options.commit_timeout_steps < 1 ||
      options.layers_per_commit < 0 || options.staging_bytes_per_rank < 0 || !(options.min_gain >= 0) ||
      !(options.ema_decay >= 0 && options.ema_decay < 1))
    return invalid_argument_error(str_cat(
        "PlacementManager: need replan_interval_steps >= 1 (", options.replan_interval_steps,
        "), commit_cadence_steps >= 1 (", options.commit_cadence_steps, "), commit_timeout_steps >= 1 (",
        options.commit_timeout_steps, "), layers_per_commit >= 0 (", options.layers_per_commit,
        "), staging_bytes_per_rank >= 0 (", options.staging_bytes_per_rank, "), min_gain >= 0 (", options.min_gain,
        "), 0 <= ema_decay < 1 (", options.ema_decay, ")"));
  if (options.max_moves_per_rank < -1)
    return invalid_argument_error(str_cat("PlacementManager: max_moves_per_rank ", options.max_moves_per_rank,
                                          " must be -1 (no limit) or >= 0"));
  if (options.plan_samples < 1)
    return invalid_argument_error(str_cat("PlacementManager: plan_samples ", options.plan_samples, " must be >= 1"));
  if (!(options.volatility_weight >= 0) || !std::isfinite(options.volatility_weight))
    return invalid_argument_error(
        str_cat("PlacementManager: volatility_weight ", options.volatility_weight, " must be finite and >= 0"));
  if (options.shift_check_steps < kShiftCheckAuto || !(options.shift_threshold >= 0) ||
      !std::isfinite(options.shift_threshold))
    return invalid_argument_error(str_cat("PlacementManager: shift_check_steps ", options.shift_check_steps,
                                          " must be >= 0 (0: off) or -1 (auto), shift_threshold ",
                                          options.shift_threshold, " finite and >= 0"));
  if (options.enable_dump && (options.dump_dir.empty() || options.dump_queue_capacity < 1))
    return invalid_argument_error(str_cat("PlacementManager: enable_dump needs a dump_dir (given '", options.dump_dir,
                                          "') and dump_queue_capacity >= 1 (", options.dump_queue_capacity, ")"));
  std::unique_ptr<PlacementManager> pm(new PlacementManager());
  pm->transport_ = &transport;
  pm->topology_ = topology;
  pm->store_ = &store;
  pm->rank_ = transport.rank();
  OMNI_ASSIGN_OR_RETURN(pm->planner_, make_planner(options.planner_spec));
  if (options.max_moves_per_rank >= 0) {
    // A typed limit (PlanInput::max_moves_per_rank), not a spec parameter: the
    // planner must take it, and the spec must not set it too.
    if (!pm->planner_->takes_incremental_limits())
      return invalid_argument_error(str_cat("PlacementManager: max_moves_per_rank ", options.max_moves_per_rank,
                                            " needs an incremental planner such as omni; '", options.planner_spec,
                                            "' plans from scratch"));
    OMNI_ASSIGN_OR_RETURN(PlannerSpec spec, PlannerSpec::parse(options.planner_spec));
    for (const SpecParam& p : spec.params)
      if (p.key == "max_moves_per_rank")
        return invalid_argument_error(str_cat("PlacementManager: max_moves_per_rank ", options.max_moves_per_rank,
                                              " and the planner spec '", options.planner_spec,
                                              "' both set it; set one"));
  }
  RecorderConfig rc;
  rc.num_layers = initial.num_layers();
  rc.num_ids = initial.num_experts();
  rc.history = 1;  // the manager keeps the aggregated windows (history_), not this rank's
  OMNI_ASSIGN_OR_RETURN(pm->recorder_, ActivationRecorder::create(rc));
  WindowHistoryOptions ho;
  ho.max_windows = std::max(options.plan_samples, options.volatility_weight > 0 ? 2 : 1);
  ho.ema_decay = options.ema_decay;
  OMNI_ASSIGN_OR_RETURN(pm->history_, WindowHistory::create(ho));
  OMNI_ASSIGN_OR_RETURN(pm->planner_transport_, transport.duplicate(options.collective_timeout));
  MigrationExecutorOptions eo;
  eo.transfer_timeout = options.transfer_timeout;
  eo.before_transfer = options.before_transfer;
  eo.before_send = options.before_send;
  eo.backup = options.backup;
  pm->executor_ = std::make_unique<MigrationExecutor>(*pm->planner_transport_, store, std::move(eo));
  OMNI_ASSIGN_OR_RETURN(auto snap, RoutingSnapshot::build(std::make_shared<const Placement>(initial), topology,
                                                          pm->rank_, 0));
  pm->hot_ = snap.get();
  pm->hot_owner_ = snap;
  pm->cell_.store(std::move(snap));
  pm->counters_.assign(static_cast<size_t>(initial.num_layers()),
                       std::vector<uint32_t>(static_cast<size_t>(initial.num_experts()), 0));
  pm->batch_counts_.resize(static_cast<size_t>(initial.num_layers()));
  pm->batch_splits_.resize(static_cast<size_t>(initial.num_layers()));
  pm->next_round_step_ = options.replan_interval_steps;
  pm->shift_steps_ =
      options.dynamic ? resolved_shift_check_steps(options.shift_check_steps, options.replan_interval_steps) : 0;
  pm->shift_ = std::make_unique<ShiftState>();
  pm->round_.timeout_steps = options.commit_timeout_steps;
  {
    MutexLock lock(pm->mu_);  // no other thread yet; the lock only satisfies the annotations
    pm->stats_.placement_checksum = initial.checksum();
  }
  if (options.enable_dump) {
    DumpWriterOptions dw;
    dw.dir = options.dump_dir;
    dw.queue_capacity = options.dump_queue_capacity;
    // Aggregated windows come from rank 0 alone; rank-local windows (dynamic
    // off) from every rank, so their names must not collide in a shared folder.
    dw.file_prefix = options.dynamic ? "window" : str_cat("window_r", pm->rank_);
    auto writer = DumpWriter::start(std::move(dw));
    if (!writer.ok())
      return writer.status().with_context(str_cat("PlacementManager: rank ", pm->rank_, ": dump_dir '",
                                                   options.dump_dir, "'"));
    if (options.dynamic && pm->rank_ != 0) (*writer)->close().ignore();  // created the folder; writes nothing
    else pm->dump_writer_ = std::move(*writer);
  }
  pm->options_ = std::move(options);
  pm->planner_thread_ = std::thread([p = pm.get()] { p->planner_main(); });
  return pm;
}

PlacementManager::~PlacementManager() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (planner_thread_.joinable()) planner_thread_.join();
  if (dump_writer_) dump_writer_->close().ignore();  // writes what is queued
}

void PlacementManager::submit_dump(LoadMatrix load, const DumpMetadata& meta) {
  if (!dump_writer_) return;
  const bool queued = dump_writer_->submit(std::move(load), meta);
  MutexLock lock(mu_);
  if (queued) ++stats_.dumps_queued;
}

Status PlacementManager::flush_dumps() { return dump_writer_ ? dump_writer_->flush() : ok_status(); }

std::shared_ptr<const LayerRouting> PlacementManager::expert_map(LayerId l) const {
  auto s = cell_.load();
  if (l < 0 || l >= s->num_layers()) return nullptr;
  return s->layer_ptr(l);
}

std::span<const int64_t> PlacementManager::last_batch_counts(LayerId l) const {
  if (l < 0 || l >= static_cast<LayerId>(batch_counts_.size())) return {};
  return batch_counts_[static_cast<size_t>(l)];
}

Status PlacementManager::dispatch(LayerId l, std::span<const ExpertId> topk_ids, std::span<GlobalSlot> out) {
  if (published_gen_.load(std::memory_order_acquire) != hot_gen_) [[unlikely]]
    refresh_hot();
  if (l < 0 || l >= hot_->num_layers())
    return out_of_range_error(str_cat("dispatch: rank ", rank_, ": layer ", l, " out of [0, ", hot_->num_layers(), ")"));
  if (out.size() != topk_ids.size())
    return invalid_argument_error(str_cat("dispatch: rank ", rank_, ", layer ", l, ": out has ", out.size(),
                                          " elements, topk_ids ", topk_ids.size()));
  if (options_.dispatch_mode == DispatchMode::kShares) {
    hot_->layer(l).dispatch.dispatch(topk_ids, out, counters_[static_cast<size_t>(l)]);
    return ok_status();
  }
  const Placement& p = hot_->placement();
  const int32_t E = p.num_experts();
  std::vector<int64_t> mine(static_cast<size_t>(E), 0);
  for (ExpertId e : topk_ids)
    if (e >= 0 && e < E) ++mine[static_cast<size_t>(e)];
  auto& all = batch_counts_[static_cast<size_t>(l)];
  all.assign(static_cast<size_t>(E) * static_cast<size_t>(p.num_ranks()), 0);
  OMNI_RETURN_IF_ERROR(transport_
                           ->all_gather(std::as_bytes(std::span<const int64_t>(mine)),
                                        std::as_writable_bytes(std::span<int64_t>(all)), options_.collective_timeout)
                           .with_context(str_cat("dispatch: rank ", rank_, ", layer ", l, ": per-batch all-gather")));
  OMNI_ASSIGN_OR_RETURN(batch_splits_[static_cast<size_t>(l)], split_batch(p, l, topology_, rank_, all));
  BatchDispatch d(batch_splits_[static_cast<size_t>(l)]);
  d.dispatch(topk_ids, out);
  // The split gives -1 to an expert without replica: mark it lost instead.
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i] == -1 && topk_ids[i] >= 0 && topk_ids[i] < E && p.replica_count(l, topk_ids[i]) == 0)
      out[i] = kLostExpertSlot;
  return ok_status();
}

Status PlacementManager::fail_ranks(std::span<const RankId> failed) {
  const auto t0 = Clock::now();
  MutexLock pub(publish_mu_);
  auto news = newly_failed(failed, failed_, rank_, topology_.num_ranks());
  if (!news.ok()) return news.status().with_context("fail_ranks");
  const std::vector<RankId> fresh = *std::move(news);
  if (fresh.empty()) return ok_status();
  // The planner's transport first: a collective that succeeds on the engine's
  // transport (with the new failed set) then implies the planner's agrees too.
  for (RankId r : fresh) OMNI_RETURN_IF_ERROR(planner_transport_->mark_failed(r));
  for (RankId r : fresh) OMNI_RETURN_IF_ERROR(transport_->mark_failed(r));
  const auto cur = cell_.load();
  OMNI_ASSIGN_OR_RETURN(Placement dropped, drop_ranks(cur->placement(), fresh));
  const int64_t lost = count_lost_experts(dropped);
  OMNI_ASSIGN_OR_RETURN(auto snap, RoutingSnapshot::without_ranks(*cur, std::make_shared<const Placement>(std::move(dropped)),
                                                                  fresh, topology_, rank_, cur->epoch() + fresh.size()));
  cell_.store(std::move(snap));
  published_gen_.fetch_add(1, std::memory_order_release);
  // Updated after the publication: a thread that sees a rank in failed_ranks()
  // knows that the engine's next dispatch uses a map without it.
  failed_.insert(failed_.end(), fresh.begin(), fresh.end());
  std::sort(failed_.begin(), failed_.end());
  failure_gen_.fetch_add(1);
  const auto t1 = Clock::now();
  {
    MutexLock lock(mu_);
    stats_.failed_ranks = static_cast<int64_t>(failed_.size());
    ++stats_.failovers;
    stats_.experts_lost = lost;
    stats_.last_failover_seconds = std::chrono::duration<double>(t1 - t0).count();
    stats_.failure_noticed_ns = ns_of(t0);
    stats_.failover_published_ns = ns_of(t1);
    stats_.restored_ns = lost == 0 ? ns_of(t1) : 0;
    stats_.redundancy_rebuilt_ns = 0;
    rebuild_pending_ = true;
  }
  cv_.notify_all();  // a planner waiting on a transfer notices the abort
  return ok_status();
}

void PlacementManager::on_membership(const Membership& m) {
  const Status s = fail_ranks(m.failed);
  if (s.ok()) return;
  MutexLock lock(mu_);
  stats_.last_abort = str_cat("on_membership (epoch ", m.epoch, "): ", s.to_string());
}

std::vector<RankId> PlacementManager::failed_ranks() const {
  MutexLock pub(publish_mu_);
  return failed_;
}

std::vector<LostExpert> PlacementManager::lost_experts() const {
  return experts_without_replica(cell_.load()->placement());
}

PlacementManagerStats PlacementManager::stats() const {
  PlacementManagerStats s;
  {
    MutexLock lock(mu_);
    s = stats_;
  }
  s.steps = steps_.load(std::memory_order_relaxed);
  if (dump_writer_) {
    s.dumps_written = dump_writer_->num_written();
    s.dumps_dropped = dump_writer_->num_dropped();
    s.dumps_failed = dump_writer_->num_failed();
  }
  return s;
}

void PlacementManager::set_vote(int64_t round, int64_t batch, StagePhase phase, int64_t last, int64_t plan_checksum) {
  {
    MutexLock lock(mu_);
    vote_.round = round;
    vote_.batch = batch;
    vote_.phase = phase;
    vote_.last_batch = last;
    vote_.plan_checksum = plan_checksum;
  }
  cv_.notify_all();  // an engine thread may wait for this vote (stage_wait)
}

Status PlacementManager::step_boundary(int64_t step) {
  recorder_->note_step(step);
  // Only this thread writes it; stats() reads it from any thread.
  steps_.store(steps_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (!options_.dynamic) {
    // No rounds, so no aggregation: this rank dumps its own window.
    if (dump_writer_ && step >= next_round_step_) {
      CaptureWindow w = recorder_->take_window();
      next_round_step_ = next_multiple(step, options_.replan_interval_steps);
      submit_dump(std::move(w.load), window_meta(w, rank_, *hot_));
    }
    return ok_status();
  }
  // Fast path: no round due or running, or not a cadence step.
  if (broken_) return ok_status();
  if (!round_.active && step < next_round_step_) return shift_steps_ > 0 ? shift_step(step) : ok_status();
  // A regular round is due: it takes over from a check still pending (every
  // rank drops it at this same step; its planner still prices it).
  if (!round_.active) pending_check_ = -1;
  if (step % options_.commit_cadence_steps != 0) return ok_status();

  const auto t0 = Clock::now();
  if (published_gen_.load(std::memory_order_acquire) != hot_gen_) refresh_hot();
  Vote v;
  {
    MutexLock lock(mu_);
    if (round_.active && options_.stage_wait.count() > 0) {
      // kIdle: the planner has not picked the job up yet; kWorking: planning
      // or transferring. Either way this rank's vote would say "wait".
      cv_.wait_for(lock.native(), options_.stage_wait, [&]() OMNI_REQUIRES(mu_) {
        return stop_ || (vote_.phase != StagePhase::kWorking && vote_.phase != StagePhase::kIdle);
      });
    } else if (!round_.active && options_.stage_wait.count() > 0) {
      // A round is due: the planner may still be leaving the last one (its
      // vote goes back to idle after the verdict); wait for that too, so that
      // round starts do not depend on machine load either.
      cv_.wait_for(lock.native(), options_.stage_wait, [&]() OMNI_REQUIRES(mu_) { return stop_ || vote_.phase == StagePhase::kIdle; });
    }
    v = vote_;
  }
  v.placement_checksum = vote_checksum(hot_->checksum());
  std::array<int64_t, kVoteWords> buf{};
  encode_vote(v, buf);
  Status s = transport_->all_reduce(std::span<int64_t>(buf), ReduceOp::kMax, options_.collective_timeout);
  const double agree = seconds_since(t0);
  if (!s.ok()) {
    // UNAVAILABLE: the collective waited for a rank that was then marked
    // failed; FAILED_PRECONDITION: the survivors had not all marked it yet.
    // Every participant gets the same error from the same collective, so
    // every survivor aborts the round here, at this step, and tries again at
    // the next interval. Any other error switches dynamic placement off.
    const bool failure = s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kFailedPrecondition;
    {
      MutexLock lock(mu_);
      stats_.last_abort = str_cat("agreement collective ", failure ? "hit a failure" : "failed", " at step ", step,
                                  ": ", s.to_string());
      if (round_.active) {
        verdict_round_ = round_.round;
        verdict_batch_ = round_.batch;
        verdict_commit_ = false;
        ++stats_.rounds_aborted;
        round_.active = false;
      }
    }
    cv_.notify_all();
    if (failure) {
      next_round_step_ = next_multiple(step, options_.replan_interval_steps);
      return ok_status();
    }
    broken_ = true;
    return s.with_context(str_cat("step_boundary: rank ", rank_, ", step ", step,
                                  ": dynamic placement switched off, epoch ", hot_->epoch(), " stays"));
  }
  round_.placement_checksum = v.placement_checksum;
  const DecisionResult d = decide(decode_votes(buf), round_);
  apply_decision(d, step);
  MutexLock lock(mu_);
  ++stats_.agreement_collectives;
  stats_.agreement_seconds += agree;
  stats_.step_boundary_seconds += seconds_since(t0);
  return ok_status();
}

void PlacementManager::apply_decision(const DecisionResult& d, int64_t step) {
  switch (d.decision) {
    case Decision::kNone:
      return;
    case Decision::kWait:
      if (round_.active) round_.waited_steps += options_.commit_cadence_steps;
      return;
    case Decision::kStartRound:
      return start_round(step);
    case Decision::kCommit:
      return commit_step(d, step);
    case Decision::kFinish:
    case Decision::kAbort:
      return end_round(d, step);
  }
}

void PlacementManager::start_round(int64_t step, int64_t shift_check) {
  auto job = std::make_unique<Job>();
  job->round = next_round_id_++;
  {
    MutexLock pub(publish_mu_);
    job->base = cell_.load();
    job->failed = failed_;
    job->failure_gen = failure_gen_.load();
  }
  if (shift_check < 0) {
    CaptureWindow w = recorder_->take_window();
    job->window = std::move(w.load);
    job->window_meta = window_meta(w, -1, *job->base);
    last_take_step_ = step;
  } else {
    // The steps since the check stay in the recorder: they begin the next window.
    job->shift = true;
    job->check = shift_check;
  }
  round_.active = true;
  round_.round = job->round;
  round_.batch = 0;
  round_.waited_steps = 0;
  {
    MutexLock lock(mu_);
    vote_ = Vote{};
    vote_.round = job->round;
    vote_.phase = StagePhase::kWorking;
    job_ = std::move(job);
    planner_error_.clear();
    ++stats_.rounds_started;
    if (job_->shift) ++stats_.shift_rounds;
  }
  cv_.notify_all();
}

void PlacementManager::commit_step(const DecisionResult& d, int64_t step) {
  const auto t0 = Clock::now();
  std::unique_ptr<Prepared> prep;
  {
    MutexLock lock(mu_);
    prep = std::move(prepared_);
  }
  // Every rank voted ready for this round and batch, this one included, so
  // its planner has handed over the batch.
  OMNI_CHECK_MSG(prep && prep->round == round_.round && prep->batch == round_.batch,
                 str_cat("commit of round ", round_.round, " batch ", round_.batch, " without staged batch"));
  MutexLock pub(publish_mu_);
  refresh_hot();  // a failover may have been published by another thread
  std::shared_ptr<const RoutingSnapshot> snap = prep->snapshot;
  const uint64_t epoch = hot_->epoch() + 1;
  if (holds_on_ranks(snap->placement(), failed_) || snap->epoch() != epoch) {
    // A failure reached this rank after the batch was planned (the commit
    // was decided with the failed rank's vote, so every survivor commits
    // it): publish it without the failed ranks, numbered after the failover.
    auto placement = snap->placement_ptr();
    StatusOr<std::shared_ptr<const RoutingSnapshot>> rebuilt = snap;
    if (holds_on_ranks(*placement, failed_)) {
      auto dropped = drop_ranks(*placement, failed_);
      OMNI_CHECK_MSG(dropped.ok(), dropped.status().to_string());  // failed_ holds valid ranks
      rebuilt = RoutingSnapshot::build(std::make_shared<const Placement>(*std::move(dropped)), topology_, rank_, epoch);
    } else {
      rebuilt = RoutingSnapshot::rebuild(*snap, placement, {}, topology_, rank_, epoch);
    }
    OMNI_CHECK_MSG(rebuilt.ok(), rebuilt.status().to_string());  // built from a valid placement before
    snap = *std::move(rebuilt);
  }
  const auto tc = Clock::now();
  for (StagingId id : prep->staging) {
    const Status s = store_->commit_staging(id);
    OMNI_CHECK_MSG(s.ok(), s.to_string());  // the id was acquired by this manager and not released
    store_->release_staging(id);
  }
  const double copy = seconds_since(tc);
  cell_.store(snap);
  published_gen_.fetch_add(1, std::memory_order_release);
  refresh_hot();
  pub.unlock();
  {
    MutexLock lock(mu_);
    if (prep->restore) {
      stats_.experts_restored += prep->experts_moved;
      if (d.last_batch) ++stats_.restore_rounds;
    }
    if (rebuild_pending_ && stats_.restored_ns == 0) {
      // A restore round, or a batch planned before the failure that moved
      // the lost experts' weights elsewhere before the rank died.
      if (count_lost_experts(hot_->placement()) == 0) stats_.restored_ns = ns_of(Clock::now());
    } else if (!prep->restore && d.last_batch && rebuild_pending_) {
      rebuild_pending_ = false;
      stats_.redundancy_rebuilt_ns = ns_of(Clock::now());
    }
    verdict_round_ = round_.round;
    verdict_batch_ = round_.batch;
    verdict_commit_ = true;
    ++stats_.batches_committed;
    stats_.epoch = hot_->epoch();
    stats_.placement_checksum = hot_->checksum();
    stats_.experts_moved += prep->experts_moved;
    stats_.bytes_moved += prep->bytes_moved;
    stats_.bytes_received += prep->bytes_received;
    stats_.staging_copy_seconds += copy;
    stats_.commit_seconds += seconds_since(t0) - copy;
    if (d.last_batch) ++stats_.rounds_completed;
    // The planner may not have seen the verdict by the next agreement:
    // its vote moves on now, so that a stale "ready" never counts twice.
    if (!d.last_batch) {
      vote_.batch = round_.batch + 1;
      vote_.phase = StagePhase::kWorking;
      vote_.last_batch = 0;
    }
  }
  cv_.notify_all();
  ++round_.batch;
  round_.waited_steps = 0;
  if (d.last_batch) {
    round_.active = false;
    next_round_step_ = next_multiple(step, options_.replan_interval_steps);
    // Every rank staged the same plan, so every rank agrees on this.
    if (prep->shift) next_round_step_ = std::min(next_round_step_, step + kShiftFollowUpChecks * shift_steps_);
  }
}

void PlacementManager::end_round(const DecisionResult& d, int64_t step) {
  {
    MutexLock lock(mu_);
    verdict_round_ = round_.round;
    verdict_batch_ = round_.batch;
    verdict_commit_ = false;
    if (d.decision == Decision::kFinish) {
      ++stats_.rounds_no_change;
      // A re-plan on the survivors that found nothing worth moving also
      // ends the rebuild (a restore round never finishes unchanged).
      if (rebuild_pending_ && stats_.restored_ns != 0) {
        rebuild_pending_ = false;
        stats_.redundancy_rebuilt_ns = ns_of(Clock::now());
      }
    } else {
      ++stats_.rounds_aborted;
      stats_.last_abort = str_cat("round ", round_.round, " batch ", round_.batch, " aborted at step ", step,
                                  ": ", abort_reason_name(d.reason),
                                  planner_error_.empty() ? "" : " (" + planner_error_ + ")");
    }
  }
  cv_.notify_all();
  round_.active = false;
  next_round_step_ = next_multiple(step, options_.replan_interval_steps);
}

bool PlacementManager::wait_verdict(int64_t round, int64_t batch) {
  MutexLock lock(mu_);
  cv_.wait(lock.native(), [&]() OMNI_REQUIRES(mu_) {
    return stop_ || (verdict_round_ == round && (verdict_batch_ >= batch || !verdict_commit_)) ||
           verdict_round_ > round;
  });
  return !stop_ && verdict_round_ == round && verdict_batch_ == batch && verdict_commit_;
}

Status PlacementManager::shift_step(int64_t step) {
  if (pending_check_ < 0) {
    if (step - last_take_step_ < shift_steps_) return ok_status();
    const auto t0 = Clock::now();
    auto check = std::make_unique<CheckJob>();
    check->id = next_check_id_++;
    check->base = cell_.load();
    CaptureWindow w = recorder_->take_window();
    check->chunk = std::move(w.load);
    check->meta = window_meta(w, -1, *check->base);
    pending_check_ = check->id;
    pending_check_step_ = step;
    last_take_step_ = step;
    {
      MutexLock lock(mu_);
      checks_.push_back(std::move(check));
      stats_.step_boundary_seconds += seconds_since(t0);
    }
    cv_.notify_all();
    return ok_status();
  }
  // The verdict is agreed on the step after the check, then every cadence step.
  if ((step - pending_check_step_ - 1) % options_.commit_cadence_steps != 0) return ok_status();
  const auto t0 = Clock::now();
  // {verdict, planner busy}: the planners all price the same sum, so the
  // maximum is the verdict as soon as one has it; a round starts only when
  // every planner is idle (one leaving the last round would reset its vote).
  std::array<int64_t, 2> v{};
  {
    MutexLock lock(mu_);
    auto idle = [&]() OMNI_REQUIRES(mu_) { return vote_.phase == StagePhase::kIdle && job_ == nullptr; };
    if (options_.stage_wait.count() > 0)
      cv_.wait_for(lock.native(), options_.stage_wait,
                   [&]() OMNI_REQUIRES(mu_) { return stop_ || (verdict_check_ >= pending_check_ && idle()); });
    v[0] = verdict_check_ == pending_check_ ? check_verdict_ : kNotPriced;
    v[1] = idle() ? 0 : 1;
  }
  const Status s = transport_->all_reduce(std::span<int64_t>(v), ReduceOp::kMax, options_.collective_timeout);
  if (!s.ok()) {
    // As the agreement collective: a failure cut it short on every survivor
    // alike (the check is dropped, serving goes on); any other error switches
    // dynamic placement off.
    const bool failure = s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kFailedPrecondition;
    pending_check_ = -1;
    {
      MutexLock lock(mu_);
      stats_.last_abort = str_cat("shift check collective ", failure ? "hit a failure" : "failed", " at step ", step,
                                  ": ", s.to_string());
    }
    if (failure) return ok_status();
    broken_ = true;
    return s.with_context(str_cat("step_boundary: rank ", rank_, ", step ", step,
                                  ": dynamic placement switched off, epoch ", hot_->epoch(), " stays"));
  }
  const int64_t check = pending_check_;
  if (v[0] == kNoShift) pending_check_ = -1;
  if (v[0] == kShift && v[1] == 0) {
    pending_check_ = -1;
    start_round(step, check);
  }
  MutexLock lock(mu_);
  ++stats_.shift_collectives;
  stats_.step_boundary_seconds += seconds_since(t0);
  return ok_status();
}

}  // namespace omni
