// Tests of the demo's result table: max/mean per window and layer, windows
// not reached left out, phases of consecutive equal names, the oracle column
// from a plan on each window's own counts, and the sums over the ranks.
#include "demo/phase_table.h"

#include <gtest/gtest.h>

#include "omniplacement/core/metrics.h"
#include "omniplacement/dispatch/batch_split.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

using namespace std::chrono_literals;

TEST(PhaseTable, MaxOverMean) {
  EXPECT_DOUBLE_EQ(max_over_mean(std::vector<int64_t>{1, 3}), 1.5);
  EXPECT_DOUBLE_EQ(max_over_mean(std::vector<int64_t>{2, 2, 2}), 1.0);
  EXPECT_DOUBLE_EQ(max_over_mean(std::vector<int64_t>{0, 0}), 1.0);  // nothing served
}

// 3 windows, 2 layers, 2 ranks, 3 experts; window 1 is never reached.
WindowLoads example() {
  WindowLoads w(3, 2, 2, 3);
  auto set = [](int64_t* row, std::vector<int64_t> v) { std::copy(v.begin(), v.end(), row); };
  set(w.mutable_dynamic_row(0, 0), {3, 1});  // 1.5
  set(w.mutable_dynamic_row(0, 1), {2, 2});  // 1.0
  set(w.mutable_static_row(0, 0), {4, 0});   // 2.0
  set(w.mutable_static_row(0, 1), {1, 3});   // 1.5
  set(w.mutable_counts_row(0, 0), {2, 1, 1});
  set(w.mutable_counts_row(0, 1), {1, 1, 2});
  set(w.mutable_dynamic_row(2, 0), {1, 1});  // 1.0
  set(w.mutable_dynamic_row(2, 1), {3, 0});  // 2.0
  set(w.mutable_static_row(2, 0), {2, 0});   // 2.0
  set(w.mutable_static_row(2, 1), {3, 0});   // 2.0
  set(w.mutable_counts_row(2, 0), {0, 2, 0});
  set(w.mutable_counts_row(2, 1), {3, 0, 0});
  return w;
}

TEST(PhaseTable, WindowsNotReachedAreLeftOutAndPhasesAverageTheirWindows) {
  const WindowLoads w = example();
  EXPECT_EQ(w.window_tokens(0), 8);
  EXPECT_EQ(w.window_tokens(1), 0);
  auto t = make_phase_table(w, {"a", "a", "b"}, OraclePricing{});
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->phases.size(), 2u);
  EXPECT_EQ(t->phases[0].name, "a");
  EXPECT_EQ(t->phases[0].num_windows, 1);  // window 1 had no tokens
  EXPECT_DOUBLE_EQ(t->phases[0].dynamic, 1.25);
  EXPECT_DOUBLE_EQ(t->phases[0].static_, 1.75);
  EXPECT_DOUBLE_EQ(t->phases[0].oracle, 0.0);  // no oracle planner
  EXPECT_EQ(t->phases[1].name, "b");
  EXPECT_DOUBLE_EQ(t->phases[1].dynamic, 1.5);
  EXPECT_DOUBLE_EQ(t->phases[1].static_, 2.0);
  EXPECT_EQ(t->overall.name, "all");
  EXPECT_EQ(t->overall.num_windows, 2);
  EXPECT_DOUBLE_EQ(t->overall.dynamic, 1.375);
  EXPECT_DOUBLE_EQ(t->overall.static_, 1.875);
  // Phases are runs of one name over the windows reached: "b" (window 1) was
  // not, so windows 0 and 2 form one phase.
  t = make_phase_table(w, {"a", "b", "a"}, OraclePricing{});
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->phases.size(), 1u);
  EXPECT_EQ(t->phases[0].num_windows, 2);
  EXPECT_DOUBLE_EQ(t->phases[0].dynamic, 1.375);
  EXPECT_FALSE(make_phase_table(w, {"a", "b"}, OraclePricing{}).ok());
  // Nothing reached: every figure is 1.0.
  t = make_phase_table(WindowLoads(2, 1, 2, 2), {"a", "b"}, OraclePricing{});
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->phases.empty());
  EXPECT_DOUBLE_EQ(t->overall.dynamic, 1.0);
}

TEST(PhaseTable, OracleIsAPlanOnEachWindowsOwnCounts) {
  const WindowLoads w = example();
  auto planner = make_planner("eplb");
  ASSERT_TRUE(planner.ok());
  auto topo = Topology::uniform(2, 2);
  OraclePricing oracle;
  oracle.planner = planner->get();
  oracle.input.num_ranks = 2;
  oracle.input.slots_per_rank = {2};
  oracle.input.topology = &*topo;
  auto t = make_phase_table(w, {"a", "a", "b"}, oracle);
  ASSERT_TRUE(t.ok()) << t.status();
  for (int32_t win : {0, 2}) {
    std::vector<int64_t> counts;
    for (LayerId l = 0; l < 2; ++l)
      for (int64_t v : w.counts_row(win, l)) counts.push_back(v);
    auto load = LoadMatrix::from_counts(2, 3, counts);
    PlanInput in = oracle.input;
    in.load = &*load;
    auto plan = (*planner)->plan(in);
    ASSERT_TRUE(plan.ok());
    const double want = placement_balance(plan->placement, *load)->mean_max_over_mean;
    EXPECT_DOUBLE_EQ(t->phases[win == 0 ? 0 : 1].oracle, want) << win;
  }
  // Per-batch pricing: the window's tokens split over the plan's replica
  // ranks by the runtime's water-fill (whole tokens), layer by layer.
  oracle.mode = DispatchMode::kPerBatch;
  auto pb = make_phase_table(w, {"a", "a", "b"}, oracle);
  ASSERT_TRUE(pb.ok()) << pb.status();
  std::vector<int64_t> counts;
  for (LayerId l = 0; l < 2; ++l)
    for (int64_t v : w.counts_row(0, l)) counts.push_back(v);
  auto load = LoadMatrix::from_counts(2, 3, counts);
  PlanInput in = oracle.input;
  in.load = &*load;
  auto plan = (*planner)->plan(in);
  ASSERT_TRUE(plan.ok());
  double want = 0;
  for (LayerId l = 0; l < 2; ++l) {
    auto rl = balance_batch_loads(2, layer_replica_ranks(plan->placement, l), w.counts_row(0, l));
    ASSERT_TRUE(rl.ok());
    want += max_over_mean(*rl);
  }
  EXPECT_DOUBLE_EQ(pb->phases[0].oracle, want / 2);
}

TEST(PhaseTable, AllReduceSumsEveryRanksLoads) {
  std::vector<int64_t> got;
  const auto statuses = LocalGroup::run(3, [&](Transport& t) -> Status {
    WindowLoads w(1, 1, 3, 2);
    w.mutable_dynamic_row(0, 0)[t.rank()] = 1 + t.rank();
    w.mutable_static_row(0, 0)[0] = 10;
    w.mutable_counts_row(0, 0)[1] = 2;
    OMNI_RETURN_IF_ERROR(w.all_reduce(t, 10s));
    if (t.rank() == 0) {
      const auto d = w.dynamic_row(0, 0);
      got.assign(d.begin(), d.end());
      got.push_back(w.static_row(0, 0)[0]);
      got.push_back(w.counts_row(0, 0)[1]);
    }
    return ok_status();
  });
  for (const Status& s : statuses) ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(got, (std::vector<int64_t>{1, 2, 3, 30, 6}));
}

}  // namespace
}  // namespace omni
