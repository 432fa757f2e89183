// The pure failover decisions (runtime/failover.h): which reported ranks are
// news, where lost experts are reloaded, and re-planning on the survivors.
#include "omniplacement/runtime/failover.h"

#include <gtest/gtest.h>

#include "omniplacement/core/coverage.h"
#include "omniplacement/core/placement_ops.h"
#include "omniplacement/runtime/migration_executor.h"

namespace omni {
namespace {

struct NewsCase {
  const char* name;
  std::vector<RankId> reported, already;
  std::vector<RankId> want;  // empty with error != "" for a refusal
  const char* error;
};

class NewlyFailedTest : public ::testing::TestWithParam<NewsCase> {};

TEST_P(NewlyFailedTest, Table) {
  const NewsCase& c = GetParam();
  auto got = newly_failed(c.reported, c.already, /*self=*/2, /*num_ranks=*/6);
  if (*c.error) {
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(got.status().message().find(c.error), std::string::npos) << got.status();
  } else {
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, c.want);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, NewlyFailedTest,
    ::testing::Values(NewsCase{"OneNew", {4}, {}, {4}, ""},
                      NewsCase{"SortedAndOnce", {5, 1, 5, 3}, {}, {1, 3, 5}, ""},
                      NewsCase{"KnownOnesIgnored", {1, 4, 0}, {0, 1}, {4}, ""},
                      NewsCase{"NothingNew", {1}, {1, 3}, {}, ""},
                      NewsCase{"Self", {2}, {}, {}, "rank 2: cannot fail rank 2 (valid: 0..5 other than this rank)"},
                      NewsCase{"OutOfRange", {1, 6}, {}, {}, "cannot fail rank 6"},
                      NewsCase{"Negative", {-1}, {}, {}, "cannot fail rank -1"}),
    [](const auto& info) { return std::string(info.param.name); });

Placement make(int32_t num_ranks, int32_t num_experts, int32_t spr, std::vector<std::vector<ExpertId>> rows,
               std::vector<std::vector<double>> shares = {}) {
  PlacementLayout p;
  p.num_ranks = num_ranks;
  p.num_experts = num_experts;
  p.slots_per_rank.assign(rows.size(), spr);
  p.phy2log = std::move(rows);
  p.shares = std::move(shares);
  auto out = Placement::create(std::move(p), lost_experts_allowed());
  OMNI_CHECK_MSG(out.ok(), out.status().to_string());
  return *std::move(out);
}

TEST(PlanRestoreTest, EmptySlotsFirstThenTheMostReplicatedSpreadOverRanks) {
  // 3 ranks x 2 slots, rank 2 failed. Layer 0 lost experts 2 and 3: one empty live slot (rank 1 slot 1)
  // and expert 0 with two live replicas give them room. Layer 1 lost nothing.
  const Placement dropped = make(3, 4, 2, {{0, 1, 0, -1, -1, -1}, {0, 1, 2, 3, -1, -1}});
  const std::vector<RankId> failed = {2};
  const std::vector<int64_t> bytes = {128, 256};
  auto plan = plan_restore(dropped, failed, bytes);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(plan->has_value());
  const RestorePlan& r = **plan;
  ASSERT_EQ(r.transfers.size(), 2u);
  // Expert 2 takes the empty slot; expert 3 then replaces a replica of expert 0, on rank 0 (which has no
  // restore yet) rather than rank 1.
  EXPECT_EQ(r.transfers[0], (Transfer{0, 2, kFromBackup, -1, 1, 1, kEmptySlot, LinkClass::kSameRank, 128}));
  EXPECT_EQ(r.transfers[1], (Transfer{0, 3, kFromBackup, -1, 0, 0, 0, LinkClass::kSameRank, 128}));
  EXPECT_EQ(std::vector<ExpertId>(r.next.phy2log(0).begin(), r.next.phy2log(0).end()),
            (std::vector<ExpertId>{3, 1, 0, 2, -1, -1}));
  EXPECT_TRUE(layers_equal(r.next, dropped, 1));
  EXPECT_EQ(count_lost_experts(r.next), 0);
}

TEST(PlanRestoreTest, SharesAreRenormalisedAndNoRoomLeavesTheExpertLost) {
  // Expert 0 has two replicas with shares 0.25 / 0.75: restoring expert 2 over the 0.75 one leaves
  // expert 0 its other replica with the whole share.
  const Placement p = make(2, 3, 2, {{0, 1, 0, -1}}, {{0.25, 1, 0.75, 0}});
  const std::vector<RankId> none = {};
  const std::vector<int64_t> bytes = {64};
  // Rank 1 slot 1 is empty: expert 2 goes there and no share changes.
  auto a = plan_restore(p, none, bytes);
  ASSERT_TRUE(a.ok() && a->has_value()) << a.status();
  EXPECT_EQ((*a)->transfers[0].dst_rank, 1);
  EXPECT_EQ((*a)->transfers[0].dst_slot, 1);
  EXPECT_DOUBLE_EQ((*a)->next.share_of(0, 3), 1.0);
  // Without the empty slot (rank 1 failed), the replica of expert 0 on rank 0 is the room.
  const std::vector<RankId> one = {1};
  const Placement q = make(2, 3, 2, {{0, 0, -1, -1}}, {{0.25, 0.75, 0, 0}});
  auto b = plan_restore(q, one, bytes);
  ASSERT_TRUE(b.ok() && b->has_value()) << b.status();
  EXPECT_EQ((*b)->transfers.size(), 1u);  // experts 1 and 2 are lost; only one slot can spare
  const Placement& n = (*b)->next;
  EXPECT_EQ(count_lost_experts(n), 1);
  EXPECT_DOUBLE_EQ(n.share_of(0, 0) + n.share_of(0, 1), 2.0);  // each slot now holds a sole replica
  // Nothing lost: no restore.
  const Placement full = make(2, 3, 2, {{0, 1, 2, -1}});
  auto c = plan_restore(full, none, bytes);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->has_value());
  EXPECT_FALSE(plan_restore(full, none, std::vector<int64_t>{64, 64}).ok());  // one size per layer
}

TEST(PlanOnSurvivorsTest, FailedRanksKeepEmptySlotsAndEveryExpertLives) {
  // 4 ranks on 2 hosts, 8 experts, 3 slots; rank 1 failed (its slots already dropped).
  auto initial = *Placement::contiguous(2, 4, 8, 3);
  const std::vector<RankId> failed = {1};
  auto dropped = drop_ranks(initial, failed);
  ASSERT_TRUE(dropped.ok());
  auto load = *LoadMatrix::from_counts(2, 8, {9, 1, 1, 1, 1, 1, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8});
  const Topology topo = *Topology::uniform(4, 2);
  for (const char* spec : {"eplb", "eplb(hierarchical)", "omni"}) {
    SCOPED_TRACE(spec);
    auto planner = make_planner(spec);
    ASSERT_TRUE(planner.ok());
    auto plan = plan_on_survivors(**planner, load, *dropped, topo, failed);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const Placement& p = plan->placement;
    EXPECT_EQ(p.num_ranks(), 4);
    EXPECT_FALSE(holds_on_ranks(p, failed));
    EXPECT_EQ(count_lost_experts(p), 0);
    for (LayerId l = 0; l < 2; ++l) EXPECT_EQ(p.slots_per_rank(l), 3);
    EXPECT_LE(p.num_replicas(0), 9);  // the 9 live slots at most
  }
  auto planner = make_planner("eplb");
  const std::vector<RankId> bad = {4};
  EXPECT_EQ(plan_on_survivors(**planner, load, *dropped, topo, bad).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace omni
