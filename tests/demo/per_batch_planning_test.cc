// The runtime with placements shaped for its own per-batch split:
// omni planning for the per-batch split on the last plan_samples aggregated windows
// (PlacementManagerOptions::plan_samples -> PlanInput::samples), serving the
// shipped Qwen1.5-MoE series through the demo. Every (token, expert) output
// is checked against its reference, and the plans must beat the static
// placement. Not part of runtime_tsan: the search is CPU-heavy and its
// threads are those of the protocol already covered there.
#include <gtest/gtest.h>

#include <string>

#include "demo/demo.h"
#include "demo/qwen_workload.h"
#include "omniplacement/core/str_cat.h"

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

// The demo's defaults (12 ranks x 6 slots on 3 hosts, 10 steps x 64 tokens
// per window, per-batch split, omni re-planning every window from the last 6)
// on the bookcorpus series alone, from omni's fit of window 0: the windows
// swing around a stable mix, so a plan for the next interval fits the window
// just planned on worse than the placement in force does. The manager must
// still take it (min_gain 0): judging plans by their fit of that window kept
// the fit of window 0 for the whole phase (dynamic = static, 1.160 in
// `omniplace demo`).
TEST(PerBatchPlanning, DefaultOmniMovesWhenTheWindowsSwingAroundAStableMix) {
  auto workload = trace_workload(std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv",
                                 {"bookcorpus"}, /*steps_per_window=*/10, /*tokens_per_rank=*/64, /*top_k=*/4,
                                 /*seed=*/1, 0, /*last_iteration=*/9);
  ASSERT_TRUE(workload.ok()) << workload.status();
  DemoConfig c;
  c.ranks_per_host = 4;
  c.slots_per_rank = 6;
  c.steps = 100;
  c.manager.planner_spec = "omni";
  c.manager.replan_interval_steps = 10;
  c.manager.commit_cadence_steps = 1;
  c.manager.dispatch_mode = DispatchMode::kPerBatch;
  c.manager.stage_wait = std::chrono::seconds(30);
  auto reports = run_local_demo(12, c, *workload);
  ASSERT_TRUE(reports.ok()) << reports.status();
  const DemoReport& report = (*reports)[0];
  EXPECT_EQ(report.wrong_outputs, 0);
  EXPECT_EQ(report.manager.rounds_aborted, 0) << report.manager.last_abort;
  EXPECT_GE(report.manager.epoch, 3u);
  ASSERT_EQ(report.phases.size(), 1u);
// Measured 1.057 against 1.154 (before the fix: 1.154, no epoch).
  EXPECT_LT(report.phases[0].dynamic, report.phases[0].static_ - 0.05)
      << "static " << report.phases[0].static_ << ", oracle " << report.phases[0].oracle;
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

namespace omni {
namespace {

// The demo's defaults (12 ranks x 6 slots on 3 hosts, 10 steps x 64 tokens
// per window, per-batch split, a re-plan every 5 steps, shift detection at its
// defaults) on the demo's first 20 windows (bookcorpus), with commits at
// load-independent steps: the default omni must beat eplb re-planned from
// scratch while moving a few percent of the experts eplb moves (issue #16's
// demo figures). Measured: omni 1.0292 with 319 experts moved, eplb 1.0327
// with 30,897 (`omniplace demo --steps 200 --stage-wait-ms 60000 --json
// [--planner eplb]` gives the same figures); the whole demo: 1.0293 against
// eplb's 1.035. The margin is smaller than it was at a 10-step interval
// before regular rounds tested their newest steps for a shift (0.014): that
// change helps eplb, which re-plans every expert, more than omni on this
// phase. Not a claim this test makes: where the phase changes every 4-6
// windows, omni lost to eplb in a scratch run (docs/BENCHMARKS.md,
// "Re-planning for the next interval").
TEST(PerBatchPlanning, DemoDefaultsOmniBeatsEplbWithAFewPercentOfItsMoves) {
  auto workload = trace_workload(std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv",
                                 {"bookcorpus"}, /*steps_per_window=*/10, /*tokens_per_rank=*/64, /*top_k=*/4,
                                 /*seed=*/1);
  ASSERT_TRUE(workload.ok()) << workload.status();
  auto run = [&](const std::string& planner) -> StatusOr<DemoReport> {
    DemoConfig c;
    c.ranks_per_host = 4;
    c.slots_per_rank = 6;
    c.steps = 200;
    c.manager.planner_spec = planner;
    c.manager.replan_interval_steps = 5;
    c.manager.commit_cadence_steps = 1;
    c.manager.dispatch_mode = DispatchMode::kPerBatch;
    c.manager.stage_wait = std::chrono::seconds(30);
    OMNI_ASSIGN_OR_RETURN(auto reports, run_local_demo(12, c, *workload));
    return reports[0];
  };
  auto omni = run("omni");
  ASSERT_TRUE(omni.ok()) << omni.status();
  auto eplb = run("eplb");
  ASSERT_TRUE(eplb.ok()) << eplb.status();
  for (const DemoReport* r : {&*omni, &*eplb}) {
    EXPECT_EQ(r->wrong_outputs, 0);
    EXPECT_EQ(r->manager.rounds_aborted, 0) << r->manager.last_abort;
  }
  const std::string figures = str_cat("omni ", omni->overall.dynamic, " (", omni->manager.experts_moved, " moved), eplb ",
                                      eplb->overall.dynamic, " (", eplb->manager.experts_moved, " moved), oracle ",
                                      omni->overall.oracle);
  EXPECT_LT(omni->overall.dynamic, eplb->overall.dynamic - 0.002) << figures;
  EXPECT_LT(omni->overall.dynamic, 1.031) << figures;  // issue #16's 1.03, on this phase
  EXPECT_LE(omni->manager.experts_moved * 20, eplb->manager.experts_moved) << figures;
}

}  // namespace
}  // namespace omni
