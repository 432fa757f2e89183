// Tests of the commit agreement: vote encoding and the decision table.
#include "omniplacement/runtime/commit_protocol.h"

#include <gtest/gtest.h>

#include <vector>

namespace omni {
namespace {

// The element-wise max of encoded votes, as an all-reduce would compute it.
VoteRange reduce(const std::vector<Vote>& votes) {
  std::array<int64_t, kVoteWords> acc{};
  acc.fill(INT64_MIN);
  for (const Vote& v : votes) {
    std::array<int64_t, kVoteWords> buf{};
    encode_vote(v, buf);
    for (size_t i = 0; i < kVoteWords; ++i) acc[i] = std::max(acc[i], buf[i]);
  }
  return decode_votes(acc);
}

Vote vote(int64_t round, int64_t batch, StagePhase phase, int64_t plan = 7, int64_t placement = 3, int64_t last = 0) {
  Vote v;
  v.round = round;
  v.batch = batch;
  v.phase = phase;
  v.plan_checksum = plan;
  v.placement_checksum = placement;
  v.last_batch = last;
  return v;
}

TEST(CommitProtocol, EncodeDecodeGivesMinAndMax) {
  auto r = reduce({vote(4, 1, StagePhase::kReady, 9), vote(4, 2, StagePhase::kWorking, 5)});
  EXPECT_EQ(r.min.batch, 1);
  EXPECT_EQ(r.max.batch, 2);
  EXPECT_EQ(r.min.phase, StagePhase::kWorking);
  EXPECT_EQ(r.max.phase, StagePhase::kReady);
  EXPECT_EQ(r.min.plan_checksum, 5);
  EXPECT_EQ(r.max.plan_checksum, 9);
  EXPECT_FALSE(r.unanimous());
  EXPECT_TRUE(reduce({vote(1, 0, StagePhase::kIdle)}).unanimous());
  EXPECT_EQ(vote_checksum(~uint64_t{0}), INT64_MAX);
}

struct Case {
  const char* name;
  bool active;
  int64_t waited;
  std::vector<Vote> votes;
  Decision expect;
  AbortReason reason = AbortReason::kNone;
  bool last = false;
};

class DecideTable : public ::testing::TestWithParam<Case> {};

TEST_P(DecideTable, Decides) {
  const Case& c = GetParam();
  RoundState s;
  s.active = c.active;
  s.round = 5;
  s.batch = 1;
  s.waited_steps = c.waited;
  s.timeout_steps = 100;
  auto d = decide(reduce(c.votes), s);
  EXPECT_EQ(decision_name(d.decision), decision_name(c.expect));
  EXPECT_EQ(abort_reason_name(d.reason), abort_reason_name(c.reason));
  EXPECT_EQ(d.last_batch, c.last);
}

INSTANTIATE_TEST_SUITE_P(
    Votes, DecideTable,
    ::testing::Values(
        Case{"all_idle_starts_a_round", false, 0, {vote(4, 0, StagePhase::kIdle), vote(4, 0, StagePhase::kIdle)},
             Decision::kStartRound},
        Case{"a_busy_planner_postpones_the_start", false, 0,
             {vote(4, 0, StagePhase::kIdle), vote(4, 0, StagePhase::kWorking)}, Decision::kWait},
        Case{"diverged_placement_never_starts", false, 0,
             {vote(4, 0, StagePhase::kIdle, 7, 3), vote(4, 0, StagePhase::kIdle, 7, 4)}, Decision::kWait,
             AbortReason::kPlacementDiverged},
        Case{"all_ready_commits", true, 0, {vote(5, 1, StagePhase::kReady), vote(5, 1, StagePhase::kReady)},
             Decision::kCommit},
        Case{"all_ready_on_last_batch_commits_and_ends", true, 0,
             {vote(5, 1, StagePhase::kReady, 7, 3, 1), vote(5, 1, StagePhase::kReady, 7, 3, 1)}, Decision::kCommit,
             AbortReason::kNone, true},
        Case{"one_rank_still_working_waits", true, 3,
             {vote(5, 1, StagePhase::kReady), vote(5, 1, StagePhase::kWorking)}, Decision::kWait},
        Case{"one_rank_not_started_waits", true, 3, {vote(5, 1, StagePhase::kReady), vote(4, 0, StagePhase::kIdle)},
             Decision::kWait},
        Case{"waiting_past_the_timeout_aborts", true, 100,
             {vote(5, 1, StagePhase::kReady), vote(5, 1, StagePhase::kWorking)}, Decision::kAbort,
             AbortReason::kTimeout},
        Case{"a_failed_rank_aborts", true, 0, {vote(5, 1, StagePhase::kReady), vote(5, 1, StagePhase::kFailed)},
             Decision::kAbort, AbortReason::kFailed},
        Case{"different_plans_abort", true, 0,
             {vote(5, 1, StagePhase::kReady, 7), vote(5, 1, StagePhase::kReady, 8)}, Decision::kAbort,
             AbortReason::kMismatch},
        Case{"ready_against_no_change_aborts", true, 0,
             {vote(5, 1, StagePhase::kReady), vote(5, 1, StagePhase::kNoChange)}, Decision::kAbort,
             AbortReason::kMismatch},
        Case{"all_no_change_finishes", true, 0,
             {vote(5, 1, StagePhase::kNoChange), vote(5, 1, StagePhase::kNoChange)}, Decision::kFinish},
        Case{"ready_on_another_batch_aborts", true, 0,
             {vote(5, 2, StagePhase::kReady), vote(5, 2, StagePhase::kReady)}, Decision::kAbort,
             AbortReason::kMismatch},
        Case{"diverged_placement_aborts_a_round", true, 0,
             {vote(5, 1, StagePhase::kReady, 7, 3), vote(5, 1, StagePhase::kReady, 7, 9)}, Decision::kAbort,
             AbortReason::kPlacementDiverged}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace omni
