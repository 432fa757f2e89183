// CostModel with DispatchMode::kPerBatch: hand-computed cases against the
// shares split, and agreement with the runtime's split_batch on random inputs.
// (The planner's score against the same split: tests/planner/omni_per_batch_test.cc.)
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "common/random_placement.h"
#include "omniplacement/dispatch/batch_split.h"
#include "omniplacement/sim/cost_model.h"
#include "unit_cost.h"

namespace omni::sim {
namespace {

// One host, 2 ranks, 2 slots each: r0 {e0, e1}, r1 {e0, empty}, even shares;
// this step's loads [6, 2].
// Shares: e0 splits 3 / 3, so r0 = 3 + 2 = 5, r1 = 3: max 5.
// Per batch: e1 has one replica (r0 = 2); e0 water-fills {r0, r1} from
// (2, 0) to the level (6 + 2 + 0) / 2 = 4: r0 gets 2, r1 gets 4: max 4.
// Traffic: shares (nearest replica): e1's 1 token from r1 to r0. Per batch:
// e0's split flows (each rank originates 3 of e0; r0 serves 2 of its own, r1
// 3 of its own and 1 from r0) add 1 token r0 -> r1, so each rank still sends
// and receives at most 1: the same phase times. Per batch adds the
// all-gather, 0.125 s. So time(per batch) = time(shares) - 1 + 0.125.
TEST(PerBatchDispatchTest, WaterFillsTheStepsLoadsByHand) {
  const Placement p = *Placement::create(PlacementLayout{2, 2, {2}, {{0, 1, 0, -1}}, {}});
  const Topology t = *Topology::single_host(2, unit_links(2, 1, 0.5));
  auto shares = CostModel::create(p, t, unit_params(DispatchMode::kShares));
  auto batch = CostModel::create(p, t, unit_params(DispatchMode::kPerBatch));
  ASSERT_TRUE(shares.ok()) << shares.status();
  ASSERT_TRUE(batch.ok()) << batch.status();
  const std::vector<double> w = {6, 2};
  auto s = shares->layer_cost(0, w);
  auto b = batch->layer_cost(0, w);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_DOUBLE_EQ(s->max_tokens, 5);
  EXPECT_DOUBLE_EQ(b->max_tokens, 4);
  EXPECT_DOUBLE_EQ(s->compute_s, 5);
  EXPECT_DOUBLE_EQ(b->compute_s, 4);
  EXPECT_DOUBLE_EQ(s->allgather_s, 0);
  EXPECT_DOUBLE_EQ(b->allgather_s, 0.125);
  EXPECT_DOUBLE_EQ(b->dispatch_s, s->dispatch_s);
  EXPECT_DOUBLE_EQ(b->combine_s, s->combine_s);
  EXPECT_DOUBLE_EQ(b->time_s, s->time_s - 1 + 0.125);
  EXPECT_DOUBLE_EQ(b->mean_tokens, 4);

  // A step with no load costs nothing, all-gather included.
  auto idle = batch->layer_cost(0, std::vector<double>{0, 0});
  ASSERT_TRUE(idle.ok());
  EXPECT_DOUBLE_EQ(idle->time_s, 0);

  // Fractional loads (frequencies) are scaled, split and scaled back: the
  // same split as [6, 2] up to rounding at 2^32 per layer.
  auto f = batch->layer_cost(0, std::vector<double>{0.6, 0.2});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NEAR(f->max_tokens, 0.4, 1e-9);

  // Over a step the all-gather counts as communication.
  const LoadMatrix load = *LoadMatrix::from_counts(1, 2, {6, 2});
  auto step = batch->step_cost(load);
  ASSERT_TRUE(step.ok());
  EXPECT_DOUBLE_EQ(step->comm_s, b->dispatch_s + b->combine_s + 0.125);
  EXPECT_DOUBLE_EQ(step->mean_max_over_mean, 1.0);
}

// Per-batch traffic follows the split's flows. Two hosts of one rank each:
// r0 {e0, e1}, r1 {e0, empty}; loads [100, 100].
// Shares: e0 50 / 50, so r0 = 150; e0's origins use their own replica, only
// e1's 50 tokens from r1 cross: 50 tokens cross hosts.
// Per batch: r0 holds e1's 100, so e0 goes all to r1 (level 100, max 100);
// r1 serves its own 50 of e0 and takes r0's 50 across hosts, and e1's 50
// still cross from r1 to r0: 100 tokens cross, each rank sends and
// receives 50.
TEST(PerBatchDispatchTest, TrafficFollowsTheSplitsFlowsByHand) {
  const Placement p = *Placement::create(PlacementLayout{2, 2, {2}, {{0, 1, 0, -1}}, {}});
  const Topology t = *Topology::uniform(2, 1, unit_links(1, 1, 0));
  auto s = CostModel::create(p, t, unit_params(DispatchMode::kShares))->layer_cost(0, std::vector<double>{100, 100});
  auto b = CostModel::create(p, t, unit_params(DispatchMode::kPerBatch))->layer_cost(0, std::vector<double>{100, 100});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_DOUBLE_EQ(s->max_tokens, 150);
  EXPECT_DOUBLE_EQ(b->max_tokens, 100);
  EXPECT_GT(s->cross_host_bytes, 0);
  EXPECT_DOUBLE_EQ(b->cross_host_bytes, 2 * s->cross_host_bytes);
  EXPECT_DOUBLE_EQ(b->same_host_bytes, 0);
  // Per rank the busiest class moves 50 tokens in both modes.
  EXPECT_DOUBLE_EQ(b->dispatch_s, s->dispatch_s);
}

// Shares planned for another load keep the split the plan chose; per batch
// follows the step. r0 {e0, e1}, r1 {e0, e2}, e0's shares 0.9 / 0.1 (the plan
// saw r1 busy with e2); this step e2 is idle: loads [10, 1, 0].
// Shares: r0 = 9 + 1 = 10, r1 = 1: max 10. Per batch: r0 = 1, r1 = 0, e0
// fills both to (10 + 1) / 2 = 5.5, rounded: 11 tokens as 5 / 6 or 6 / 5 (max 6).
TEST(PerBatchDispatchTest, IgnoresStaleSharesByHand) {
  PlacementLayout layout{2, 3, {2}, {{0, 1, 0, 2}}, {}};
  layout.shares = {{0.9, 1.0, 0.1, 1.0}};
  const Placement p = *Placement::create(layout);
  const Topology t = *Topology::single_host(2, unit_links(1, 1, 0));
  auto s = CostModel::create(p, t, unit_params(DispatchMode::kShares))->layer_cost(0, std::vector<double>{10, 1, 0});
  auto b = CostModel::create(p, t, unit_params(DispatchMode::kPerBatch))->layer_cost(0, std::vector<double>{10, 1, 0});
  ASSERT_TRUE(s.ok() && b.ok());
  EXPECT_DOUBLE_EQ(s->max_tokens, 10);
  EXPECT_DOUBLE_EQ(b->max_tokens, 6);
}

// The simulator's per-batch rank loads are the runtime's: on random
// placements and integer loads, the busiest rank matches split_batch's
// rank_load whatever rank the tokens originate on.
TEST(PerBatchDispatchTest, AgreesWithRuntimeSplitOnRandomPlacements) {
  std::mt19937_64 rng(20261126);
  for (int trial = 0; trial < 30; ++trial) {
    const int32_t hosts = 1 + static_cast<int32_t>(rng() % 3);
    const int32_t per_host = 1 + static_cast<int32_t>(rng() % 4);
    const int32_t R = hosts * per_host;
    const int32_t E = R + static_cast<int32_t>(rng() % 20);
    const Placement p = *Placement::create(testing::random_layout(rng, 2, R, E, 0, 2, trial % 2 == 0));
    const Topology t = *Topology::uniform(R, per_host, unit_links(3, 1, 0));
    std::vector<int64_t> counts(static_cast<size_t>(2 * E));
    for (auto& c : counts) c = static_cast<int64_t>(rng() % 500);
    const LoadMatrix load = *LoadMatrix::from_counts(2, E, counts);
    auto m = CostModel::create(p, t, unit_params(DispatchMode::kPerBatch));
    ASSERT_TRUE(m.ok()) << m.status();
    std::vector<LayerCost> layers;
    ASSERT_TRUE(m->step_cost(load, &layers).ok());
    for (LayerId l = 0; l < 2; ++l) {
      // Spread each expert's tokens over random origin ranks.
      std::vector<int64_t> per_rank(static_cast<size_t>(R) * static_cast<size_t>(E), 0);
      for (ExpertId e = 0; e < E; ++e) {
        int64_t left = counts[static_cast<size_t>(l * E + e)];
        for (RankId q = 0; q < R && left > 0; ++q) {
          const int64_t c = q + 1 == R ? left : static_cast<int64_t>(rng() % static_cast<uint64_t>(left + 1));
          per_rank[static_cast<size_t>(q) * static_cast<size_t>(E) + static_cast<size_t>(e)] = c;
          left -= c;
        }
      }
      auto split = split_batch(p, l, t, 0, per_rank);
      ASSERT_TRUE(split.ok()) << split.status();
      const int64_t busiest = *std::max_element(split->rank_load.begin(), split->rank_load.end());
      EXPECT_DOUBLE_EQ(layers[static_cast<size_t>(l)].max_tokens, static_cast<double>(busiest))
          << "trial " << trial << " layer " << l;
    }
  }
}

TEST(PerBatchDispatchTest, ParsesAndRejectsModes) {
  EXPECT_EQ(*parse_dispatch_mode("shares"), DispatchMode::kShares);
  EXPECT_EQ(*parse_dispatch_mode("per-batch"), DispatchMode::kPerBatch);
  EXPECT_STREQ(dispatch_mode_name(DispatchMode::kPerBatch), "per-batch");
  const auto bad = parse_dispatch_mode("perbatch");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("shares, per-batch"), std::string::npos) << bad.status();
  CostParams p;
  p.batch_allgather_s = -1;
  EXPECT_FALSE(p.validate().ok());
}

}  // namespace
}  // namespace omni::sim
