#include "omniplacement/core/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/random_placement.h"

namespace omni {
namespace {

// 1 layer, 2 ranks, 3 experts: [0, 1 | 2, 0]; loads e0 = 10, e1 = 4, e2 = 6.
Placement small() {
  PlacementLayout p;
  p.num_ranks = 2;
  p.num_experts = 3;
  p.slots_per_rank = {2};
  p.phy2log = {{0, 1, 2, 0}};
  return *Placement::create(p);
}
LoadMatrix small_load() { return *LoadMatrix::from_counts(1, 3, {10, 4, 6}); }

TEST(MetricsTest, EvenSplitRankLoadsByHand) {
  auto loads = rank_loads(small(), small_load(), 0);
  ASSERT_TRUE(loads.ok()) << loads.status();
  // rank 0: 10/2 + 4 = 9; rank 1: 6 + 10/2 = 11.
  EXPECT_EQ(*loads, (std::vector<double>{9, 11}));
  auto b = layer_balance(small(), small_load(), 0);
  ASSERT_TRUE(b.ok());
  EXPECT_DOUBLE_EQ(b->mean, 10);
  EXPECT_DOUBLE_EQ(b->max, 11);
  EXPECT_EQ(b->max_rank, 1);
  EXPECT_DOUBLE_EQ(b->max_over_mean, 1.1);
  EXPECT_NEAR(b->imbalance, 0.1, 1e-12);
  EXPECT_DOUBLE_EQ(b->balancedness, 10.0 / 11.0);
  // Bound: W/R = 10; water-filling gives e0 two replicas, max(5, 4, 6) = 6 -> 10.
  EXPECT_DOUBLE_EQ(b->lower_bound, 10);
  EXPECT_NEAR(b->excess, 0.1, 1e-12);
}

TEST(MetricsTest, SharesSplitUnevenlyAndEvenFigureStaysAvailable) {
  PlacementLayout layout = small().layout();
  layout.shares = {{0.75, 1.0, 1.0, 0.25}};
  Placement p = *Placement::create(layout);
  auto with = rank_loads(p, small_load(), 0, SplitMode::kShares);
  auto even = rank_loads(p, small_load(), 0, SplitMode::kEven);
  EXPECT_EQ(*with, (std::vector<double>{11.5, 8.5}));
  EXPECT_EQ(*even, (std::vector<double>{9, 11}));
}

TEST(MetricsTest, WaterFillingByHand) {
  std::vector<double> w = {8, 4, 2, 2};
  // Extra slot 1 -> e0 (8); extra slot 2: e0 at 4 ties e1 at 4, lowest id wins -> e0.
  EXPECT_EQ(water_fill_counts(w, 6), (std::vector<int32_t>{3, 1, 1, 1}));
  EXPECT_DOUBLE_EQ(lower_bound(w, 2, 6), 8.0);   // W/R dominates
  EXPECT_DOUBLE_EQ(lower_bound(w, 4, 6), 4.0);   // max(4, 8/3, 4, 2, 2)
  EXPECT_DOUBLE_EQ(lower_bound(w, 8, 4), 8.0);   // no redundancy: the hottest expert
  EXPECT_DOUBLE_EQ(lower_bound(std::vector<double>{0, 0}, 2, 4), 0.0);
}

TEST(MetricsTest, EmptyLoadIsPerfectlyBalanced) {
  auto zero = LoadMatrix::zeros(1, 3);
  auto b = layer_balance(small(), *zero, 0);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->max_over_mean, 1.0);
  EXPECT_EQ(b->balancedness, 1.0);
  EXPECT_EQ(b->excess, 0.0);
}

TEST(MetricsTest, PlacementBalanceAggregates) {
  PlacementLayout l;
  l.num_ranks = 2;
  l.num_experts = 2;
  l.slots_per_rank = {1, 1};
  l.phy2log = {{0, 1}, {0, 1}};
  Placement p = *Placement::create(l);
  auto load = LoadMatrix::from_counts(2, 2, {3, 1, 2, 2});
  auto b = placement_balance(p, *load);
  ASSERT_TRUE(b.ok());
  // layer 0: max 3, mean 2 -> 1.5; layer 1: 1.0.
  EXPECT_DOUBLE_EQ(b->mean_max_over_mean, 1.25);
  EXPECT_DOUBLE_EQ(b->sum_max, 5);
  EXPECT_DOUBLE_EQ(b->balancedness, 4.0 / 5.0);
}

TEST(MetricsTest, DuplicatesCountWastedReplicas) {
  PlacementLayout l;
  l.num_ranks = 2;
  l.num_experts = 2;
  l.slots_per_rank = {3};
  l.phy2log = {{0, 0, 0, 1, 1, -1}};
  Placement p = *Placement::create(l);
  EXPECT_EQ(same_rank_duplicates(p, 0), 3);
  EXPECT_EQ(same_rank_duplicates(p), 3);
}

TEST(MetricsTest, TrafficByHand) {
  auto two_hosts = Topology::uniform(2, 1);
  auto t = dispatch_traffic(small(), small_load(), *two_hosts, 0);
  ASSERT_TRUE(t.ok()) << t.status();
  // e0 on both ranks: 10 local. e1 on rank 0: 2 local, 2 cross. e2 on rank 1: 3 local, 3 cross.
  EXPECT_DOUBLE_EQ(t->total, 20);
  EXPECT_DOUBLE_EQ(t->same_rank, 0.75);
  EXPECT_DOUBLE_EQ(t->same_host, 0.0);
  EXPECT_DOUBLE_EQ(t->cross_host, 0.25);
  auto one_host = Topology::uniform(2, 2);
  auto u = dispatch_traffic(small(), small_load(), *one_host);
  EXPECT_DOUBLE_EQ(u->same_host, 0.25);
  EXPECT_DOUBLE_EQ(u->cross_host, 0.0);
}

TEST(MetricsTest, RejectsMismatchedShapes) {
  auto load = LoadMatrix::from_counts(1, 4, {1, 2, 3, 4});
  auto r = rank_loads(small(), *load, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("1 layers x 3 experts but the load is 1 x 4"), std::string::npos) << r.status();
  EXPECT_EQ(rank_loads(small(), small_load(), 1).status().code(), StatusCode::kOutOfRange);
  std::vector<double> bad = {1, std::nan(""), 2};
  EXPECT_FALSE(rank_loads(small(), 0, bad).ok());
  std::vector<double> ok = {1, 2, 3};
  std::vector<double> short_shares = {1.0};
  EXPECT_FALSE(rank_loads(small(), 0, ok, short_shares).ok());
  EXPECT_FALSE(dispatch_traffic(small(), small_load(), *Topology::uniform(4, 2)).ok());
}

TEST(MetricsTest, HugeCountsDoNotOverflow) {
  const int64_t big = kMaxLayerLoad / 3;  // the largest counts a layer may hold
  auto load = LoadMatrix::from_counts(1, 3, {big, big, big});
  auto b = layer_balance(small(), *load, 0);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(std::isfinite(b->max));
  EXPECT_NEAR(b->total, 3.0 * static_cast<double>(big), 1e3 * static_cast<double>(big) * 1e-12);
  EXPECT_NEAR(b->max_over_mean, 1.0, 1e-12);
}

// Properties on random placements and loads (fixed seed): rank loads add up
// to the layer total, max >= lower bound, traffic fractions sum to 1, and a
// single host never has cross-host traffic.
TEST(MetricsProperty, RandomPlacementsRespectInvariants) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 150; ++trial) {
    const int32_t R = std::uniform_int_distribution<int32_t>(1, 16)(rng);
    const int32_t E = std::uniform_int_distribution<int32_t>(1, 64)(rng);
    const int32_t L = std::uniform_int_distribution<int32_t>(1, 3)(rng);
    Placement p = *Placement::create(testing::random_layout(rng, L, R, E, 0, 2));
    LoadMatrix load = testing::random_load(rng, L, E);
    int32_t per_host = 1;
    for (int32_t k = 1; k <= R; ++k)
      if (R % k == 0 && k <= 4) per_host = k;
    Topology topo = *Topology::uniform(R, per_host);
    for (LayerId l = 0; l < L; ++l) {
      auto loads = rank_loads(p, load, l);
      ASSERT_TRUE(loads.ok());
      double sum = 0;
      for (double v : *loads) sum += v;
      ASSERT_NEAR(sum, load.layer_total(l), 1e-9 * (1 + sum));
      auto b = layer_balance(p, load, l);
      ASSERT_GE(b->max + 1e-9, b->lower_bound) << "trial " << trial << " layer " << l;
      ASSERT_GE(b->max_over_mean + 1e-12, 1.0);
      auto t = dispatch_traffic(p, load, topo, l);
      ASSERT_NEAR(t->same_rank + t->same_host + t->cross_host, t->total > 0 ? 1.0 : 0.0, 1e-9);
    }
    auto single = dispatch_traffic(p, load, *Topology::single_host(R));
    ASSERT_EQ(single->cross_host, 0.0);
  }
}

}  // namespace
}  // namespace omni
