// Tests of BatchBalancer, the per-batch split's water-fill shared by the
// runtime (whole tokens) and the planner (doubles): hand-computed splits,
// rounding, refinement, both ways of giving replica ranks, conservation,
// agreement of the two number types, and bad input.
#include "omniplacement/dispatch/batch_balancer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "common/random_placement.h"
#include "omniplacement/dispatch/batch_split.h"

namespace omni {
namespace {

template <typename T>
std::vector<T> to_vector(std::span<const T> s) {
  return std::vector<T>(s.begin(), s.end());
}

TEST(BatchBalancer, FlexibleExpertFillsTheLeastLoadedRanksToOneLevel) {
  // 2 ranks, 2 slots each: rank 0 holds e0, e1; rank 1 holds e1.
  auto b = *BatchBalancer<int64_t>::create(2, 2);
  ASSERT_TRUE(b.set_slots(std::vector<ExpertId>{0, 1, 1, -1}, 2).ok());
  EXPECT_EQ(to_vector(b.replica_ranks(0)), (std::vector<RankId>{0}));
  EXPECT_EQ(to_vector(b.replica_ranks(1)), (std::vector<RankId>{0, 1}));
  // e0 = 10 loads rank 0; e1 = 6 fits below it on rank 1 alone.
  ASSERT_TRUE(b.balance(std::vector<int64_t>{10, 6}).ok());
  EXPECT_EQ(to_vector(b.rank_loads()), (std::vector<int64_t>{10, 6}));
  EXPECT_EQ(to_vector(b.amounts(1)), (std::vector<int64_t>{0, 6}));
  EXPECT_EQ(to_vector(b.amounts(0)), (std::vector<int64_t>{10}));
  // e1 = 20: rank 1 up to 10, then both to the level (10 + 20) / 2 = 15.
  ASSERT_TRUE(b.balance(std::vector<int64_t>{10, 20}).ok());
  EXPECT_EQ(to_vector(b.rank_loads()), (std::vector<int64_t>{15, 15}));
  EXPECT_EQ(to_vector(b.amounts(1)), (std::vector<int64_t>{5, 15}));
}

TEST(BatchBalancer, WholeTokensGoToTheLargestFractionsThenTheLowerRank) {
  // e0 on ranks 0, 1, 2 with nothing else: level 10 / 3; the one token left
  // after the integer parts goes to the first of three equal fractions.
  auto b = *BatchBalancer<int64_t>::create(3, 1);
  ASSERT_TRUE(b.set_replica_ranks(std::vector<std::vector<RankId>>{{0, 1, 2}}).ok());
  ASSERT_TRUE(b.balance(std::vector<int64_t>{10}).ok());
  EXPECT_EQ(to_vector(b.amounts(0)), (std::vector<int64_t>{4, 3, 3}));
  // In doubles the amounts are exact.
  auto d = *BatchBalancer<double>::create(3, 1);
  ASSERT_TRUE(d.set_replica_ranks(std::vector<std::vector<RankId>>{{0, 1, 2}}).ok());
  ASSERT_TRUE(d.balance(std::vector<double>{10}).ok());
  for (double a : d.amounts(0)) EXPECT_DOUBLE_EQ(a, 10.0 / 3.0);
}

TEST(BatchBalancer, RefinementLowersTheMaxBelowTheGreedyFill) {
  // 3 ranks; e0 on {0, 1} = 10, e1 on {1, 2} = 9. The greedy fill (e0 first:
  // 5 + 5, then e1: 2 + 7) leaves max 7; re-filling with the other fixed
  // converges to the even 19 / 3 on every rank.
  auto d = *BatchBalancer<double>::create(3, 2);
  ASSERT_TRUE(d.set_replica_ranks(std::vector<std::vector<RankId>>{{0, 1}, {1, 2}}).ok());
  ASSERT_TRUE(d.balance(std::vector<double>{10, 9}).ok());
  const auto load = d.rank_loads();
  EXPECT_LT(*std::max_element(load.begin(), load.end()), 6.4);
  EXPECT_NEAR(std::accumulate(load.begin(), load.end(), 0.0), 19.0, 1e-9);
  // In whole tokens: max 7 = ceil(19 / 3).
  auto b = *BatchBalancer<int64_t>::create(3, 2);
  ASSERT_TRUE(b.set_replica_ranks(std::vector<std::vector<RankId>>{{0, 1}, {1, 2}}).ok());
  ASSERT_TRUE(b.balance(std::vector<int64_t>{10, 9}).ok());
  EXPECT_EQ(to_vector(b.rank_loads()), (std::vector<int64_t>{6, 6, 7}));
}

TEST(BatchBalancer, ExpertWithoutReplicaIsDropped) {
  auto b = *BatchBalancer<int64_t>::create(2, 3);
  ASSERT_TRUE(b.set_slots(std::vector<ExpertId>{0, 1}, 1).ok());
  ASSERT_TRUE(b.balance(std::vector<int64_t>{3, 4, 100}).ok());
  EXPECT_EQ(to_vector(b.rank_loads()), (std::vector<int64_t>{3, 4}));
  EXPECT_TRUE(b.replica_ranks(2).empty());
  EXPECT_TRUE(b.amounts(2).empty());
  EXPECT_TRUE(b.amounts(7).empty());  // out of range: no replica
}

// Property: set_slots and set_replica_ranks(layer_replica_ranks) give the same
// split (several replicas on one rank count once); amounts sum to each total
// and rank loads to the batch; reusing one balancer over many placements and
// batches gives what a fresh one gives; the double split's max is the integer
// split's up to rounding (at most 2 tokens here).
TEST(BatchBalancerProperty, SlotsAndRankListsAgreeAndTokensAreConserved) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 60; ++trial) {
    const int32_t R = std::uniform_int_distribution<int32_t>(1, 12)(rng);
    const int32_t E = std::uniform_int_distribution<int32_t>(1, 40)(rng);
    const bool no_dups = trial % 3 != 0;
    const Placement p = *Placement::create(testing::random_layout(rng, 1, R, E, 0, 3, no_dups, 0.1));
    auto reused = *BatchBalancer<int64_t>::create(R, E);
    auto reused_d = *BatchBalancer<double>::create(R, E);
    ASSERT_TRUE(reused.set_slots(p.phy2log(0), p.slots_per_rank(0)).ok());
    ASSERT_TRUE(reused_d.set_slots(p.phy2log(0), p.slots_per_rank(0)).ok());
    for (int batch = 0; batch < 4; ++batch) {
      std::vector<int64_t> totals(static_cast<size_t>(E));
      for (auto& t : totals) t = rng() % 4 == 0 ? 0 : 1000 + static_cast<int64_t>(rng() % 100000);
      auto fresh = *BatchBalancer<int64_t>::create(R, E);
      ASSERT_TRUE(fresh.set_replica_ranks(layer_replica_ranks(p, 0)).ok());
      ASSERT_TRUE(fresh.balance(totals).ok());
      ASSERT_TRUE(reused.balance(totals).ok());
      EXPECT_EQ(to_vector(fresh.rank_loads()), to_vector(reused.rank_loads())) << "trial " << trial;
      int64_t sum = 0, served = 0;
      for (ExpertId e = 0; e < E; ++e) {
        EXPECT_EQ(to_vector(fresh.replica_ranks(e)), to_vector(reused.replica_ranks(e)));
        EXPECT_EQ(to_vector(fresh.amounts(e)), to_vector(reused.amounts(e)));
        const auto a = reused.amounts(e);
        EXPECT_EQ(std::accumulate(a.begin(), a.end(), int64_t{0}), totals[static_cast<size_t>(e)])
            << "trial " << trial << " expert " << e;
        for (int64_t x : a) EXPECT_GE(x, 0);
        sum += totals[static_cast<size_t>(e)];
      }
      for (int64_t x : reused.rank_loads()) served += x;
      EXPECT_EQ(served, sum);
      const std::vector<double> dt(totals.begin(), totals.end());
      ASSERT_TRUE(reused_d.balance(dt).ok());
      const auto li = reused.rank_loads();
      const auto ld = reused_d.rank_loads();
      EXPECT_NEAR(*std::max_element(ld.begin(), ld.end()), static_cast<double>(*std::max_element(li.begin(), li.end())),
                  2.0)
          << "trial " << trial;
    }
  }
}

// The planner splits again only the part of a layer a move touches
// (IntervalSearch::split_part): where the whole layer's split runs all
// passes, a connected part (ranks linked by experts with several replica
// ranks) split alone with balance_all_passes gets the same amounts and
// loads, to the bit. Layers of DeepSeek-V3's shape (64 ranks, 256 experts,
// 64 extra replicas of the hottest), where the split runs all passes.
TEST(BatchBalancerProperty, ConnectedPartSplitAloneMatchesTheWholeToTheBit) {
  std::mt19937_64 rng(29);
  constexpr int32_t R = 64, E = 256;
  int compared = 0;
  for (int trial = 0; trial < 6; ++trial) {
    std::vector<std::vector<RankId>> ranks_of(static_cast<size_t>(E));
    for (ExpertId e = 0; e < E; ++e) ranks_of[static_cast<size_t>(e)].push_back(e % R);
    for (int extra = 0; extra < R; ++extra) {
      const auto e = static_cast<size_t>(std::uniform_int_distribution<int32_t>(0, 31)(rng));
      const RankId r = std::uniform_int_distribution<RankId>(0, R - 1)(rng);
      auto& rs = ranks_of[e];
      if (std::find(rs.begin(), rs.end(), r) == rs.end()) rs.push_back(r);
    }
    for (auto& rs : ranks_of) std::sort(rs.begin(), rs.end());
    std::vector<double> totals(static_cast<size_t>(E));
    for (ExpertId e = 0; e < E; ++e)
      totals[static_cast<size_t>(e)] =
          1000.0 / std::sqrt(1.0 + e) * std::uniform_real_distribution<double>(0.5, 1.5)(rng);
    auto whole = *BatchBalancer<double>::create(R, E);
    ASSERT_TRUE(whole.set_replica_ranks(ranks_of).ok());
    ASSERT_TRUE(whole.balance(totals).ok());
    // balance_tracked: the same split, and the passes each expert changed in
    // make up the passes that changed an amount.
    auto tracked = *BatchBalancer<double>::create(R, E);
    ASSERT_TRUE(tracked.set_replica_ranks(ranks_of).ok());
    ASSERT_TRUE(tracked.balance_tracked(totals).ok());
    EXPECT_EQ(to_vector(tracked.rank_loads()), to_vector(whole.rank_loads()));
    EXPECT_EQ(tracked.passes(), whole.passes());
    EXPECT_EQ(tracked.changed_passes(), whole.changed_passes());
    uint32_t masks = 0;
    for (ExpertId e = 0; e < E; ++e)
      if (ranks_of[static_cast<size_t>(e)].size() > 1) masks |= tracked.change_mask(e);
    EXPECT_EQ(masks, whole.changed_passes()) << "trial " << trial;
    if (whole.passes() != BatchBalancer<double>::kMaxPasses) continue;
    // The connected parts: ranks linked by an expert's replica ranks.
    std::vector<int32_t> part(static_cast<size_t>(R));
    std::iota(part.begin(), part.end(), 0);
    for (bool moved = true; moved;) {
      moved = false;
      for (const auto& rs : ranks_of) {
        int32_t least = R;
        for (RankId r : rs) least = std::min(least, part[static_cast<size_t>(r)]);
        for (RankId r : rs)
          if (part[static_cast<size_t>(r)] != least) part[static_cast<size_t>(r)] = least, moved = true;
      }
    }
    for (int32_t id = 0; id < R; ++id) {
      std::vector<std::vector<RankId>> mine(static_cast<size_t>(E));
      bool any = false;
      for (ExpertId e = 0; e < E; ++e)
        if (part[static_cast<size_t>(ranks_of[static_cast<size_t>(e)][0])] == id) {
          mine[static_cast<size_t>(e)] = ranks_of[static_cast<size_t>(e)];
          any = true;
        }
      if (!any) continue;
      auto alone = *BatchBalancer<double>::create(R, E);
      ASSERT_TRUE(alone.set_replica_ranks(mine).ok());
      ASSERT_TRUE(alone.balance_all_passes(totals).ok());
      EXPECT_EQ(alone.passes(), BatchBalancer<double>::kMaxPasses);
      for (RankId r = 0; r < R; ++r) {
        if (part[static_cast<size_t>(r)] != id) continue;
        EXPECT_EQ(alone.rank_loads()[static_cast<size_t>(r)], whole.rank_loads()[static_cast<size_t>(r)])
            << "trial " << trial << " rank " << r;
      }
      for (ExpertId e = 0; e < E; ++e) {
        if (mine[static_cast<size_t>(e)].empty()) continue;
        EXPECT_EQ(to_vector(alone.amounts(e)), to_vector(whole.amounts(e))) << "trial " << trial << " expert " << e;
      }
      ++compared;
    }
  }
  EXPECT_GT(compared, 10);  // layers whose split ran all passes, and their parts
}

TEST(BatchBalancer, RejectsBadInput) {
  EXPECT_EQ(BatchBalancer<int64_t>::create(0, 3).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchBalancer<double>::create(2, -1).status().code(), StatusCode::kInvalidArgument);
  auto b = *BatchBalancer<int64_t>::create(2, 2);
  EXPECT_EQ(b.set_slots(std::vector<ExpertId>{0, 1, 1}, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(b.set_slots(std::vector<ExpertId>{0, 1}, 0).code(), StatusCode::kInvalidArgument);
  const Status bad_expert = b.set_slots(std::vector<ExpertId>{0, 1, 2, -1}, 2);
  EXPECT_EQ(bad_expert.code(), StatusCode::kOutOfRange);
  EXPECT_NE(bad_expert.message().find("slot 2 (rank 1): expert 2"), std::string::npos) << bad_expert;
  // A failed set_slots leaves no replica: every total is dropped.
  ASSERT_TRUE(b.balance(std::vector<int64_t>{5, 5}).ok());
  EXPECT_EQ(to_vector(b.rank_loads()), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(b.set_replica_ranks(std::vector<std::vector<RankId>>{{0}}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(b.set_replica_ranks(std::vector<std::vector<RankId>>{{0}, {2}}).code(), StatusCode::kOutOfRange);
  const Status unsorted = b.set_replica_ranks(std::vector<std::vector<RankId>>{{0}, {1, 0}});
  EXPECT_EQ(unsorted.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unsorted.message().find("expert 1"), std::string::npos) << unsorted;
  EXPECT_EQ(b.set_replica_ranks(std::vector<std::vector<RankId>>{{0}, {1, 1}}).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(b.set_replica_ranks(std::vector<std::vector<RankId>>{{0}, {0, 1}}).ok());
  EXPECT_EQ(b.balance(std::vector<int64_t>{1}).code(), StatusCode::kInvalidArgument);
  const Status negative = b.balance(std::vector<int64_t>{1, -2});
  EXPECT_EQ(negative.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(negative.message().find("expert 1: total -2"), std::string::npos) << negative;
  EXPECT_EQ(b.balance(std::vector<int64_t>{(int64_t{1} << 50) + 1, 0}).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(b.balance(std::vector<int64_t>{int64_t{1} << 50, 0}).ok());
  auto d = *BatchBalancer<double>::create(1, 1);
  ASSERT_TRUE(d.set_slots(std::vector<ExpertId>{0}, 1).ok());
  EXPECT_EQ(d.balance(std::vector<double>{std::nan("")}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(d.balance(std::vector<double>{std::numeric_limits<double>::infinity()}).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace omni
