// Shift detection in PlacementManager (runtime/shift_check.h) over
// LocalTransport: a load that moves mid-interval starts a round at once, at
// the same step on every rank; a steady load and dynamic-off start none.
// The simulator's twin: tests/sim/simulator_test.cc (ShiftDetection*).
#include "omniplacement/runtime/shift_check.h"

#include <gtest/gtest.h>

#include <vector>

#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

constexpr int32_t kRanks = 4, kLayers = 2, kExperts = 8, kSlots = 3;

// One rank's batch of one step: `hot` gets 40 tokens, every other expert 5.
std::vector<ExpertId> batch(ExpertId hot) {
  std::vector<ExpertId> ids;
  for (ExpertId e = 0; e < kExperts; ++e)
    for (int i = 0; i < (e == hot ? 40 : 5); ++i) ids.push_back(e);
  return ids;
}

struct RankRun {
  int64_t first_shift_step = -1;  // step_boundary after which stats().shift_rounds first grew
  PlacementManagerStats stats;
};

// Every rank records batch(hot) for steps < shift_at and batch(hot_after)
// from then on, for `steps` steps.
std::vector<RankRun> serve(const PlacementManagerOptions& opt, int64_t steps, int64_t shift_at) {
  const Topology topo = *Topology::uniform(kRanks, 2);
  const Placement initial = *Placement::contiguous(kLayers, kRanks, kExperts, kSlots);
  std::vector<RankRun> out(kRanks);
  auto statuses = LocalGroup::run(kRanks, [&](Transport& t) -> Status {
    OMNI_ASSIGN_OR_RETURN(auto store, HostWeightStore::create({64, 64}, {kSlots, kSlots}, 0));
    OMNI_ASSIGN_OR_RETURN(auto pm, PlacementManager::create(t, topo, initial, *store, opt));
    const std::vector<ExpertId> before = batch(0), after = batch(5);
    RankRun& mine = out[static_cast<size_t>(t.rank())];
    for (int64_t step = 0; step < steps; ++step) {
      for (LayerId l = 0; l < kLayers; ++l) pm->record(l, step < shift_at ? before : after);
      OMNI_RETURN_IF_ERROR(pm->step_boundary(step));
      if (mine.first_shift_step < 0 && pm->stats().shift_rounds > 0) mine.first_shift_step = step;
    }
    // Let a round in flight end, so that every rank reports the same epoch.
    for (int64_t step = steps; step < steps + 200 && pm->stats().rounds_started >
                                                         pm->stats().rounds_completed + pm->stats().rounds_no_change +
                                                             pm->stats().rounds_aborted;
         ++step)
      OMNI_RETURN_IF_ERROR(pm->step_boundary(step));
    mine.stats = pm->stats();
    return ok_status();
  });
  for (const Status& s : statuses) EXPECT_TRUE(s.ok()) << s;
  return out;
}

PlacementManagerOptions shift_options(DispatchMode mode) {
  PlacementManagerOptions o;
  o.planner_spec = "eplb";
  o.replan_interval_steps = 40;
  o.commit_cadence_steps = 1;
  o.shift_check_steps = 4;
  o.shift_threshold = 0.1;
  o.dispatch_mode = mode;
  o.plan_samples = 1;
  // Commit steps independent of machine load (two busy loops beside the test).
  o.stage_wait = std::chrono::milliseconds(20000);
  o.collective_timeout = std::chrono::milliseconds(30000);
  return o;
}

class ShiftDetection : public ::testing::TestWithParam<DispatchMode> {};

TEST_P(ShiftDetection, MidIntervalShiftStartsARoundAtOnceOnEveryRank) {
  // The round at step 40 plans for expert 0; at step 58 expert 5 turns hot.
  // The check that sees only the new load (steps 61-64 here, one check every
  // 4 steps after the round at 40 has ended) flags it, and every rank starts
  // the round on the next step, long before the next regular round (80).
  constexpr int64_t kShiftAt = 58;
  const auto runs = serve(shift_options(GetParam()), 78, kShiftAt);
  for (const RankRun& r : runs) {
    EXPECT_EQ(r.first_shift_step, runs[0].first_shift_step);
    EXPECT_EQ(r.stats.shift_rounds, 1);
    EXPECT_EQ(r.stats.epoch, runs[0].stats.epoch);
    EXPECT_EQ(r.stats.placement_checksum, runs[0].stats.placement_checksum);
    EXPECT_EQ(r.stats.rounds_aborted, 0) << r.stats.last_abort;
  }
  EXPECT_GT(runs[0].first_shift_step, kShiftAt);
  EXPECT_LE(runs[0].first_shift_step, kShiftAt + 4 + 4 + 1);  // a check of new load only, its flag next step
  // Both rounds moved experts: for expert 0 at 40, for expert 5 after the shift.
  EXPECT_EQ(runs[0].stats.rounds_started, 2);
  EXPECT_EQ(runs[0].stats.rounds_completed, 2);
}

TEST_P(ShiftDetection, SteadyLoadStartsNoShiftRound) {
  const auto runs = serve(shift_options(GetParam()), 130, /*shift_at=*/1 << 30);
  for (const RankRun& r : runs) {
    EXPECT_EQ(r.first_shift_step, -1);
    EXPECT_EQ(r.stats.shift_rounds, 0);
    EXPECT_GT(r.stats.shift_checks, 10);  // checks ran, and found the plan holding
    EXPECT_EQ(r.stats.rounds_started, 3);  // 40, 80, 120
  }
}

TEST_P(ShiftDetection, ShiftJustBeforeARegularRoundIsPlannedForByThatRound) {
  // Expert 5 turns hot at step 78, two steps before the round due at 80. The
  // last check (steps 73-76) saw old load; the round's own newest steps
  // (77-80, three of them new) show the shift, so that round plans on them
  // alone instead of on steps 41-80, and is counted as a shift round: the
  // count grows by the commit step (81 with stage_wait), where a check after
  // the round would flag it at step 85 at the earliest. The next round then
  // comes kShiftFollowUpChecks (4) checks after the commit, on the steps since
  // the shift, long before the regular one at 120.
  const auto runs = serve(shift_options(GetParam()), 110, /*shift_at=*/78);
  for (const RankRun& r : runs) {
    // Counted by each rank's planner thread, so seen at step 80 or 81
    // depending on thread timing; by the commit at 81 on every rank.
    EXPECT_GE(r.first_shift_step, 80);
    EXPECT_LE(r.first_shift_step, 81);
    EXPECT_EQ(r.stats.shift_rounds, 1);
    EXPECT_EQ(r.stats.epoch, runs[0].stats.epoch);
    EXPECT_EQ(r.stats.placement_checksum, runs[0].stats.placement_checksum);
    EXPECT_EQ(r.stats.rounds_aborted, 0) << r.stats.last_abort;
  }
  EXPECT_EQ(runs[0].stats.rounds_started, 3);  // 40, 80 (the shift), the follow-up at 81 + 16
}

TEST_P(ShiftDetection, DynamicOffChecksNothing) {
  PlacementManagerOptions o = shift_options(GetParam());
  o.dynamic = false;
  const auto runs = serve(o, 70, /*shift_at=*/30);
  for (const RankRun& r : runs) {
    EXPECT_EQ(r.stats.shift_checks, 0);
    EXPECT_EQ(r.stats.shift_collectives, 0);
    EXPECT_EQ(r.stats.rounds_started, 0);
    EXPECT_EQ(r.stats.epoch, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ShiftDetection, ::testing::Values(DispatchMode::kShares, DispatchMode::kPerBatch),
                         [](const auto& info) { return info.param == DispatchMode::kShares ? "Shares" : "PerBatch"; });

TEST(ShiftCheck, ResolvedSteps) {
  EXPECT_EQ(resolved_shift_check_steps(0, 100), 0);
  EXPECT_EQ(resolved_shift_check_steps(7, 100), 7);
  EXPECT_EQ(resolved_shift_check_steps(kShiftCheckAuto, 100), 10);
  EXPECT_EQ(resolved_shift_check_steps(kShiftCheckAuto, 1000), 100);
  EXPECT_EQ(resolved_shift_check_steps(kShiftCheckAuto, 10), 1);
  EXPECT_EQ(resolved_shift_check_steps(kShiftCheckAuto, 5), 1);
  EXPECT_EQ(resolved_shift_check_steps(kShiftCheckAuto, 1), 0);
}

TEST(ShiftCheck, ServedMaxOverMeanFollowsTheDispatch) {
  // Two ranks of two slots, expert 0 on both: rank 0 holds {0, 1}, rank 1 {0, 2}.
  PlacementLayout layout;
  layout.num_ranks = 2;
  layout.num_experts = 3;
  layout.slots_per_rank = {2};
  layout.phy2log = {{0, 1, 0, 2}};
  const Placement p = *Placement::create(layout);
  // Expert 0: 60 tokens, expert 1: 30, expert 2: 0. Shares split 0 evenly:
  // rank 0 = 30 + 30, rank 1 = 30: max/mean 60 / 45. The per-batch split
  // moves expert 0 to rank 1: 45 / 45.
  const LoadMatrix load = *LoadMatrix::from_counts(1, 3, {60, 30, 0});
  EXPECT_NEAR(*served_max_over_mean(p, load, DispatchMode::kShares), 60.0 / 45.0, 1e-12);
  EXPECT_NEAR(*served_max_over_mean(p, load, DispatchMode::kPerBatch), 1.0, 1e-12);
  // No load: balanced.
  EXPECT_EQ(*served_max_over_mean(p, *LoadMatrix::from_counts(1, 3, {0, 0, 0}), DispatchMode::kPerBatch), 1.0);
  // Shapes must agree.
  const auto bad = served_max_over_mean(p, *LoadMatrix::from_counts(1, 2, {1, 1}), DispatchMode::kShares);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("placement has 1 layers x 3 experts, load 1 x 2"), std::string::npos);
}

}  // namespace
}  // namespace omni
