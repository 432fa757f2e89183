#include "omniplacement/sim/cost_model.h"

#include <gtest/gtest.h>

#include <random>

#include "common/random_placement.h"
#include "omniplacement/core/metrics.h"
#include "unit_cost.h"

namespace omni::sim {
namespace {

Placement make(int32_t R, int32_t E, std::vector<int32_t> spr, std::vector<std::vector<ExpertId>> rows) {
  PlacementLayout p;
  p.num_ranks = R;
  p.num_experts = E;
  p.slots_per_rank = std::move(spr);
  p.phy2log = std::move(rows);
  auto out = Placement::create(p);
  EXPECT_TRUE(out.ok()) << out.status();
  return *out;
}

// 4 ranks on 2 hosts (2 each), rank r holds expert r, loads [8, 4, 4, 0].
// Origins hold 1/4 of each expert's tokens. Sends (tokens): same host
// r0 (12-8)/4 = 1, r1 (12-4)/4 = 2, r2 0, r3 1; cross host r0, r1 (16-12)/4 = 1,
// r2, r3 (16-4)/4 = 3. Receives: same host r0 8/4 = 2, r1 1, r2 1, r3 0; cross
// host (2 origins outside each host) r0 8*2/4 = 4, r1 2, r2 2, r3 0.
// Per rank max(send, recv): same [2, 2, 1, 1], cross [4, 2, 3, 3].
// Dispatch (1 B/token, 1 B/s and 0.5 B/s): r0 max(2, 8) = 8 is the slowest.
// Combine (2 B/token): 16. Compute: 8 tokens on r0. Layer: 8 + 8 + 16 = 32.
TEST(CostModelTest, TwoHostsOneExpertPerRankByHand) {
  const Placement p = make(4, 4, {1}, {{0, 1, 2, 3}});
  const Topology t = *Topology::uniform(4, 2, unit_links(1, 0.5, 0));
  auto m = CostModel::create(p, t, unit_params());
  ASSERT_TRUE(m.ok()) << m.status();
  auto c = m->layer_cost(0, std::vector<double>{8, 4, 4, 0});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->compute_s, 8);
  EXPECT_DOUBLE_EQ(c->dispatch_s, 8);
  EXPECT_DOUBLE_EQ(c->combine_s, 16);
  EXPECT_DOUBLE_EQ(c->time_s, 32);
  EXPECT_DOUBLE_EQ(c->max_tokens, 8);
  EXPECT_DOUBLE_EQ(c->mean_tokens, 4);
  // Sent within hosts 1+2+0+1 = 4 tokens, across 1+1+3+3 = 8; x (1 + 2) bytes.
  EXPECT_DOUBLE_EQ(c->same_host_bytes, 12);
  EXPECT_DOUBLE_EQ(c->cross_host_bytes, 24);
}

// One host, 2 ranks, 2 slots each: r0 {e0, e1}, r1 {e0, empty}; loads [6, 2].
// Compute tokens: r0 6/2 + 2 = 5, r1 3; with 0.25 s per loaded replica r0 takes
// 5 + 0.5 = 5.5. Traffic: r1 sends its 2/2 = 1 token of e1 to r0; r0 sends
// nothing and receives 1. Both ranks move 1 token within the host: dispatch
// 0.5 s latency + 4 B / 2 B/s = 2.5, combine 0.5 + 2/2 = 1.5 (2 B per token).
// Layer: 1 (overhead) + 5.5 + 2.5 + 1.5 = 10.5.
TEST(CostModelTest, ReplicaLatencyAndOverheadByHand) {
  const Placement p = make(2, 2, {2}, {{0, 1, 0, -1}});
  const Topology t = *Topology::single_host(2, unit_links(2, 1, 0.5));
  CostParams params = unit_params();
  params.compute_s_per_replica = 0.25;
  params.dispatch_bytes_per_token = 4;
  params.layer_overhead_s = 1;
  auto m = CostModel::create(p, t, params);
  ASSERT_TRUE(m.ok()) << m.status();
  auto c = m->layer_cost(0, std::vector<double>{6, 2});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->compute_s, 5.5);
  EXPECT_DOUBLE_EQ(c->dispatch_s, 2.5);
  EXPECT_DOUBLE_EQ(c->combine_s, 1.5);
  EXPECT_DOUBLE_EQ(c->time_s, 10.5);
  EXPECT_DOUBLE_EQ(c->cross_host_bytes, 0);
  EXPECT_DOUBLE_EQ(c->same_host_bytes, 1 * (4 + 2));
}

// Shares steer the compute split: e0 served 3/4 by r0 and 1/4 by r1.
TEST(CostModelTest, SharesSetTheComputeSplit) {
  PlacementLayout layout;
  layout.num_ranks = 2;
  layout.num_experts = 2;
  layout.slots_per_rank = {2};
  layout.phy2log = {{0, 1, 0, -1}};
  layout.shares = {{0.75, 1.0, 0.25, 0.0}};
  const Placement p = *Placement::create(layout);
  const Topology t = *Topology::single_host(2, unit_links(1, 1, 0));
  auto c = CostModel::create(p, t, unit_params())->layer_cost(0, std::vector<double>{8, 2});
  ASSERT_TRUE(c.ok());
  EXPECT_DOUBLE_EQ(c->max_tokens, 8);  // r0: 6 + 2; r1: 2
  EXPECT_DOUBLE_EQ(c->compute_s, 8);
}

TEST(CostModelTest, StepSumsLayersAndAveragesTheRatio) {
  // Layer 0 as in TwoHostsOneExpertPerRankByHand (32 s, max/mean 2); layer 1 all
  // load on one local expert per rank, evenly: compute 1 and no traffic.
  const Placement p = make(4, 4, {1, 1}, {{0, 1, 2, 3}, {0, 1, 2, 3}});
  const Topology t = *Topology::uniform(4, 2, unit_links(1, 0.5, 0));
  auto m = CostModel::create(p, t, unit_params());
  ASSERT_TRUE(m.ok());
  const LoadMatrix load = *LoadMatrix::from_counts(2, 4, {8, 4, 4, 0, 1, 1, 1, 1});
  std::vector<LayerCost> layers;
  auto s = m->step_cost(load, &layers);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(layers.size(), 2u);
  // Layer 1: every rank sends 3/4 token (1/4 within, 1/2 across) and receives
  // the same: dispatch max(0.25/1, 0.5/0.5) = 1, combine 2, compute 1 -> 4.
  EXPECT_DOUBLE_EQ(layers[1].time_s, 4);
  EXPECT_DOUBLE_EQ(s->time_s, 36);
  EXPECT_DOUBLE_EQ(s->compute_s, 9);
  EXPECT_DOUBLE_EQ(s->comm_s, 27);
  EXPECT_DOUBLE_EQ(s->mean_max_over_mean, 1.5);
}

TEST(CostModelTest, RejectsBadInput) {
  const Placement p = make(4, 4, {1}, {{0, 1, 2, 3}});
  const Topology t = *Topology::uniform(4, 2);
  CostParams bad = unit_params();
  bad.compute_s_per_token = -1;
  EXPECT_EQ(CostModel::create(p, t, bad).status().code(), StatusCode::kInvalidArgument);
  bad = unit_params();
  bad.expert_bytes = 0;
  EXPECT_FALSE(bad.validate().ok());
  EXPECT_FALSE(CostModel::create(p, *Topology::uniform(8, 2), unit_params()).ok());
  auto m = CostModel::create(p, t, unit_params());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->layer_cost(1, std::vector<double>{1, 1, 1, 1}).status().code(), StatusCode::kOutOfRange);
  EXPECT_FALSE(m->layer_cost(0, std::vector<double>{1, 1, 1}).ok());
  EXPECT_FALSE(m->layer_cost(0, std::vector<double>{1, -1, 1, 1}).ok());
  EXPECT_FALSE(m->step_cost(*LoadMatrix::zeros(2, 4)).ok());
}

// Property: on random placements the model's totals agree with core's metrics:
// the most loaded rank with rank_loads, the traffic split with dispatch_traffic.
TEST(CostModelTest, AgreesWithCoreMetricsOnRandomPlacements) {
  std::mt19937_64 rng(20261126);
  for (int trial = 0; trial < 30; ++trial) {
    const int32_t hosts = 1 + static_cast<int32_t>(rng() % 4);
    const int32_t per_host = 1 + static_cast<int32_t>(rng() % 4);
    const int32_t R = hosts * per_host;
    const int32_t E = R + static_cast<int32_t>(rng() % 20);
    auto layout = testing::random_layout(rng, 3, R, E, 0, 2, /*no_dups=*/trial % 2 == 0);
    const Placement p = *Placement::create(layout);
    const LoadMatrix load = testing::random_load(rng, 3, E);
    const Topology t = *Topology::uniform(R, per_host, unit_links(3, 1, 0));
    auto m = CostModel::create(p, t, unit_params());
    ASSERT_TRUE(m.ok()) << m.status();
    std::vector<LayerCost> layers;
    ASSERT_TRUE(m->step_cost(load, &layers).ok());
    for (LayerId l = 0; l < 3; ++l) {
      const auto loads = *rank_loads(p, load, l);
      const double max_load = *std::max_element(loads.begin(), loads.end());
      EXPECT_NEAR(layers[static_cast<size_t>(l)].max_tokens, max_load, 1e-9 * (1 + max_load));
      const TrafficSplit split = *dispatch_traffic(p, load, t, l);
      const double total = load.layer_total(l);
      EXPECT_NEAR(layers[static_cast<size_t>(l)].cross_host_bytes, split.cross_host * total * 3, 1e-6 * (1 + total));
      EXPECT_NEAR(layers[static_cast<size_t>(l)].same_host_bytes, split.same_host * total * 3, 1e-6 * (1 + total));
      // Communication is never negative and a one-host topology sends nothing across.
      EXPECT_GE(layers[static_cast<size_t>(l)].dispatch_s, 0);
      if (hosts == 1) {
        EXPECT_EQ(layers[static_cast<size_t>(l)].cross_host_bytes, 0);
      }
    }
  }
}

// Two layers, 4 ranks on 2 hosts, 1 expert each plus an empty slot.
// Layer 0: e0 gets a second replica on r1 (same host, from r0).
// Layer 1: e3 (on r3) gets a second replica on r0 (cross host).
// diff(): 2 transfers x 10 bytes in one round. r0 sends one within the host
// (1 s latency + 10/5) and receives one across (1 + 10/1 = 11 s): the round,
// and the migration, take 11 s.
TEST(CostModelTest, MigrationByHand) {
  const Placement from = make(4, 4, {2, 2}, {{0, -1, 1, -1, 2, -1, 3, -1}, {0, -1, 1, -1, 2, -1, 3, -1}});
  const Placement to = make(4, 4, {2, 2}, {{0, -1, 1, 0, 2, -1, 3, -1}, {0, 3, 1, -1, 2, -1, 3, -1}});
  const Topology t = *Topology::uniform(4, 2, unit_links(5, 1, 1));
  auto c = migration_cost(from, to, t, unit_params());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->transfers, 2);
  EXPECT_EQ(c->rounds, 1);
  EXPECT_DOUBLE_EQ(c->bytes, 20);
  EXPECT_DOUBLE_EQ(c->cross_host_bytes, 10);
  EXPECT_DOUBLE_EQ(c->time_s, 11);
  auto none = migration_cost(from, from, t, unit_params());
  EXPECT_EQ(none->transfers, 0);
  EXPECT_DOUBLE_EQ(none->time_s, 0);
  EXPECT_FALSE(migration_cost(from, make(4, 4, {1}, {{0, 1, 2, 3}}), t, unit_params()).ok());
}

// W/R = 4 and water-filling gives max(8/3, 4, 2, 2) = 4 for [8, 4, 2, 2] on
// 4 ranks with 6 slots: 4 tokens x 2 s + 1 s overhead = 9 s, bound/mean = 1.
// With 8 ranks and 4 slots: bound 8 (the hottest expert), mean 2 -> ratio 4.
TEST(CostModelTest, LowerBoundByHand) {
  CostParams params = unit_params();
  params.compute_s_per_token = 2;
  params.layer_overhead_s = 1;
  const LoadMatrix load = *LoadMatrix::from_counts(1, 4, {8, 4, 2, 2});
  const std::vector<int64_t> six = {6};
  auto b = step_lower_bound(load, 4, six, params);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_DOUBLE_EQ(b->time_s, 9);
  EXPECT_DOUBLE_EQ(b->bound_over_mean, 1);
  const std::vector<int64_t> four = {4};
  EXPECT_DOUBLE_EQ(step_lower_bound(load, 8, four, params)->bound_over_mean, 4);
  const std::vector<int64_t> three = {3};
  EXPECT_FALSE(step_lower_bound(load, 4, three, params).ok());
  EXPECT_FALSE(step_lower_bound(load, 0, six, params).ok());
}

}  // namespace
}  // namespace omni::sim
