// PlacementManager, the planner thread's side (see placement_manager.h and
// placement_manager_internal.h): the loop that takes rounds and shift checks,
// aggregating windows over the planner's transport, pricing shift checks,
// agreeing on a round, the leader's plan and its broadcast, and staging the
// migration steps.
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

void PlacementManager::planner_main() {
  for (;;) {
    std::unique_ptr<Job> job;
    std::unique_ptr<CheckJob> check;
    {
      MutexLock lock(mu_);
      cv_.wait(lock.native(), [&]() OMNI_REQUIRES(mu_) { return stop_ || job_ != nullptr || !checks_.empty(); });
      // Work handed over is done even when stopping: every rank was handed
      // the same at the same step, and the other planners may already wait
      // in its collectives, which would hold them (and their ranks' shutdown)
      // for collective_timeout. A stopping rank aborts a round at its
      // agreement (agree_on_round): shutdown costs two collectives.
      if (job_ == nullptr && checks_.empty()) return;
      // Checks first: every one was handed over before the round job waiting
      // (none is handed over while a round runs), and every rank runs the
      // same collectives in the same order.
      if (!checks_.empty()) {
        check = std::move(checks_.front());
        checks_.pop_front();
      } else {
        job = std::move(job_);
      }
    }
    if (check) {
      run_check(*check);
      continue;
    }
    const Status s = run_round(*job);
    if (!s.ok()) {
      {
        MutexLock lock(mu_);
        planner_error_ = s.to_string();
        vote_.phase = StagePhase::kFailed;
      }
      cv_.notify_all();
      // The engines see kFailed and abort; wait for that before going idle.
      wait_verdict(job->round, INT64_MAX);
    }
    {
      MutexLock lock(mu_);
      prepared_.reset();
      vote_ = Vote{};
    }
    cv_.notify_all();  // an engine may wait for this planner to be idle (stage_wait)
  }
}

Status PlacementManager::run_round(const Job& job) {
  // The round's collectives on the planner transport (aggregation, agreement,
  // then the plan's broadcast unless it is a restore) run on every rank in
  // the same order: a rank that left the sequence early would pair its next
  // collective with another's. So no rank returns between them on its own;
  // the agreement decides for all.
  LoadMatrix load, newest;
  if (!job.shift) {
    OMNI_ASSIGN_OR_RETURN(load, aggregate_window(job, shift_steps_ > 0 ? &newest : nullptr));
  }
  const RoundKind kind{leader_of(job.failed, job.base->placement().num_ranks()),
                       count_lost_experts(job.base->placement()) > 0};
  OMNI_RETURN_IF_ERROR(agree_on_round(job, kind, job.shift && shift_->last_chunk_id != job.check));
  // A regular round checks its newest steps as a shift check would: a shift
  // that began after the last check (at a phase change, typically just
  // before the round was due) is planned for now rather than one check
  // later. Every rank prices the same sums under the same placement, so all
  // reach the same verdict.
  bool shifted = job.shift;
  if (!job.shift && shift_steps_ > 0 && !shift_->planned_on_shift) {
    OMNI_ASSIGN_OR_RETURN(shifted, is_shifted(job.base->placement(), newest));
    if (shifted) {
      MutexLock lock(mu_);
      ++stats_.shift_rounds;
    }
  }
  if (shifted) {
    // A shift: the workload moved away from the plan. Only the newest steps
    // (the check's, or the regular round's own since the last check)
    // describe it: plan on them alone, and forget the windows before them
    // (the next round's window begins after them; the checks' chunks so far
    // are dumped as one window).
    if (shift_->since_round) {
      shift_->since_meta.window = next_window_index_++;
      submit_dump(*std::move(shift_->since_round), shift_->since_meta);
      shift_->since_round.reset();
    }
    OMNI_ASSIGN_OR_RETURN(history_, WindowHistory::create(history_.options()));
    load = job.shift ? shift_->last_chunk : std::move(newest);
    shift_->planned_on = load;
    shift_->planned_on_shift = true;
    shift_->promise_valid = false;
    std::vector<LoadMatrix> samples(1, load);
    OMNI_ASSIGN_OR_RETURN(std::optional<RoundPlan> plan, plan_round(job, kind, load, samples));
    if (!plan) return ok_status();
    plan->shift = true;
    return stage_steps(job, *plan);
  }
  // The planner sees the history's EMA (the window itself unless ema_decay >
  // 0), hedged for volatility when asked, and the last plan_samples windows.
  OMNI_RETURN_IF_ERROR(history_.add(std::move(load)).with_context(str_cat("round ", job.round)));
  if (shift_steps_ > 0) {
    shift_->planned_on = history_.ema();  // the promise of this round's plan is priced on it
    shift_->planned_on_shift = false;
    shift_->promise_valid = false;
  }
  OMNI_ASSIGN_OR_RETURN(load, history_.with_volatility(options_.volatility_weight));
  // The planner's recent windows (PlanInput::samples): windows without a
  // token say nothing of the mix and are left out (omni refuses a window empty
  // in a layer the load has tokens in).
  std::vector<LoadMatrix> samples = history_.newest(options_.plan_samples);
  std::erase_if(samples, [](const LoadMatrix& w) {
    for (LayerId l = 0; l < w.num_layers(); ++l)
      if (w.layer_total(l) > 0) return false;
    return true;
  });
  OMNI_ASSIGN_OR_RETURN(std::optional<RoundPlan> plan, plan_round(job, kind, load, samples));
  if (!plan) return ok_status();  // nothing to move: the round has finished unchanged
  return stage_steps(job, *plan);
}

StatusOr<LoadMatrix> PlacementManager::aggregate(const LoadMatrix& local, DumpMetadata& meta, const std::string& what) {
  const Placement& initial = cell_.load()->placement();  // shapes only: the same in every epoch
  const int32_t L = initial.num_layers();
  const int32_t E = initial.num_experts();
  // The invalid-id count rides along in a last element, for the dump.
  std::vector<int64_t> counts(local.counts().begin(), local.counts().end());
  if (counts.size() != static_cast<size_t>(L) * static_cast<size_t>(E))
    return internal_error(str_cat(what, ": recorder window has ", counts.size(), " counts, expected ", int64_t{L} * E));
  counts.push_back(meta.num_invalid);
  OMNI_RETURN_IF_ERROR(planner_transport_->all_reduce(std::span<int64_t>(counts), ReduceOp::kSum,
                                                      options_.collective_timeout)
                           .with_context(what));
  meta.num_invalid = counts.back();
  counts.pop_back();
  return LoadMatrix::from_counts(L, E, std::move(counts));
}

StatusOr<LoadMatrix> PlacementManager::aggregate_window(const Job& job, LoadMatrix* newest) {
  DumpMetadata meta = job.window_meta;
  OMNI_ASSIGN_OR_RETURN(LoadMatrix load,
                        aggregate(job.window, meta, str_cat("round ", job.round, ": aggregating the window")));
  if (newest != nullptr) *newest = load;
  if (shift_->since_round) {
    // The shift checks took the window's first steps: they come first.
    OMNI_RETURN_IF_ERROR(shift_->since_round->add(load));
    load = *std::move(shift_->since_round);
    shift_->since_round.reset();
    meta.step_begin = shift_->since_meta.step_begin;
    meta.num_invalid += shift_->since_meta.num_invalid;
  }
  meta.window = next_window_index_++;  // aggregated windows are numbered 0, 1, ... (checks take more recorder windows)
  submit_dump(load, meta);  // queued only (rank 0 with enable_dump); the writer thread does the I/O
  return load;
}

void PlacementManager::run_check(const CheckJob& check) {
  const auto t0 = Clock::now();
  int64_t verdict = kNoShift;
  DumpMetadata meta = check.meta;
  StatusOr<LoadMatrix> chunk = aggregate(check.chunk, meta, str_cat("shift check ", check.id));
  std::string error;
  if (chunk.ok()) {
    if (shift_->since_round) {
      Status s = shift_->since_round->add(*chunk);
      if (!s.ok()) error = s.to_string();
      shift_->since_meta.step_end = meta.step_end;
      shift_->since_meta.num_invalid += meta.num_invalid;
    } else {
      shift_->since_round = *chunk;
      shift_->since_meta = meta;
    }
    shift_->last_chunk = *std::move(chunk);
    shift_->last_chunk_id = check.id;
    StatusOr<bool> shifted = is_shifted(check.base->placement(), shift_->last_chunk);
    if (!shifted.ok()) error = shifted.status().to_string();
    else if (*shifted) verdict = kShift;
  } else {
    error = chunk.status().to_string();  // a failure cut the aggregation short: this chunk is lost
  }
  {
    MutexLock lock(mu_);
    verdict_check_ = check.id;
    check_verdict_ = verdict;
    ++stats_.shift_checks;
    stats_.shift_check_seconds += seconds_since(t0);
    if (!error.empty()) stats_.last_abort = str_cat("shift check ", check.id, ": ", error);
  }
  cv_.notify_all();  // an engine may wait for the verdict (stage_wait)
}

StatusOr<bool> PlacementManager::is_shifted(const Placement& in_force, const LoadMatrix& chunk) {
  if (!shift_->planned_on) return false;  // no promise before the first plan: nothing to compare with
  if (!shift_->promise_valid || shift_->promise_for != in_force.checksum()) {
    shift_->promise_valid = false;
    OMNI_ASSIGN_OR_RETURN(shift_->promise, served_max_over_mean(in_force, *shift_->planned_on, options_.dispatch_mode));
    shift_->promise_valid = true;
    shift_->promise_for = in_force.checksum();
  }
  OMNI_ASSIGN_OR_RETURN(double now, served_max_over_mean(in_force, chunk, options_.dispatch_mode));
  return is_shift(now, shift_->promise, options_.shift_threshold);
}

Status PlacementManager::agree_on_round(const Job& job, const RoundKind& kind, bool missing_chunk) {
  // Each value v rides as (v, -v) in one max all-reduce: every rank sees the
  // same maximum and minimum, hence the same verdict.
  const int64_t failed = failure_gen_.load() != job.failure_gen || missing_chunk ? 1 : 0;
  const int64_t base = vote_checksum(job.base->checksum());
  int64_t stopping = 0;
  {
    MutexLock lock(mu_);
    stopping = stop_ ? 1 : 0;
  }
  std::array<int64_t, 8> v = {failed, kind.leader, -int64_t{kind.leader}, kind.restore, -int64_t{kind.restore}, base,
                              -base, stopping};
  OMNI_RETURN_IF_ERROR(planner_transport_->all_reduce(std::span<int64_t>(v), ReduceOp::kMax, options_.collective_timeout)
                           .with_context(str_cat("round ", job.round, ": agreeing on the round")));
  if (v[0] != 0)
    return aborted_error(str_cat("round ", job.round, ": a rank failed",
                                 job.shift ? " (or lost the shift check's load to a failure)" : ""));
  // A rank's PlacementManager is being destroyed: no rank plans or moves.
  if (v[7] != 0) return aborted_error(str_cat("round ", job.round, ": a rank is shutting down"));
  if (v[1] != -v[2] || v[3] != -v[4] || v[5] != -v[6])
    return failed_precondition_error(str_cat("round ", job.round, ": the ranks started it from different states (leader ",
                                             -v[2], "..", v[1], ", restore ", -v[4], "..", v[3],
                                             ", or the placement in force): a failure was being reported"));
  return ok_status();
}

StatusOr<Placement> PlacementManager::leader_plan(const Job& job, RankId leader, const LoadMatrix& load,
                                                  const std::vector<LoadMatrix>& samples) {
  const Placement& current = job.base->placement();
  StatusOr<Placement> mine = internal_error("not the leader");
  if (rank_ == leader) {
    const auto tp = Clock::now();
    StatusOr<PlanResult> plan = internal_error("no plan");
    if (job.failed.empty()) {
      PlanInput in;
      in.load = &load;
      in.num_ranks = current.num_ranks();
      for (LayerId l = 0; l < current.num_layers(); ++l) in.slots_per_rank.push_back(current.slots_per_rank(l));
      in.topology = &topology_;
      in.current = &current;
      in.samples = &samples;
      in.max_moves_per_rank = options_.max_moves_per_rank;
      in.serving = serving_model();
      plan = planner_->plan(in);
    } else {
      plan = plan_on_survivors(*planner_, load, current, topology_, job.failed, options_.max_moves_per_rank,
                               serving_model());
    }
    mine = plan.ok() ? StatusOr<Placement>(std::move(plan->placement)) : StatusOr<Placement>(plan.status());
    MutexLock lock(mu_);
    stats_.planning_seconds += seconds_since(tp);
    ++stats_.plans_made;
  }
  auto shared = share_plan(*planner_transport_, leader, rank_ == leader ? &mine : nullptr, options_.collective_timeout);
  if (!shared.ok()) return shared.status().with_context(str_cat("round ", job.round, ": the plan"));
  return shared;
}

StatusOr<std::optional<PlacementManager::RoundPlan>> PlacementManager::plan_round(
    const Job& job, const RoundKind& kind, const LoadMatrix& load, const std::vector<LoadMatrix>& samples) {
  const int64_t round = job.round;
  const Placement& current = job.base->placement();
  // The round's budget: what diff() schedules is what this manager commits.
  MigrationOptions budget;
  for (LayerId l = 0; l < current.num_layers(); ++l) budget.layer_expert_bytes.push_back(store_->slot_bytes(l));
  budget.expert_bytes = budget.layer_expert_bytes.front();
  budget.staging_bytes_per_rank = options_.staging_bytes_per_rank;
  budget.layers_per_commit = options_.layers_per_commit;
  budget.max_per_round = 0;
  RoundPlan out;
  out.restore = kind.restore;
  if (out.restore) {
    // Experts lost to a failure: reload them from the backup into empty or
    // redundant slots of the survivors before anything else is re-planned (no
    // plan can place them otherwise: the migration has no source). Every rank
    // computes the same restore (deterministic and cheap: no leader).
    std::optional<RestorePlan> restored;
    if (options_.backup != nullptr) {
      OMNI_ASSIGN_OR_RETURN(restored, plan_restore(current, job.failed, budget.layer_expert_bytes));
    }
    if (!restored) {  // no backup, or no room: the experts stay lost
      set_vote(round, 0, StagePhase::kNoChange, 1, vote_checksum(current.checksum()));
      wait_verdict(round, 0);
      return std::nullopt;
    }
    out.plan_checksum = vote_checksum(restored->next.checksum());
    OMNI_ASSIGN_OR_RETURN(out.steps, restore_steps(current, restored->next, restored->transfers, budget));
    return out;
  }
  // The leader (the lowest live rank) plans, on the live ranks only once some
  // have failed; every rank gets its plan, checksum-verified.
  OMNI_ASSIGN_OR_RETURN(const Placement next, leader_plan(job, kind.leader, load, samples));
  OMNI_ASSIGN_OR_RETURN(auto before, placement_balance(current, load));
  OMNI_ASSIGN_OR_RETURN(auto after, placement_balance(next, load));
  {
    MutexLock lock(mu_);
    stats_.last_predicted_before = before.mean_max_over_mean;
    stats_.last_predicted_after = after.mean_max_over_mean;
  }
  out.plan_checksum = vote_checksum(next.checksum());
  bool changed = false;
  for (LayerId l = 0; l < current.num_layers() && !changed; ++l) changed = !layers_equal(current, next, l);
  // min_gain 0 (default) takes every changed plan: a planner that plans for
  // the next interval (omni) may fit this window worse than the placement in
  // force on purpose (replicas for the experts that swing), so the window's
  // own balance is no test of it; only an explicit min_gain > 0 asks for one.
  if (!changed ||
      (options_.min_gain > 0 && before.mean_max_over_mean - after.mean_max_over_mean < options_.min_gain)) {
    set_vote(round, 0, StagePhase::kNoChange, 1, out.plan_checksum);
    wait_verdict(round, 0);
    return std::nullopt;
  }
  // The migration plan's rounds, one commit each (every rank derives the same
  // steps from the same placements).
  OMNI_ASSIGN_OR_RETURN(out.steps, migration_steps(current, next, topology_, budget));
  return out;
}

Status PlacementManager::stage_steps(const Job& job, const RoundPlan& plan) {
  const int64_t round = job.round;
  std::shared_ptr<const RoutingSnapshot> prev = job.base;
  for (size_t b = 0; b < plan.steps.size(); ++b) {
    const MigrationStep& step = plan.steps[b];
    OMNI_ASSIGN_OR_RETURN(auto snap, RoutingSnapshot::rebuild(*prev, step.routing, step.changed, topology_, rank_,
                                                              job.base->epoch() + b + 1));
    auto prep = std::make_unique<Prepared>();
    prep->round = round;
    prep->batch = static_cast<int64_t>(b);
    prep->snapshot = snap;
    prep->restore = plan.restore;
    prep->shift = plan.shift;
    const auto tt = Clock::now();
    // A failover, shutdown or a verdict against this round stops the transfers.
    auto aborted = [&] {
      if (failure_gen_.load() != job.failure_gen) return true;
      MutexLock lock(mu_);
      return stop_ || (verdict_round_ == round && !verdict_commit_) || verdict_round_ > round;
    };
    StageStats staged;
    Status s = executor_->stage(round, static_cast<int64_t>(b), step.transfers, aborted, prep->staging, &staged);
    {
      MutexLock lock(mu_);
      stats_.transfer_seconds += seconds_since(tt);
      stats_.restore_load_seconds += staged.restore_load_seconds;
      stats_.experts_loaded += staged.experts_loaded;
    }
    if (s.ok() && failure_gen_.load() != job.failure_gen) s = aborted_error(str_cat("round ", round, ": a rank failed"));
    if (!s.ok()) {
      for (StagingId id : prep->staging) store_->release_staging(id);
      return s;
    }
    for (const Transfer& t : step.transfers) {
      ++prep->experts_moved;
      prep->bytes_moved += t.bytes;
      if (t.dst_rank == rank_) prep->bytes_received += t.bytes;
    }
    {
      MutexLock lock(mu_);
      prepared_ = std::move(prep);
      vote_.round = round;
      vote_.batch = static_cast<int64_t>(b);
      vote_.phase = StagePhase::kReady;
      vote_.last_batch = b + 1 == plan.steps.size() ? 1 : 0;
      vote_.plan_checksum = plan.plan_checksum;
    }
    cv_.notify_all();
    if (!wait_verdict(round, static_cast<int64_t>(b))) {
      // Aborted (or shutting down): the engine did not take the batch.
      MutexLock lock(mu_);
      if (prepared_) {
        for (StagingId id : prepared_->staging) store_->release_staging(id);
        prepared_.reset();
      }
      return ok_status();
    }
    prev = snap;  // the engine has already set the vote to working on batch b + 1
  }
  return ok_status();
}

ServingModel PlacementManager::serving_model() const {
  // What the planner prices its moves against: this manager's dispatch, one
  // window per re-plan interval, the weights' size per expert.
  ServingModel m;
  m.dispatch = options_.dispatch_mode;
  m.window_steps = std::max<int64_t>(1, options_.replan_interval_steps);
  m.interval_steps = m.window_steps;
  m.expert_bytes = static_cast<double>(store_->slot_bytes(0));
  return m;
}

}  // namespace omni
