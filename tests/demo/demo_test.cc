// End-to-end: the demo on the shipped Qwen1.5-MoE series over LocalTransport
// serves every (token, expert) correctly across at least 20 epoch commits,
// and dynamic placement beats the static one on the shifting workload.
#include "demo/demo.h"

#include <gtest/gtest.h>

#include "demo/qwen_workload.h"

namespace omni {
namespace {

// bookcorpus, wikitext, wmt19: 8 iterations each.
StatusOr<DemoWorkload> qwen_workload() {
  return testing::qwen_workload({"bookcorpus", "wikitext", "wmt19"}, 7, /*seed=*/5);
}

TEST(Demo, ZeroWrongOutputsOverTwentyCommits) {
  auto workload = qwen_workload();
  ASSERT_TRUE(workload.ok()) << workload.status();
  DemoConfig c;
  c.ranks_per_host = 3;
  c.slots_per_rank = 12;  // 6 ranks x 12 slots: 72 slots for 60 experts
  c.steps = 24 * 4;
  c.manager.planner_spec = "eplb";
  c.manager.replan_interval_steps = 4;
  c.manager.commit_cadence_steps = 1;
  c.manager.dispatch_mode = DispatchMode::kPerBatch;
  c.manager.layers_per_commit = 6;  // two batches per round
  // The count of commits below must not depend on how loaded the machine is:
  // each engine waits (bounded) for its own staged batch before voting.
  c.manager.stage_wait = std::chrono::seconds(10);
  auto reports = run_local_demo(6, c, *workload);
  ASSERT_TRUE(reports.ok()) << reports.status();
  const DemoReport& report = (*reports)[0];
  EXPECT_EQ(report.wrong_outputs, 0);
  EXPECT_EQ(report.misrouted, 0);
  EXPECT_EQ(report.outputs_checked, int64_t{6} * 96 * 12 * 16 * 4);
  EXPECT_GE(report.manager.epoch, 20u);
  EXPECT_EQ(report.manager.rounds_aborted, 0) << report.manager.last_abort;
  ASSERT_EQ(report.phases.size(), 3u);
  EXPECT_LT(report.overall.dynamic, report.overall.static_);
  EXPECT_GT(report.overall.oracle, 0.99);
}

}  // namespace
}  // namespace omni

namespace omni {
namespace {

TEST(Demo, RankCrashIsDetectedFailedOverRestoredAndRebuiltWithZeroWrongOutputs) {
  auto workload = qwen_workload();
  ASSERT_TRUE(workload.ok()) << workload.status();
  DemoConfig c;
  c.ranks_per_host = 3;
  c.slots_per_rank = 12;
  c.steps = 24 * 4;
  c.manager.planner_spec = "eplb";
  c.manager.replan_interval_steps = 4;
  c.manager.commit_cadence_steps = 1;
  c.manager.dispatch_mode = DispatchMode::kShares;
  c.manager.stage_wait = std::chrono::seconds(10);
  c.fail_ranks = {4};
  c.fail_at_step = 30;
  // Generous: the machine is shared, and TSan slows every thread (300 ms gave
  // a false failure there under load).
  c.heartbeat_timeout = std::chrono::milliseconds(1000);
  c.backup = "safetensors";
  auto reports = run_local_demo(6, c, *workload);
  ASSERT_TRUE(reports.ok()) << reports.status();
  const DemoReport& report = (*reports)[0];
  EXPECT_TRUE((*reports)[4].rank_failed);
  for (RankId q : {0, 1, 2, 3, 5}) EXPECT_FALSE((*reports)[static_cast<size_t>(q)].rank_failed) << q;
  const DemoFailure& f = report.failure;
  ASSERT_TRUE(f.injected);
  EXPECT_EQ(f.declared_failed, std::vector<RankId>{4});
  EXPECT_EQ(report.wrong_outputs, 0);
  EXPECT_EQ(report.misrouted, 0);
  EXPECT_GT(f.detection_ms, 0);
  EXPECT_GE(f.failover_ms, 0);
  EXPECT_GT(f.experts_lost, 0);  // rank 4 held the only replica of some experts
  EXPECT_EQ(f.experts_restored, f.experts_lost);
  EXPECT_GE(f.restore_ms, f.failover_ms);
  EXPECT_GE(f.redundancy_ms, f.restore_ms);
  EXPECT_GT(f.requests_reserved, 0);  // rank 4's requests of the crash step, served again
  EXPECT_NE(f.backup.find("safetensors:"), std::string::npos);
}

}  // namespace
}  // namespace omni
