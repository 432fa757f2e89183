#include "omniplacement/planner/migration_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "common/random_placement.h"

namespace omni {
namespace {

// Layer rows as {slots_per_rank, phy2log}.
struct Row {
  int32_t spr;
  std::vector<ExpertId> phy2log;
};

Placement make(int32_t num_ranks, int32_t num_experts, const std::vector<Row>& rows, bool every_expert = true) {
  PlacementLayout p;
  p.num_ranks = num_ranks;
  p.num_experts = num_experts;
  for (const Row& r : rows) {
    p.slots_per_rank.push_back(r.spr);
    p.phy2log.push_back(r.phy2log);
  }
  ValidationRules rules;
  rules.require_every_expert = every_expert;
  auto placement = Placement::create(p, rules);
  OMNI_CHECK_MSG(placement.ok(), placement.status().to_string());
  return *placement;
}

Topology hosts(int32_t num_ranks, int32_t ranks_per_host) { return *Topology::uniform(num_ranks, ranks_per_host); }

// A count budget only (no byte budget): k experts sent and received per rank and round.
MigrationOptions limit(int32_t k) {
  MigrationOptions o;
  o.max_per_round = k;
  o.staging_bytes_per_rank = 0;
  return o;
}

// A staging budget only: `experts` experts' bytes received per rank and round, and `layers` layers.
MigrationOptions staging(int64_t experts, int32_t layers = 0) {
  MigrationOptions o;
  o.staging_bytes_per_rank = experts * o.expert_bytes;
  o.layers_per_commit = layers;
  return o;
}

// Seconds of one DeepSeek-V3 expert over each link class with the default bandwidths and 10 us latency.
constexpr double kLocal = 10e-6 + 44040192.0 / 1e12;      // 54.040192 us
constexpr double kSameHost = 10e-6 + 44040192.0 / 300e9;  // 156.80064 us
constexpr double kCrossHost = 10e-6 + 44040192.0 / 50e9;  // 890.80384 us

Transfer tr(LayerId l, ExpertId e, RankId sr, SlotId ss, RankId dr, SlotId ds, ExpertId replaced, LinkClass link,
            int64_t bytes = kDeepSeekV3ExpertBytes) {
  return Transfer{l, e, sr, ss, dr, ds, replaced, link, bytes};
}

StatusOr<MigrationPlan> diff_verified(const Placement& a, const Placement& b, const Topology& t,
                                      const MigrationOptions& o) {
  auto plan = diff(a, b, t, o);
  if (plan.ok()) {
    const Status s = verify_migration(a, *plan, b);
    if (!s.ok()) return s;
  }
  return plan;
}

// --- Table tests: hand-computed plans ---

TEST(MigrationPlanTest, IdenticalPlacementsNeedNoTransfer) {
  const Placement p = make(2, 3, {{2, {0, 1, 2, -1}}});
  auto plan = diff_verified(p, p, hosts(2, 1), {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_rounds(), 0);
  EXPECT_EQ(plan->num_transfers, 0);
  EXPECT_EQ(plan->total_bytes, 0);
  EXPECT_EQ(plan->total_seconds, 0.0);
  EXPECT_EQ(plan->num_unchanged_slots, 3);
  EXPECT_TRUE(plan->releases.empty());
}

TEST(MigrationPlanTest, SwapAcrossHostsGoesInOneRoundWithinALimitOfOne) {
  // [0 | 1] -> [1 | 0] on two hosts: each rank sends one and receives one.
  const Placement a = make(2, 2, {{1, {0, 1}}});
  const Placement b = make(2, 2, {{1, {1, 0}}});
  auto plan = diff_verified(a, b, hosts(2, 1), limit(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 1);
  const MigrationRound& r = plan->rounds[0];
  EXPECT_EQ(r.transfers, (std::vector<Transfer>{tr(0, 1, 1, 0, 0, 0, 0, LinkClass::kCrossHost),
                                                tr(0, 0, 0, 0, 1, 0, 1, LinkClass::kCrossHost)}));
  EXPECT_EQ(r.bytes, 2 * kDeepSeekV3ExpertBytes);
  EXPECT_DOUBLE_EQ(r.seconds, kCrossHost);
  EXPECT_FALSE(r.over_limit);
  EXPECT_EQ(plan->total_bytes, 88080384);
  EXPECT_DOUBLE_EQ(plan->total_seconds, kCrossHost);
  EXPECT_EQ(plan->transfers_by_link[2], 2);
  EXPECT_EQ(plan->summary(),
            "2 transfers (0.09 GB: 0 same-rank, 0 same-host, 2 cross-host) in 1 round, est. 0.0008908 s; 0 slots "
            "unchanged, 0 released");
}

TEST(MigrationPlanTest, SwapInsideOneRankIsTwoLocalCopiesAndExceedsALimitOfOne) {
  // [0, 1] -> [1, 0] on one rank: a cycle of local copies that cannot be split.
  const Placement a = make(1, 2, {{2, {0, 1}}});
  const Placement b = make(1, 2, {{2, {1, 0}}});
  auto plan = diff_verified(a, b, hosts(1, 1), limit(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 1);
  EXPECT_TRUE(plan->rounds[0].over_limit);
  EXPECT_EQ(plan->rounds[0].max_sends, 2);
  EXPECT_EQ(plan->num_over_limit_rounds(), 1);
  EXPECT_EQ(plan->rounds[0].transfers, (std::vector<Transfer>{tr(0, 1, 0, 1, 0, 0, 0, LinkClass::kSameRank),
                                                              tr(0, 0, 0, 0, 0, 1, 1, LinkClass::kSameRank)}));
  // One rank sends both copies one after the other.
  EXPECT_DOUBLE_EQ(plan->total_seconds, 2 * kLocal);
  auto roomy = diff_verified(a, b, hosts(1, 1), limit(2));
  ASSERT_TRUE(roomy.ok()) << roomy.status();
  EXPECT_EQ(roomy->num_over_limit_rounds(), 0);
}

TEST(MigrationPlanTest, RoundForcedOverTheLimitTakesOtherCyclesUpToTheSameCount) {
  // Two local swaps, on ranks 0 and 1: each needs 2 sends on its rank. With a limit of one the first is
  // forced over it; the second needs no more per rank, so it joins the same round.
  const Placement a = make(2, 4, {{2, {0, 1, 2, 3}}});
  const Placement b = make(2, 4, {{2, {1, 0, 3, 2}}});
  auto plan = diff_verified(a, b, hosts(2, 2), limit(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 1);
  EXPECT_TRUE(plan->rounds[0].over_limit);
  EXPECT_EQ(plan->rounds[0].max_sends, 2);
  EXPECT_EQ(plan->num_transfers, 4);
  // A swap that would need 3 on a rank does not join a round forced to 2.
  const Placement c = make(2, 6, {{3, {0, 1, 2, 3, 4, 5}}});
  const Placement d = make(2, 6, {{3, {1, 0, 2, 4, 5, 3}}});
  auto two = diff_verified(c, d, hosts(2, 2), limit(1));
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(two->num_rounds(), 2);
  EXPECT_EQ(two->rounds[0].max_sends, 2);
  EXPECT_EQ(two->rounds[1].max_sends, 3);
}

TEST(MigrationPlanTest, ThreeCycleOverThreeHostsFitsALimitOfOne) {
  const Placement a = make(3, 3, {{1, {0, 1, 2}}});
  const Placement b = make(3, 3, {{1, {1, 2, 0}}});
  auto plan = diff_verified(a, b, hosts(3, 1), limit(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 1);
  EXPECT_FALSE(plan->rounds[0].over_limit);
  EXPECT_EQ(plan->num_transfers, 3);
  EXPECT_EQ(plan->rounds[0].max_sends, 1);
  EXPECT_EQ(plan->rounds[0].max_receives, 1);
}

// Hosts {0, 1} and {2, 3}.
//   current  r0 [0, 1]  r1 [2, -]  r2 [3, 1]  r3 [2, -]
//   next     r0 [0, 1]  r1 [2, 1]  r2 [3, 2]  r3 [2, 0]
// r1 s1 <- 1: r0 s1 is on the same host, r2 s1 is not.  r2 s1 <- 2: r3 (same host) beats r1.
// r3 s1 <- 0: only r0 holds it: cross-host.
struct NearestCase {
  Placement a = make(4, 4, {{2, {0, 1, 2, -1, 3, 1, 2, -1}}});
  Placement b = make(4, 4, {{2, {0, 1, 2, 1, 3, 2, 2, 0}}});
};

TEST(MigrationPlanTest, NearestSourceSameHostBeforeOtherHosts) {
  NearestCase c;
  auto plan = diff_verified(c.a, c.b, hosts(4, 2), limit(8));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 1);
  EXPECT_EQ(plan->rounds[0].transfers, (std::vector<Transfer>{tr(0, 1, 0, 1, 1, 1, -1, LinkClass::kSameHost),
                                                              tr(0, 2, 3, 0, 2, 1, 1, LinkClass::kSameHost),
                                                              tr(0, 0, 0, 0, 3, 1, -1, LinkClass::kCrossHost)}));
  // Rank 0 sends one same-host and one cross-host copy, one after the other.
  EXPECT_DOUBLE_EQ(plan->rounds[0].seconds, kSameHost + kCrossHost);
  EXPECT_EQ(plan->num_unchanged_slots, 5);
  EXPECT_EQ(plan->transfers_by_link, (std::array<int64_t, 3>{0, 2, 1}));
}

TEST(MigrationPlanTest, BusyNearestSenderWaitsForTheNextRoundRatherThanUseAFartherLink) {
  NearestCase c;
  auto plan = diff_verified(c.a, c.b, hosts(4, 2), limit(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  // Rank 0 may send one per round: r3 s1 <- 0 waits for round 1.
  ASSERT_EQ(plan->num_rounds(), 2);
  EXPECT_EQ(plan->rounds[0].transfers, (std::vector<Transfer>{tr(0, 1, 0, 1, 1, 1, -1, LinkClass::kSameHost),
                                                              tr(0, 2, 3, 0, 2, 1, 1, LinkClass::kSameHost)}));
  EXPECT_EQ(plan->rounds[1].transfers, (std::vector<Transfer>{tr(0, 0, 0, 0, 3, 1, -1, LinkClass::kCrossHost)}));
  EXPECT_DOUBLE_EQ(plan->rounds[0].seconds, kSameHost);
  EXPECT_DOUBLE_EQ(plan->rounds[1].seconds, kCrossHost);
  EXPECT_DOUBLE_EQ(plan->total_seconds, kSameHost + kCrossHost);
}

TEST(MigrationPlanTest, ReaderOfAnOverwrittenNearSlotGoesInTheSameRound) {
  // Hosts {0, 1} and {2, 3}, a limit of one.
  //   current  r0 [1, 2]  r1 [0, 3]  r2 [1, -]  r3 [3, -]
  //   next     r0 [0, 2]  r1 [2, 1]  r2 [1, -]  r3 [3, -]
  // r0 s0 <- 0 overwrites expert 1 on host 0; r1 s1 <- 1 would then have to read it from r2 on the
  // other host. So it joins round 0 (reading r0 s0 before it is written) and r1 s0 <- 2 waits instead.
  const Placement a = make(4, 4, {{2, {1, 2, 0, 3, 1, -1, 3, -1}}});
  const Placement b = make(4, 4, {{2, {0, 2, 2, 1, 1, -1, 3, -1}}});
  auto plan = diff_verified(a, b, hosts(4, 2), limit(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 2);
  EXPECT_EQ(plan->rounds[0].transfers, (std::vector<Transfer>{tr(0, 0, 1, 0, 0, 0, 1, LinkClass::kSameHost),
                                                              tr(0, 1, 0, 0, 1, 1, 3, LinkClass::kSameHost)}));
  EXPECT_EQ(plan->rounds[1].transfers, (std::vector<Transfer>{tr(0, 2, 0, 1, 1, 0, 0, LinkClass::kSameHost)}));
  EXPECT_EQ(plan->transfers_by_link[2], 0);
}

TEST(MigrationPlanTest, LocalCopyBeatsSameHost) {
  // One host. r1 [0, 1] -> [1, 0]: both experts also sit on r0, but r1 has them itself.
  const Placement a = make(2, 2, {{2, {0, 1, 0, 1}}});
  const Placement b = make(2, 2, {{2, {0, 1, 1, 0}}});
  auto plan = diff_verified(a, b, hosts(2, 2), {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 1);
  EXPECT_EQ(plan->rounds[0].transfers, (std::vector<Transfer>{tr(0, 1, 1, 1, 1, 0, 0, LinkClass::kSameRank),
                                                              tr(0, 0, 1, 0, 1, 1, 1, LinkClass::kSameRank)}));
}

TEST(MigrationPlanTest, FanOutReadsFromCopiesOfEarlierRoundsAndSpreadsSenders) {
  // One host, 5 ranks. Expert 0 only on r0 gains a replica on every other rank.
  const Placement a = make(5, 5, {{2, {0, -1, 1, -1, 2, -1, 3, -1, 4, -1}}});
  const Placement b = make(5, 5, {{2, {0, -1, 1, 0, 2, 0, 3, 0, 4, 0}}});
  auto plan = diff_verified(a, b, hosts(5, 5), limit(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 3);
  const auto link = LinkClass::kSameHost;
  EXPECT_EQ(plan->rounds[0].transfers, (std::vector<Transfer>{tr(0, 0, 0, 0, 1, 1, -1, link)}));
  // Round 1: r1 now holds 0 too and has sent nothing yet; r0 takes the second one.
  EXPECT_EQ(plan->rounds[1].transfers,
            (std::vector<Transfer>{tr(0, 0, 1, 1, 2, 1, -1, link), tr(0, 0, 0, 0, 3, 1, -1, link)}));
  // Round 2: r2 and r3 have sent nothing in the whole plan; r2 is the lower rank.
  EXPECT_EQ(plan->rounds[2].transfers, (std::vector<Transfer>{tr(0, 0, 2, 1, 4, 1, -1, link)}));

  auto two = diff_verified(a, b, hosts(5, 5), limit(2));
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(two->num_rounds(), 2);
  EXPECT_EQ(two->rounds[1].transfers,
            (std::vector<Transfer>{tr(0, 0, 1, 1, 3, 1, -1, link), tr(0, 0, 2, 1, 4, 1, -1, link)}));

  auto unlimited = diff_verified(a, b, hosts(5, 5), limit(0));
  ASSERT_TRUE(unlimited.ok()) << unlimited.status();
  ASSERT_EQ(unlimited->num_rounds(), 1);
  EXPECT_EQ(unlimited->rounds[0].max_sends, 4);
  EXPECT_DOUBLE_EQ(unlimited->rounds[0].seconds, 4 * kSameHost);
}

TEST(MigrationPlanTest, UnevenLayersGrowAndShrinkSlots) {
  // Layer 0: 2 -> 3 slots per rank (slot 2 is new).  Layer 1: 3 -> 2 (slot 2 is freed).
  const Placement a = make(2, 3, {{2, {0, 1, 2, -1}}, {3, {0, 1, 2, 1, 2, 0}}});
  const Placement b = make(2, 3, {{3, {0, 1, 2, 2, -1, 0}}, {2, {0, 1, 2, -1}}});
  auto plan = diff_verified(a, b, hosts(2, 2), {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 1);
  EXPECT_EQ(plan->rounds[0].transfers, (std::vector<Transfer>{tr(0, 2, 1, 0, 0, 2, -1, LinkClass::kSameHost),
                                                              tr(0, 0, 0, 0, 1, 2, -1, LinkClass::kSameHost),
                                                              tr(1, 2, 1, 1, 1, 0, 1, LinkClass::kSameRank)}));
  EXPECT_EQ(plan->releases, (std::vector<SlotRelease>{{1, 0, 2, 2}, {1, 1, 1, 2}, {1, 1, 2, 0}}));
  EXPECT_EQ(plan->num_unchanged_slots, 3 + 2);
}

TEST(MigrationPlanTest, PlacementAfterRoundIsTheRoutableStateOnTheMigrationGrid) {
  NearestCase c;
  auto plan = diff(c.a, c.b, hosts(4, 2), limit(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto start = placement_after_round(c.a, *plan, c.b, 0);
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(*start, c.a);
  auto mid = placement_after_round(c.a, *plan, c.b, 1);
  ASSERT_TRUE(mid.ok()) << mid.status();
  const std::vector<ExpertId> after_round_0 = {0, 1, 2, 1, 3, 2, 2, -1};
  EXPECT_EQ(std::vector<ExpertId>(mid->phy2log(0).begin(), mid->phy2log(0).end()), after_round_0);
  EXPECT_EQ(*placement_after_round(c.a, *plan, c.b, 2), c.b);
  EXPECT_EQ(placement_after_round(c.a, *plan, c.b, 3).status().code(), StatusCode::kInvalidArgument);
  MigrationPlan broken = *plan;
  broken.rounds.pop_back();
  broken.num_transfers -= 1;
  broken.total_bytes -= kDeepSeekV3ExpertBytes;
  EXPECT_EQ(placement_after_round(c.a, broken, c.b, 0).status().code(), StatusCode::kInvalidArgument);
}

TEST(MigrationPlanTest, StagingBudgetSplitsALayerAcrossRounds) {
  // One host. Rank 1 fills three empty slots with replicas of 0, 1, 2 (all on rank 0): with staging for two
  // experts per rank, two go in the first round and the third in the second.
  const Placement a = make(2, 3, {{3, {0, 1, 2, -1, -1, -1}}});
  const Placement b = make(2, 3, {{3, {0, 1, 2, 0, 1, 2}}});
  auto plan = diff_verified(a, b, hosts(2, 2), staging(2));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 2);
  EXPECT_EQ(plan->staging_bytes_per_rank, 2 * kDeepSeekV3ExpertBytes);
  EXPECT_EQ(plan->rounds[0].transfers, (std::vector<Transfer>{tr(0, 0, 0, 0, 1, 0, -1, LinkClass::kSameHost),
                                                              tr(0, 1, 0, 1, 1, 1, -1, LinkClass::kSameHost)}));
  EXPECT_EQ(plan->rounds[1].transfers, (std::vector<Transfer>{tr(0, 2, 0, 2, 1, 2, -1, LinkClass::kSameHost)}));
  EXPECT_EQ(plan->rounds[0].max_receive_bytes, 2 * kDeepSeekV3ExpertBytes);
  EXPECT_EQ(plan->num_over_limit_rounds(), 0);
  // The runtime routes by the first two new replicas after the first commit, by next after the second.
  auto mid = routing_after_round(a, *plan, b, 1);
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(std::vector<ExpertId>(mid->phy2log(0).begin(), mid->phy2log(0).end()),
            (std::vector<ExpertId>{0, 1, 2, 0, 1, -1}));
  auto end = routing_after_round(a, *plan, b, 2);
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(*end, b);
}

TEST(MigrationPlanTest, LayersPerCommitBoundsTheLayersOfARound) {
  // Three layers, each swapping rank 0's and rank 1's expert: one layer per round with layers_per_commit 1,
  // in layer order; two then one with 2; all in one round without the limit.
  const Row swap{1, {1, 0}};
  const Placement a = make(2, 2, {{1, {0, 1}}, {1, {0, 1}}, {1, {0, 1}}});
  const Placement b = make(2, 2, {swap, swap, swap});
  for (const auto& [layers, want] : std::vector<std::pair<int32_t, std::vector<int32_t>>>{
           {1, {1, 1, 1}}, {2, {2, 1}}, {0, {3}}}) {
    auto plan = diff_verified(a, b, hosts(2, 1), staging(0, layers));
    ASSERT_TRUE(plan.ok()) << plan.status();
    std::vector<int32_t> per_round;
    LayerId next_layer = 0;
    for (const MigrationRound& r : plan->rounds) {
      std::vector<LayerId> ls;
      for (const Transfer& t : r.transfers)
        if (ls.empty() || ls.back() != t.layer) ls.push_back(t.layer);
      for (LayerId l : ls) EXPECT_EQ(l, next_layer++) << "layers_per_commit " << layers;  // early layers first
      per_round.push_back(static_cast<int32_t>(ls.size()));
    }
    EXPECT_EQ(per_round, want) << "layers_per_commit " << layers;
  }
}

TEST(MigrationPlanTest, ExpertLargerThanTheStagingGoesAloneOverTheLimit) {
  // Staging of one byte cannot hold any expert: every round is forced over the limit and then takes
  // at most one transfer per receiving rank (the per-rank bytes the forced transfer set).
  const Placement a = make(2, 3, {{3, {0, 1, 2, -1, -1, -1}}});
  const Placement b = make(2, 3, {{3, {0, 1, 2, 0, 1, 2}}});
  MigrationOptions o;
  o.staging_bytes_per_rank = 1;
  auto plan = diff_verified(a, b, hosts(2, 2), o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_rounds(), 3);
  EXPECT_EQ(plan->num_over_limit_rounds(), 3);
  for (const MigrationRound& r : plan->rounds) EXPECT_EQ(r.max_receive_bytes, kDeepSeekV3ExpertBytes);
  EXPECT_NE(plan->summary().find("3 rounds over the limit of 1 staging bytes per rank"), std::string::npos)
      << plan->summary();
}

TEST(MigrationPlanTest, RoutingOfAPartiallyMigratedLayerKeepsSharesPerSlot) {
  // Layer 0: rank 1's two empty slots get replicas of 0 and 1 under a one-expert staging budget (two
  // rounds); next splits 0's load 0.25/0.75 and 1's 0.5/0.5. Layer 1 changes shares only.
  PlacementLayout la;
  la.num_ranks = 2;
  la.num_experts = 2;
  la.slots_per_rank = {2, 2};
  la.phy2log = {{0, 1, -1, -1}, {0, 1, 0, 1}};
  PlacementLayout lb = la;
  lb.phy2log[0] = {0, 1, 0, 1};
  lb.shares = {{0.25, 0.5, 0.75, 0.5}, {0.9, 0.5, 0.1, 0.5}};
  const Placement a = *Placement::create(la);
  const Placement b = *Placement::create(lb);
  auto plan = diff_verified(a, b, hosts(2, 2), staging(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 2);
  auto mid = routing_after_round(a, *plan, b, 1);
  ASSERT_TRUE(mid.ok()) << mid.status();
  // Layer 0 after one round: slot 2 holds 0 (next's share 0.75, with slot 0's 0.25: already 1); slot 3 empty,
  // so expert 1's slot 1 (next's share 0.5) is renormalised to 1.
  EXPECT_EQ(std::vector<ExpertId>(mid->phy2log(0).begin(), mid->phy2log(0).end()),
            (std::vector<ExpertId>{0, 1, 0, -1}));
  EXPECT_DOUBLE_EQ(mid->share_of(0, 0), 0.25);
  EXPECT_DOUBLE_EQ(mid->share_of(0, 1), 1.0);
  EXPECT_DOUBLE_EQ(mid->share_of(0, 2), 0.75);
  // Layer 1 has no transfer: it takes next's shares with the first commit.
  EXPECT_DOUBLE_EQ(mid->share_of(1, 0), 0.9);
  auto before = routing_after_round(a, *plan, b, 0);
  ASSERT_TRUE(before.ok());
  EXPECT_DOUBLE_EQ(before->share_of(1, 0), 0.5);
  auto end = routing_after_round(a, *plan, b, 2);
  ASSERT_TRUE(end.ok());
  EXPECT_EQ(*end, b);
  EXPECT_EQ(routing_after_round(a, *plan, b, 3).status().code(), StatusCode::kInvalidArgument);
}

TEST(MigrationPlanTest, PerLayerExpertBytes) {
  const Placement a = make(2, 2, {{1, {0, 1}}, {1, {0, 1}}});
  const Placement b = make(2, 2, {{1, {1, 0}}, {1, {1, 0}}});
  MigrationOptions o;
  o.layer_expert_bytes = {1000, 3000};
  auto plan = diff_verified(a, b, hosts(2, 1), o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->total_bytes, 2 * 1000 + 2 * 3000);
  ASSERT_EQ(plan->num_rounds(), 1);
  // Each rank sends one 1000-byte and one 3000-byte expert cross-host.
  EXPECT_DOUBLE_EQ(plan->rounds[0].seconds, 2 * 10e-6 + 4000 / 50e9);
  o.layer_expert_bytes.clear();
  o.expert_bytes = 88080384;  // BF16
  auto bf16 = diff_verified(a, b, hosts(2, 1), o);
  ASSERT_TRUE(bf16.ok());
  EXPECT_EQ(bf16->total_bytes, 4 * 88080384);
}

TEST(MigrationPlanTest, ExpertDroppedByTheNextPlacementIsOverwrittenFreely) {
  // Expert 1 leaves (the next placement lacks it, e.g. after a failure): no copy is kept.
  const Placement a = make(2, 2, {{1, {0, 1}}});
  const Placement b = make(2, 2, {{1, {0, 0}}}, /*every_expert=*/false);
  auto plan = diff_verified(a, b, hosts(2, 1), {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_transfers, 1);
}

TEST(MigrationPlanTest, ChainSplitsFromItsEndUnderALimitOfOne) {
  // One host.  r0 [0, 1, 2, -] -> [1, 2, 3, -] and r1 [3, -] -> [3, 0]: each of 0, 1, 2 has one copy, so
  // writing r0 s0 first needs 0 copied to r1 in the same round (two sends for r0). Under a limit of one
  // the chain goes from its safe end: r1 s1 <- 0, then r0 s0 <- 1, r0 s1 <- 2, r0 s2 <- 3.
  const Placement a = make(2, 4, {{4, {0, 1, 2, -1, 3, -1, -1, -1}}});
  const Placement b = make(2, 4, {{4, {1, 2, 3, -1, 3, 0, -1, -1}}});
  auto plan = diff_verified(a, b, hosts(2, 2), limit(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->num_rounds(), 4);
  EXPECT_EQ(plan->num_over_limit_rounds(), 0);
  EXPECT_EQ(plan->rounds[0].transfers, (std::vector<Transfer>{tr(0, 0, 0, 0, 1, 1, -1, LinkClass::kSameHost)}));
  EXPECT_EQ(plan->rounds[1].transfers, (std::vector<Transfer>{tr(0, 1, 0, 1, 0, 0, 0, LinkClass::kSameRank)}));
  EXPECT_EQ(plan->rounds[2].transfers, (std::vector<Transfer>{tr(0, 2, 0, 2, 0, 1, 1, LinkClass::kSameRank)}));
  EXPECT_EQ(plan->rounds[3].transfers, (std::vector<Transfer>{tr(0, 3, 1, 0, 0, 2, 2, LinkClass::kSameHost)}));
  // Without a limit the whole chain goes in one round.
  auto one = diff_verified(a, b, hosts(2, 2), limit(0));
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->num_rounds(), 1);
}

TEST(MigrationPlanTest, RejectsMismatchedInputsAndBadOptions) {
  const Placement a = make(2, 2, {{1, {0, 1}}});
  const Placement three_experts = make(2, 3, {{2, {0, 1, 2, -1}}});
  auto shape = diff(a, three_experts, hosts(2, 1), {});
  EXPECT_EQ(shape.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(shape.status().message().find("2 experts"), std::string::npos) << shape.status();
  EXPECT_EQ(diff(a, a, hosts(4, 2), {}).status().code(), StatusCode::kInvalidArgument);
  MigrationOptions o;
  o.expert_bytes = 0;
  EXPECT_EQ(diff(a, a, hosts(2, 1), o).status().code(), StatusCode::kInvalidArgument);
  o = {};
  o.layer_expert_bytes = {1, 2};
  auto len = diff(a, a, hosts(2, 1), o);
  EXPECT_NE(len.status().message().find("one per layer (1)"), std::string::npos) << len.status();
  o = {};
  o.max_per_round = -1;
  EXPECT_EQ(diff(a, a, hosts(2, 1), o).status().code(), StatusCode::kInvalidArgument);
  o = {};
  o.staging_bytes_per_rank = -1;
  auto bytes = diff(a, a, hosts(2, 1), o);
  EXPECT_NE(bytes.status().message().find("staging_bytes_per_rank must be >= 0 (0 = no limit), got -1"),
            std::string::npos)
      << bytes.status();
  o = {};
  o.layers_per_commit = -1;
  auto layers = diff(a, a, hosts(2, 1), o);
  EXPECT_NE(layers.status().message().find("layers_per_commit must be >= 0 (0 = no limit), got -1"), std::string::npos)
      << layers.status();
  EXPECT_EQ(verify_migration(a, MigrationPlan{}, three_experts).code(), StatusCode::kInvalidArgument);
}

TEST(MigrationPlanTest, ExpertMissingFromCurrentIsAFailedPrecondition) {
  const Placement a = make(2, 2, {{1, {0, 0}}}, /*every_expert=*/false);
  const Placement b = make(2, 2, {{1, {0, 1}}});
  auto plan = diff(a, b, hosts(2, 1), {});
  EXPECT_EQ(plan.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(plan.status().message().find("layer 0, expert 1"), std::string::npos) << plan.status();
}

// --- verify_migration catches broken plans, naming where ---

struct BrokenCase {
  const char* name;
  void (*damage)(MigrationPlan&);
  const char* message;
};

class VerifyMigrationTest : public ::testing::TestWithParam<BrokenCase> {};

TEST_P(VerifyMigrationTest, NamesTheFirstProblem) {
  // r0 [0, 1] -> [1, 0] on one rank, plus r1 [2, -] -> [2, 0] (a replica count change).
  const Placement a = make(2, 3, {{2, {0, 1, 2, -1}}});
  const Placement b = make(2, 3, {{2, {1, 0, 2, 0}}});
  auto plan = diff(a, b, hosts(2, 1), limit(0));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(verify_migration(a, *plan, b).ok());
  ASSERT_EQ(plan->num_rounds(), 1);
  ASSERT_EQ(plan->rounds[0].transfers.size(), 3u);
  GetParam().damage(*plan);
  const Status s = verify_migration(a, *plan, b);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(GetParam().message), std::string::npos) << s;
}

// Moves transfer i of round 0 into a new round 1.
void move_to_next_round(MigrationPlan& p, size_t i) {
  MigrationRound r;
  r.transfers.push_back(p.rounds[0].transfers[i]);
  r.bytes = r.transfers[0].bytes;
  p.rounds[0].bytes -= r.bytes;
  p.rounds[0].transfers.erase(p.rounds[0].transfers.begin() + static_cast<std::ptrdiff_t>(i));
  p.rounds.push_back(r);
}

INSTANTIATE_TEST_SUITE_P(
    BrokenPlans, VerifyMigrationTest,
    ::testing::Values(
        // The swap split over two rounds: writing slot 0 first loses expert 0's only copy.
        BrokenCase{"SwapSplitLosesAnExpert", [](MigrationPlan& p) { move_to_next_round(p, 0); },
                   "after round 0, layer 0, expert 1 has no replica whose weights are in place (rank 0 slot 1"},
        BrokenCase{"SourceDoesNotHoldTheExpert", [](MigrationPlan& p) { p.rounds[0].transfers[0].src_slot = 0; },
                   "round 0, transfer 0 (layer 0, expert 1, rank 0 slot 0 -> rank 0 slot 0): the source holds "
                   "expert 0"},
        BrokenCase{"WrongReplacedField", [](MigrationPlan& p) { p.rounds[0].transfers[2].replaced = 2; },
                   "transfer 2 (layer 0, expert 0, rank 0 slot 0 -> rank 1 slot 1): the destination holds expert -1"},
        BrokenCase{"DestinationWrittenTwice",
                   [](MigrationPlan& p) {
                     p.rounds[0].transfers.push_back(p.rounds[0].transfers[2]);
                     p.rounds[0].bytes += p.rounds[0].transfers[2].bytes;
                   },
                   "transfer 3 (layer 0, expert 0, rank 0 slot 0 -> rank 1 slot 1): the destination is written twice"},
        BrokenCase{"MissingTransfer",
                   [](MigrationPlan& p) {
                     p.rounds[0].bytes -= p.rounds[0].transfers[2].bytes;
                     p.rounds[0].transfers.pop_back();
                   },
                   "layer 0, rank 1 slot 1 holds expert -1 but the next placement has 0"},
        BrokenCase{"UnflaggedRoundOverTheLimit", [](MigrationPlan& p) { p.max_per_round = 1; },
                   "round 0 is not marked over_limit but rank 0 sends 3 experts (max_per_round 1)"},
        BrokenCase{"UnflaggedRoundOverTheStaging", [](MigrationPlan& p) { p.staging_bytes_per_rank = 1; },
                   "round 0 is not marked over_limit but rank 0 receives 88080384 bytes (staging_bytes_per_rank 1)"},
        BrokenCase{"WrongMaxReceiveBytes", [](MigrationPlan& p) { p.rounds[0].max_receive_bytes += 1; },
                   "round 0 says max_receive_bytes 88080385 but rank 0 receives 88080384 bytes"},
        BrokenCase{"WrongRoundBytes", [](MigrationPlan& p) { p.rounds[0].bytes += 1; },
                   "round 0 says 132120577 bytes but its transfers sum to 132120576"},
        BrokenCase{"LayerOutOfRange", [](MigrationPlan& p) { p.rounds[0].transfers[1].layer = 5; },
                   "transfer 1 (layer 5, expert 0, rank 0 slot 0 -> rank 0 slot 1): layer out of [0, 1)"},
        BrokenCase{"WrongLinkClass", [](MigrationPlan& p) { p.rounds[0].transfers[2].link = LinkClass::kSameRank; },
                   "link class same-rank does not match the ranks"},
        BrokenCase{"BogusRelease",
                   [](MigrationPlan& p) {
                     p.releases.push_back({0, 1, 0, 2});
                   },
                   "release 0 (layer 0, rank 1, slot 0, expert 2): the next placement puts expert 2 there"}),
    [](const ::testing::TestParamInfo<BrokenCase>& info) { return std::string(info.param.name); });

// --- Property tests on random placement pairs ---

// Replays `plan` and checks the source rule: no transfer takes a farther link
// than the nearest slot holding its expert at the start of its round.
void expect_nearest_sources(const Placement& a, const Placement& b, const Topology& topo, const MigrationPlan& plan) {
  std::vector<int32_t> width(static_cast<size_t>(a.num_layers()));
  std::vector<std::vector<ExpertId>> state(width.size());
  for (LayerId l = 0; l < a.num_layers(); ++l) {
    const int32_t w = std::max(a.slots_per_rank(l), b.slots_per_rank(l));
    width[static_cast<size_t>(l)] = w;
    auto& st = state[static_cast<size_t>(l)];
    st.assign(static_cast<size_t>(a.num_ranks() * w), kEmptySlot);
    for (RankId r = 0; r < a.num_ranks(); ++r)
      for (SlotId s = 0; s < a.slots_per_rank(l); ++s) st[static_cast<size_t>(r * w + s)] = a.expert_at(l, r, s);
  }
  for (size_t k = 0; k < plan.rounds.size(); ++k) {
    for (const Transfer& t : plan.rounds[k].transfers) {
      const int32_t w = width[static_cast<size_t>(t.layer)];
      const auto& st = state[static_cast<size_t>(t.layer)];
      int nearest = 3;
      for (size_t i = 0; i < st.size(); ++i)
        if (st[i] == t.expert)
          nearest = std::min(nearest, static_cast<int>(topo.link(static_cast<RankId>(i) / w, t.dst_rank)));
      EXPECT_EQ(static_cast<int>(t.link), nearest)
          << "round " << k << ", layer " << t.layer << ", expert " << t.expert << " -> rank " << t.dst_rank;
    }
    for (const Transfer& t : plan.rounds[k].transfers)
      state[static_cast<size_t>(t.layer)]
           [static_cast<size_t>(t.dst_rank * width[static_cast<size_t>(t.layer)] + t.dst_slot)] = t.expert;
  }
}

// Slots whose next expert differs from the current one (after padding to the larger slots_per_rank).
int64_t changed_slots(const Placement& a, const Placement& b) {
  int64_t n = 0;
  for (LayerId l = 0; l < a.num_layers(); ++l)
    for (RankId r = 0; r < a.num_ranks(); ++r)
      for (SlotId s = 0; s < b.slots_per_rank(l); ++s) {
        const ExpertId before = s < a.slots_per_rank(l) ? a.expert_at(l, r, s) : kEmptySlot;
        if (b.expert_at(l, r, s) != kEmptySlot && b.expert_at(l, r, s) != before) ++n;
      }
  return n;
}

// Next placement = current with each layer's slot contents permuted: only swaps and cycles.
Placement permuted(std::mt19937_64& rng, const Placement& p) {
  PlacementLayout layout = p.without_shares().layout();
  for (auto& row : layout.phy2log) std::shuffle(row.begin(), row.end(), rng);
  return *Placement::create(layout);
}

// Next placement = current with every layer rotated by one global slot: one long cycle.
Placement rotated(const Placement& p) {
  PlacementLayout layout = p.without_shares().layout();
  for (auto& row : layout.phy2log) std::rotate(row.begin(), row.begin() + 1, row.end());
  return *Placement::create(layout);
}

void check_pair(const Placement& a, const Placement& b, const Topology& topo, const MigrationOptions& o,
                const std::string& what) {
  SCOPED_TRACE(what);
  const int32_t k = o.max_per_round;
  auto plan = diff(a, b, topo, o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const Status s = verify_migration(a, *plan, b);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(plan->num_transfers, changed_slots(a, b));
  const bool unlimited = k == 0 && o.staging_bytes_per_rank == 0 && o.layers_per_commit == 0;
  if (unlimited) {
    EXPECT_LE(plan->num_rounds(), 1);
  }
  for (const MigrationRound& r : plan->rounds) {
    EXPECT_FALSE(r.transfers.empty());
    if (!r.over_limit && k > 0) {
      EXPECT_LE(r.max_sends, k);
      EXPECT_LE(r.max_receives, k);
    }
    if (!r.over_limit && o.staging_bytes_per_rank > 0) {
      EXPECT_LE(r.max_receive_bytes, o.staging_bytes_per_rank);
    }
    std::vector<LayerId> layers;
    for (const Transfer& t : r.transfers) layers.push_back(t.layer);
    layers.erase(std::unique(layers.begin(), layers.end()), layers.end());  // transfers are sorted by layer
    if (o.layers_per_commit > 0) {
      EXPECT_LE(static_cast<int32_t>(layers.size()), o.layers_per_commit);
    }
  }
  expect_nearest_sources(a, b, topo, *plan);
  // Between rounds every expert of both placements can be routed to; after the last round every slot
  // that `next` fills holds its expert (the others keep old weights until released).
  for (int32_t r = 0; r <= plan->num_rounds(); ++r) {
    auto mid = placement_after_round(a, *plan, b, r);
    ASSERT_TRUE(mid.ok()) << mid.status();
    for (LayerId l = 0; l < a.num_layers(); ++l)
      for (ExpertId e = 0; e < a.num_experts(); ++e)
        if (a.replica_count(l, e) > 0 && b.replica_count(l, e) > 0) {
          ASSERT_GT(mid->replica_count(l, e), 0) << "after round " << r << ", layer " << l << ", expert " << e;
        }
    // What a runtime routes by after committing r rounds: current at 0, next at the end,
    // every expert of both served in between, layers untouched or complete equal to one side.
    auto routed = routing_after_round(a, *plan, b, r);
    ASSERT_TRUE(routed.ok()) << routed.status();
    if (r == 0) {
      EXPECT_EQ(*routed, a);
    }
    if (r == plan->num_rounds() && r > 0) {
      EXPECT_EQ(*routed, b);
    }
    for (LayerId l = 0; l < a.num_layers(); ++l)
      for (ExpertId e = 0; e < a.num_experts(); ++e)
        if (a.replica_count(l, e) > 0 && b.replica_count(l, e) > 0) {
          ASSERT_GT(routed->replica_count(l, e), 0) << "routing after round " << r << ", layer " << l;
        }
    if (r == plan->num_rounds()) {
      for (LayerId l = 0; l < a.num_layers(); ++l)
        for (RankId rank = 0; rank < a.num_ranks(); ++rank)
          for (SlotId slot = 0; slot < b.slots_per_rank(l); ++slot)
            if (b.expert_at(l, rank, slot) != kEmptySlot) {
              ASSERT_EQ(mid->expert_at(l, rank, slot), b.expert_at(l, rank, slot));
            }
    }
  }
  auto again = diff(a, b, topo, o);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again == *plan) << "diff is not deterministic";
}

TEST(MigrationPlanPropertyTest, EveryPlanOnRandomPairsVerifies) {
  const std::vector<std::pair<int32_t, int32_t>> shapes = {{1, 1}, {2, 1}, {2, 2}, {4, 2}, {6, 3}, {8, 4}, {8, 8}};
  int64_t over_limit_rounds = 0;
  int64_t rounds = 0;
  for (uint64_t seed = 0; seed < 120; ++seed) {
    std::mt19937_64 rng(seed);
    const auto [num_ranks, per_host] = shapes[seed % shapes.size()];
    const int32_t num_experts = num_ranks * std::uniform_int_distribution<int32_t>(1, 3)(rng) +
                                std::uniform_int_distribution<int32_t>(0, num_ranks - 1)(rng);
    const int32_t num_layers = std::uniform_int_distribution<int32_t>(1, 3)(rng);
    const bool dups = seed % 3 == 0;  // same-rank duplicates are legal placements too
    const Topology topo = hosts(num_ranks, per_host);
    const Placement a =
        *Placement::create(testing::random_layout(rng, num_layers, num_ranks, num_experts, 0, 3, !dups, 0.3));
    const Placement b =
        *Placement::create(testing::random_layout(rng, num_layers, num_ranks, num_experts, 0, 3, !dups, 0.3));
    for (int32_t k : {0, 1, 2, 5}) {
      const std::string what = "seed " + std::to_string(seed) + ", max_per_round " + std::to_string(k);
      check_pair(a, b, topo, limit(k), what + ", independent pair");
      check_pair(a, permuted(rng, a), topo, limit(k), what + ", permuted");
      check_pair(a, rotated(a), topo, limit(k), what + ", rotated");
      auto plan = diff(a, b, topo, limit(k));
      rounds += plan->num_rounds();
      over_limit_rounds += plan->num_over_limit_rounds();
    }
    // The runtime's budget: staging bytes (k experts' worth) and layers per commit.
    for (const auto& [k, layers] : std::vector<std::pair<int32_t, int32_t>>{{0, 1}, {1, 0}, {2, 1}, {3, 2}}) {
      const std::string what = "seed " + std::to_string(seed) + ", staging for " + std::to_string(k) +
                               " experts, layers_per_commit " + std::to_string(layers);
      check_pair(a, b, topo, staging(k, layers), what + ", independent pair");
      check_pair(a, permuted(rng, a), topo, staging(k, layers), what + ", permuted");
      check_pair(a, rotated(a), topo, staging(k, layers), what + ", rotated");
      auto plan = diff(a, b, topo, staging(k, layers));
      rounds += plan->num_rounds();
      over_limit_rounds += plan->num_over_limit_rounds();
    }
  }
  // Unsplittable cycles are the exception, not the rule.
  EXPECT_LT(over_limit_rounds * 20, rounds) << over_limit_rounds << " of " << rounds << " rounds over the limit";
}

TEST(MigrationPlanPropertyTest, LargerPairsVerify) {
  // 4 layers x 64 experts on 16 ranks (2 hosts), uneven slots, between independent placements.
  for (uint64_t seed = 0; seed < 6; ++seed) {
    std::mt19937_64 rng(1000 + seed);
    const Placement a = *Placement::create(testing::random_layout(rng, 4, 16, 64, 0, 2, true, 0.1));
    const Placement b = *Placement::create(testing::random_layout(rng, 4, 16, 64, 0, 2, true, 0.1));
    for (int32_t k : {1, 4}) check_pair(a, b, hosts(16, 8), limit(k), "seed " + std::to_string(seed));
    check_pair(a, b, hosts(16, 8), staging(3, 2), "seed " + std::to_string(seed) + ", staging");
  }
}

TEST(MigrationPlanPropertyTest, RoundLimitBoundsEveryRankOnAnIndependentPair) {
  std::mt19937_64 rng(7);
  const Placement a = *Placement::create(testing::random_layout(rng, 3, 8, 32, 1, 1, true, 0.0));
  const Placement b = *Placement::create(testing::random_layout(rng, 3, 8, 32, 1, 1, true, 0.0));
  const Topology topo = hosts(8, 4);
  auto one = diff_verified(a, b, topo, limit(1));
  auto four = diff_verified(a, b, topo, limit(4));
  auto all = diff_verified(a, b, topo, limit(0));
  ASSERT_TRUE(one.ok() && four.ok() && all.ok());
  // The same transfers, grouped more finely under a tighter limit.
  EXPECT_EQ(one->num_transfers, all->num_transfers);
  EXPECT_EQ(one->total_bytes, all->total_bytes);
  EXPECT_GT(one->num_rounds(), four->num_rounds());
  EXPECT_EQ(all->num_rounds(), 1);
  // Each rank receives about 3 layers x 5 slots: with one per round at least that many rounds.
  int32_t most_received = 0;
  std::vector<int32_t> per_rank(8, 0);
  for (const Transfer& t : all->rounds[0].transfers)
    most_received = std::max(most_received, ++per_rank[static_cast<size_t>(t.dst_rank)]);
  EXPECT_GE(one->num_rounds(), most_received);
}

}  // namespace
}  // namespace omni
