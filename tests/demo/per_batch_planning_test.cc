// The runtime with placements shaped for its own per-batch split:
// omni planning for the per-batch split on the last plan_samples aggregated windows
// (PlacementManagerOptions::plan_samples -> PlanInput::samples), serving the
// shipped Qwen1.5-MoE series through the demo. Every (token, expert) output
// is checked against its reference, and the plans must beat the static
// placement. Not part of runtime_tsan: the search is CPU-heavy and its
// threads are those of the protocol already covered there.
#include <gtest/gtest.h>

#include "demo/demo.h"
#include "demo/qwen_workload.h"

namespace omni {
namespace {

TEST(PerBatchPlanning, ShapedPlansServeCorrectlyAndBeatTheStaticPlacement) {
  auto workload = testing::qwen_workload({"bookcorpus", "wikitext"}, 5, /*seed=*/9);  // 6 iterations each
  ASSERT_TRUE(workload.ok()) << workload.status();
  DemoConfig c;
  c.ranks_per_host = 2;
  c.slots_per_rank = 12;  // 6 ranks x 12 slots: 72 slots for 60 experts
  c.steps = 12 * 4;
  // A capped search keeps each rank's plan of 12 layers well under a second.
  c.manager.planner_spec = "omni";  // told the dispatch by the manager (PlanInput::serving)
  c.manager.plan_samples = 3;
  c.manager.replan_interval_steps = 4;
  c.manager.commit_cadence_steps = 1;
  c.manager.dispatch_mode = DispatchMode::kPerBatch;
  c.manager.stage_wait = std::chrono::seconds(20);
  auto reports = run_local_demo(6, c, *workload);
  ASSERT_TRUE(reports.ok()) << reports.status();
  const DemoReport& report = (*reports)[0];
  EXPECT_EQ(report.wrong_outputs, 0);
  EXPECT_EQ(report.misrouted, 0);
  EXPECT_GT(report.outputs_checked, 0);
  EXPECT_GE(report.manager.epoch, 3u);
  EXPECT_EQ(report.manager.rounds_aborted, 0) << report.manager.last_abort;
  EXPECT_LT(report.overall.dynamic, report.overall.static_);
}

TEST(PerBatchPlanning, RejectsZeroPlanSamples) {
  auto routing = RoutingWorkload::create({*LoadMatrix::from_counts(1, 4, {4, 3, 2, 1})}, 1, 4, 2, 1);
  ASSERT_TRUE(routing.ok());
  const DemoWorkload workload{*routing, {"w"}};
  DemoConfig c;
  c.ranks_per_host = 2;
  c.slots_per_rank = 2;
  c.steps = 2;
  c.manager.plan_samples = 0;
  auto reports = run_local_demo(2, c, workload);
  ASSERT_FALSE(reports.ok());
  EXPECT_NE(reports.status().message().find("plan_samples 0"), std::string::npos) << reports.status();
}

}  // namespace
}  // namespace omni
