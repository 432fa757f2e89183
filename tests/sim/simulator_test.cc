#include "omniplacement/sim/simulator.h"

#include <gtest/gtest.h>

#include "sim/greedy_planner.h"

namespace omni::sim {
namespace {

using testing::greedy_planner;

// 2 layers x 8 experts on 4 ranks (2 hosts), 3 slots per rank.
constexpr int32_t kRanks = 4, kSpr = 3;

WorkloadParams drifting() {
  WorkloadParams p;
  p.num_layers = 2;
  p.num_experts = 8;
  p.top_k = 2;
  p.tokens_per_step = 256;
  p.skew_param = 1.2;
  p.phase_period = 40;
  p.phase_fraction = 1.0;
  p.seed = 3;
  return p;
}

std::vector<PolicySpec> all_policies() {
  auto plan = greedy_planner(kRanks, kSpr);
  return {PolicySpec::fixed("contiguous", *Placement::contiguous(2, kRanks, 8, kSpr)),
          PolicySpec::static_plan("static", plan), PolicySpec::dynamic("dynamic", plan),
          PolicySpec::oracle("oracle", plan)};
}

TEST(SimulatorTest, FixedPolicyStepsAreTheCostModelsAndTheBoundIsBelow) {
  std::vector<LoadMatrix> windows = {*LoadMatrix::from_counts(2, 8, {8, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9}),
                                     *LoadMatrix::from_counts(2, 8, {1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2})};
  // Three steps of each load.
  auto trace = WindowTrace::create({windows[0], windows[0], windows[0], windows[1], windows[1], windows[1]}, 1);
  const Placement contiguous = *Placement::contiguous(2, kRanks, 8, kSpr);
  const Topology topo = *Topology::uniform(kRanks, 2);
  SimOptions opts;
  opts.interval_steps = 2;
  auto r = simulate(*trace, topo, {PolicySpec::fixed("contiguous", contiguous)}, opts);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->num_steps, 6);
  ASSERT_EQ(r->policies.size(), 2u);  // the policy and the lower bound
  ASSERT_EQ(r->steps.size(), 12u);
  const CostModel model = *CostModel::create(contiguous, topo, opts.cost);
  const double t0 = model.step_cost(windows[0])->time_s, t1 = model.step_cost(windows[1])->time_s;
  for (int64_t s = 0; s < 6; ++s) {
    EXPECT_DOUBLE_EQ(r->steps[static_cast<size_t>(2 * s)].time_s, s < 3 ? t0 : t1) << "step " << s;
    EXPECT_LE(r->steps[static_cast<size_t>(2 * s + 1)].time_s, r->steps[static_cast<size_t>(2 * s)].time_s);
  }
  EXPECT_DOUBLE_EQ(r->policies[0].mean_step_s, (t0 + t1) / 2);
  EXPECT_DOUBLE_EQ(r->policies[0].p99_step_s, std::max(t0, t1));
  EXPECT_EQ(r->policies[0].moved_bytes, 0);
  EXPECT_EQ(r->policies[1].kind, "bound");
}

TEST(SimulatorTest, PoliciesSideBySideOnADriftingTrace) {
  auto trace = SyntheticTrace::create(drifting(), 200);
  const Topology topo = *Topology::uniform(kRanks, 2);
  SimOptions opts;
  opts.interval_steps = 20;
  auto r = simulate(*trace, topo, all_policies(), opts);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& contiguous = r->policies[0];
  const auto& stat = r->policies[1];
  const auto& dyn = r->policies[2];
  const auto& oracle = r->policies[3];
  const auto& bound = r->policies[4];
  // Planned every interval: the static once, the dynamic at the start and after
  // each of the first 9 intervals, the oracle on each of the 10.
  EXPECT_EQ(contiguous.replans, 0);
  EXPECT_EQ(stat.replans, 1);
  EXPECT_EQ(dyn.replans, 10);
  EXPECT_EQ(oracle.replans, 10);
  // Balance ordering: planning on the very window served beats everything; the
  // phase shifts every 40 steps make the static placement decay.
  EXPECT_LT(oracle.mean_max_over_mean, stat.mean_max_over_mean);
  EXPECT_LT(dyn.mean_max_over_mean, stat.mean_max_over_mean);
  EXPECT_LT(stat.mean_max_over_mean, contiguous.mean_max_over_mean);
  EXPECT_LE(bound.mean_max_over_mean, oracle.mean_max_over_mean + 1e-12);
  EXPECT_LE(bound.mean_step_s, oracle.mean_step_s);
  // Moves: the dynamic policy pays for them, the oracle's are reported only.
  EXPECT_GT(dyn.moved_bytes, 0);
  EXPECT_GT(dyn.migration_s, 0);
  EXPECT_GT(oracle.moved_bytes, 0);
  EXPECT_EQ(oracle.migration_s, 0);
  EXPECT_EQ(stat.moved_bytes, 0);
  // Moved experts count the copies: bytes are copies x expert bytes.
  EXPECT_GT(dyn.moved_experts, 0);
  EXPECT_DOUBLE_EQ(dyn.moved_bytes, static_cast<double>(dyn.moved_experts) * opts.cost.expert_bytes);
  EXPECT_EQ(stat.moved_experts, 0);
  // After the first interval (the static and dynamic policies' calibration
  // run, planned on the very load it serves) the static placement is worse.
  double stat_later = 0;
  for (int64_t s = 20; s < r->num_steps; ++s) stat_later += r->steps[static_cast<size_t>(s) * r->policies.size() + 1].max_over_mean;
  EXPECT_NEAR(stat.mean_max_over_mean_after_first, stat_later / static_cast<double>(r->num_steps - 20), 1e-12);
  EXPECT_GT(stat.mean_max_over_mean_after_first, stat.mean_max_over_mean);
  // Stalls fall on the first step of an interval, and only for the dynamic policy.
  const size_t rows = r->policies.size();
  for (int64_t s = 0; s < r->num_steps; ++s) {
    const StepRecord& d = r->steps[static_cast<size_t>(s) * rows + 2];
    EXPECT_EQ(d.step, s);
    if (s == 0 || s % 20 != 0) {
      EXPECT_EQ(d.migration_s, 0) << "step " << s;
    }
    EXPECT_GE(d.time_s, d.compute_s + d.comm_s + d.migration_s - 1e-15);
  }
}

TEST(SimulatorTest, DeterministicAndMaxStepsStopsEarly) {
  const Topology topo = *Topology::uniform(kRanks, 2);
  SimOptions opts;
  opts.interval_steps = 7;
  opts.max_steps = 30;
  int64_t last_progress = 0;
  opts.progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 30);
    EXPECT_GT(done, last_progress);
    last_progress = done;
  };
  auto t1 = SyntheticTrace::create(drifting(), 100);
  auto t2 = SyntheticTrace::create(drifting(), 100);
  auto a = simulate(*t1, topo, all_policies(), opts);
  EXPECT_EQ(last_progress, 30);
  opts.progress = nullptr;
  auto b = simulate(*t2, topo, all_policies(), opts);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->num_steps, 30);
  ASSERT_EQ(a->steps.size(), b->steps.size());
  for (size_t i = 0; i < a->steps.size(); ++i) EXPECT_EQ(a->steps[i].time_s, b->steps[i].time_s) << i;
}

TEST(SimulatorTest, ReportsPlannerErrorsWithPolicyAndStep) {
  auto trace = SyntheticTrace::create(drifting(), 50);
  const Topology topo = *Topology::uniform(kRanks, 2);
  SimOptions opts;
  opts.interval_steps = 10;
  int calls = 0;
  PlanFn flaky = [&, plan = greedy_planner(kRanks, kSpr)](const LoadMatrix& w, const Placement* cur,
                                                                   const std::vector<LoadMatrix>&) -> StatusOr<Placement> {
    if (++calls == 3) return invalid_argument_error("no luck");
    return plan(w, cur, {});
  };
  auto r = simulate(*trace, topo, {PolicySpec::dynamic("flaky", flaky)}, opts);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("policy 'flaky' at step 20"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("no luck"), std::string::npos);

  PlanFn wrong = [](const LoadMatrix&, const Placement*, const std::vector<LoadMatrix>&) { return Placement::contiguous(2, 2, 8, 4); };
  auto trace2 = SyntheticTrace::create(drifting(), 50);
  auto w = simulate(*trace2, topo, {PolicySpec::static_plan("wrong", wrong)}, opts);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("policy 'wrong'"), std::string::npos) << w.status();

  auto trace3 = SyntheticTrace::create(drifting(), 50);
  EXPECT_FALSE(simulate(*trace3, topo, {}, opts).ok());
  PolicySpec no_plan;
  no_plan.name = "empty";
  no_plan.kind = PolicyKind::kDynamic;
  EXPECT_FALSE(simulate(*trace3, topo, {no_plan}, opts).ok());
  opts.interval_steps = 0;
  EXPECT_FALSE(simulate(*trace3, topo, all_policies(), opts).ok());
}

TEST(SimulatorTest, BackgroundMigrationDelaysTheSwitchInsteadOfStalling) {
  const Topology topo = *Topology::uniform(kRanks, 2);
  SimOptions opts;
  opts.interval_steps = 20;
  opts.max_steps = 60;
  auto run = [&](MigrationMode mode, double compute_s_per_token) {
    opts.migration_mode = mode;
    opts.cost.compute_s_per_token = compute_s_per_token;
    WorkloadParams fast = drifting();
    fast.phase_period = 10;  // every interval sees a new phase: every re-plan moves weights
    auto trace = SyntheticTrace::create(fast, 60);
    auto r = simulate(*trace, topo, {PolicySpec::dynamic("dynamic", greedy_planner(kRanks, kSpr))}, opts);
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  };
  const SimResult stall = run(MigrationMode::kStall, 1e-3);
  const SimResult slow_links = run(MigrationMode::kBackground, 1e-3);  // 1 ms per token: one step covers a move
  const SimResult no_idle = run(MigrationMode::kBackground, 0);         // links never idle: no move completes
  ASSERT_GT(stall.policies[0].moved_bytes, 0);
  EXPECT_GT(stall.policies[0].migration_s, 0);
  EXPECT_EQ(slow_links.policies[0].migration_s, 0);
  EXPECT_EQ(slow_links.policies[0].moved_bytes, stall.policies[0].moved_bytes);
  // Stall mode switches before step 40; background mode one step later. (The
  // re-plan before step 20 sees the same interval as the start: nothing moves.)
  const size_t rows = stall.policies.size();
  EXPECT_GT(stall.steps[40 * rows].moved_bytes, 0);
  EXPECT_EQ(slow_links.steps[40 * rows].moved_bytes, 0);
  EXPECT_GT(slow_links.steps[41 * rows].moved_bytes, 0);
  // A plan still in flight at the next re-plan is replaced; its bytes count once.
  EXPECT_EQ(no_idle.policies[0].migration_s, 0);
  EXPECT_LE(no_idle.policies[0].moved_bytes, stall.policies[0].moved_bytes);
  EXPECT_EQ(*parse_migration_mode("background"), MigrationMode::kBackground);
  EXPECT_FALSE(parse_migration_mode("later").ok());
}

TEST(SimulatorTest, DynamicPoliciesPlanOnTheLastHistoryIntervals) {
  std::vector<LoadMatrix> windows;
  for (int64_t v = 1; v <= 4; ++v) windows.push_back(*LoadMatrix::from_counts(1, 4, {v, 0, 0, 0}));
  auto trace = WindowTrace::create(windows, 1);
  std::vector<double> seen;
  PlanFn record = [&](const LoadMatrix& w, const Placement*, const std::vector<LoadMatrix>&) {
    seen.push_back(w.layer_total(0));
    return Placement::contiguous(1, 2, 4, 2);
  };
  SimOptions opts;
  opts.interval_steps = 1;
  opts.history_intervals = 2;
  auto r = simulate(*trace, *Topology::uniform(2, 1), {PolicySpec::dynamic("recorder", record)}, opts);
  ASSERT_TRUE(r.ok()) << r.status();
  // Start on window 0; then after step 0: {w0}; after 1: w0 + w1; after 2: w1 + w2.
  EXPECT_EQ(seen, (std::vector<double>{1, 1, 3, 5}));
  opts.history_intervals = 0;
  auto trace2 = WindowTrace::create(windows, 1);
  EXPECT_FALSE(simulate(*trace2, *Topology::uniform(2, 1), {PolicySpec::dynamic("recorder", record)}, opts).ok());
}

}  // namespace
}  // namespace omni::sim

namespace omni::sim {
namespace {

// 30 steps of one load, then 30 of another with the popularity reversed: a
// phase shift in the middle of the interval [20, 40).
StatusOr<WindowTrace> shifting_trace() {
  std::vector<double> a(16), b(16);
  for (int32_t i = 0; i < 16; ++i) {
    a[static_cast<size_t>(i)] = 30.0 * (1 + (i % 8) * (i % 8));
    b[static_cast<size_t>(i)] = 30.0 * (1 + (7 - i % 8) * (7 - i % 8));
  }
  return WindowTrace::create({*LoadMatrix::from_weights(2, 8, a), *LoadMatrix::from_weights(2, 8, b)}, 30);
}

TEST(SimulatorTest, ShiftDetectionReplansAtOnceAndThenPlansOnTheStepsSinceTheShift) {
  const Topology topo = *Topology::uniform(kRanks, 2);
  const std::vector<PolicySpec> policies = {PolicySpec::dynamic("dynamic", greedy_planner(kRanks, kSpr))};
  SimOptions opts;
  opts.interval_steps = 20;
  auto plain_trace = shifting_trace();
  ASSERT_TRUE(plain_trace.ok()) << plain_trace.status();
  auto plain = simulate(*plain_trace, topo, policies, opts);
  opts.shift_check_steps = 5;
  opts.shift_threshold = 0.05;
  auto trace = shifting_trace();
  auto r = simulate(*trace, topo, policies, opts);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(r.ok()) << r.status();
  const size_t rows = r->policies.size();
  auto ratio = [&](const SimResult& x, int64_t s) { return x.steps[static_cast<size_t>(s) * rows].max_over_mean; };
  // The shift at step 30 is seen after steps 30-34: one re-plan, on those steps.
  EXPECT_EQ(plain->policies[0].shift_replans, 0);
  EXPECT_EQ(r->policies[0].shift_replans, 1);
  EXPECT_EQ(r->policies[0].replans, plain->policies[0].replans + 1);
  for (int64_t s = 0; s < 35; ++s) EXPECT_DOUBLE_EQ(ratio(*r, s), ratio(*plain, s)) << "step " << s;
  EXPECT_LT(ratio(*r, 35), ratio(*r, 34) - 0.05);
  // Every later step is served by the plan made on the new load alone: the
  // re-plan at step 40 reads steps 35-39 only (the plain run mixes both phases).
  for (int64_t s = 36; s < 60; ++s) EXPECT_DOUBLE_EQ(ratio(*r, s), ratio(*r, 35)) << "step " << s;
  EXPECT_LT(r->policies[0].mean_step_s, plain->policies[0].mean_step_s);
  // A stationary load never triggers it.
  auto flat = WindowTrace::create({*LoadMatrix::from_weights(2, 8, std::vector<double>(16, 30.0))}, 60);
  auto still = simulate(*flat, topo, policies, opts);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->policies[0].shift_replans, 0);
  opts.shift_check_steps = -1;
  EXPECT_FALSE(simulate(*flat, topo, policies, opts).ok());
}

}  // namespace
}  // namespace omni::sim
