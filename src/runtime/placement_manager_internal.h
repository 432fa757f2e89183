// Internal to the runtime module (not installed): the PlacementManager's
// private types and helpers, shared by its two translation units:
// placement_manager.cc (the engine thread's side: creation, dispatch,
// step_boundary, votes and commits, failures, shift checks' verdicts) and
// placement_manager_rounds.cc (the planner thread's side: aggregating
// windows, shift checks' pricing, agreeing on a round, planning,
// broadcasting and staging it).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "omniplacement/runtime/placement_manager.h"

namespace omni {

struct PlacementManager::Job {
  int64_t round = 0;
  LoadMatrix window;
  DumpMetadata window_meta;  // window index, steps and invalid ids of this rank's window
  std::shared_ptr<const RoutingSnapshot> base;
  std::vector<RankId> failed;  // failed ranks when the round started (base has none of their slots)
  uint64_t failure_gen = 0;    // a failover after this aborts the round
  bool shift = false;          // started by shift check `check`: plans on its chunk, window unused
  int64_t check = -1;
};

// A shift check handed to the planner thread: this rank's counts of the steps
// since the last take_window, and the placement in force to price them under.
struct PlacementManager::CheckJob {
  int64_t id = 0;
  LoadMatrix chunk;
  DumpMetadata meta;
  std::shared_ptr<const RoutingSnapshot> base;
};

// Planner-thread state of shift detection.
struct PlacementManager::ShiftState {
  // The checks' aggregated chunks since the last round start (the next
  // regular round's window begins with them).
  std::optional<LoadMatrix> since_round;
  DumpMetadata since_meta;
  // The last check's aggregated chunk (a shift round plans on it).
  LoadMatrix last_chunk;
  int64_t last_chunk_id = -1;
  // The load the last round planned on (empty before the first), and its
  // price under the placement with checksum promise_for.
  std::optional<LoadMatrix> planned_on;
  // The last round planned on a shift's newest steps alone: its promise is a
  // fit to a few steps, and the round after it (the follow-up) plans on the
  // steps since the shift rather than testing its own newest steps again.
  bool planned_on_shift = false;
  uint64_t promise_for = 0;
  double promise = 0;
  bool promise_valid = false;
};

struct PlacementManager::Prepared {
  int64_t round = 0;
  int64_t batch = 0;
  std::vector<StagingId> staging;
  std::shared_ptr<const RoutingSnapshot> snapshot;
  int64_t experts_moved = 0;
  int64_t bytes_moved = 0;
  int64_t bytes_received = 0;
  bool restore = false;  // a restore round's batch (weights from the backup)
  bool shift = false;    // a batch of a plan made on a shift's newest steps alone
};

// What every rank must agree on before a round's later collectives: who
// plans, and whether it is a restore (no plan to broadcast).
struct PlacementManager::RoundKind {
  RankId leader = 0;  // the lowest live rank when the round started
  bool restore = false;
};

// What a round stages: the migration steps (or the restore's) and the plan's
// checksum every rank votes with.
struct PlacementManager::RoundPlan {
  std::vector<MigrationStep> steps;
  int64_t plan_checksum = 0;
  bool restore = false;  // a restore round (weights from the backup)
  bool shift = false;    // planned on a shift's newest steps alone (a follow-up round comes early)
};

namespace manager_internal {

// A shift check's verdict (the flag collective's first word; max over ranks).
constexpr int64_t kNotPriced = 0;
constexpr int64_t kNoShift = 1;
constexpr int64_t kShift = 2;

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
inline int64_t ns_of(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// The rank that plans a round: the lowest rank not in `failed` (ascending).
inline RankId leader_of(std::span<const RankId> failed, int32_t num_ranks) {
  RankId r = 0;
  while (r < num_ranks && std::binary_search(failed.begin(), failed.end(), r)) ++r;
  return r;
}

// Rounds start at multiples of the interval (not interval steps after the
// previous one ended), so that re-plans stay aligned with the step count.
inline int64_t next_multiple(int64_t step, int64_t interval) { return (step / interval + 1) * interval; }

// After a plan made on a shift's newest steps (a few check periods at most),
// the next round comes once this many check periods have passed since its
// commit, or at the regular interval if that is sooner: it plans on the
// steps since the shift, a sample this many times larger.
inline constexpr int64_t kShiftFollowUpChecks = 4;

// What a dump of window w says about itself; rank -1 for aggregated windows.
inline DumpMetadata window_meta(const CaptureWindow& w, RankId rank, const RoutingSnapshot& in_force) {
  DumpMetadata m;
  m.window = w.index;
  m.step_begin = w.step_begin;
  m.step_end = w.step_end;
  m.epoch = static_cast<int64_t>(in_force.epoch());
  m.placement_checksum = in_force.checksum();
  m.rank = rank;
  m.num_invalid = w.num_invalid;
  return m;
}

}  // namespace manager_internal

}  // namespace omni
