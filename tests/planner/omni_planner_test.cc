// omni planner: properties on random inputs (every expert placed, capacities,
// caps, no duplicates, determinism, no worse than eplb) and small exact cases.
#include "omniplacement/planner/omni_planner.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "common/plan_with.h"
#include "common/random_placement.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/planner/planner.h"

namespace omni {
namespace {

using testing::plan_with;

void expect_valid(const PlanResult& r, const PlanInput& in, int32_t cap, const std::string& what) {
  ValidationRules rules;
  rules.forbid_same_rank_duplicates = true;
  rules.max_replicas_per_expert = cap;
  const auto v = r.placement.validate(rules);
  EXPECT_TRUE(v.empty()) << what << ": " << violations_to_status(v);
  EXPECT_EQ(r.stats.same_rank_duplicates, 0) << what;
  EXPECT_EQ(r.placement.num_layers(), in.load->num_layers());
  EXPECT_EQ(r.placement.num_ranks(), in.num_ranks);
  // replica_rank is a permutation of 0..count-1 per expert.
  for (LayerId l = 0; l < r.placement.num_layers(); ++l)
    for (ExpertId e = 0; e < r.placement.num_experts(); ++e) {
      std::vector<int32_t> ranks;
      for (GlobalSlot g : r.placement.replicas(l, e)) ranks.push_back(r.replica_rank[static_cast<size_t>(l)][static_cast<size_t>(g)]);
      std::sort(ranks.begin(), ranks.end());
      for (size_t k = 0; k < ranks.size(); ++k) ASSERT_EQ(ranks[k], static_cast<int32_t>(k)) << what;
    }
}

TEST(OmniPlanner, RandomInputsRespectEveryConstraint) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 60; ++trial) {
    const int32_t R = 2 + trial % 9;
    const int32_t E = R * (1 + trial % 4) + trial % 3;
    const int32_t L = 1 + trial % 3;
    LoadMatrix load = testing::random_load(rng, L, E, 0.5 + 0.25 * (trial % 6));
    PlanInput in;
    in.load = &load;
    in.num_ranks = R;
    const int32_t base = (E + R - 1) / R;
    in.slots_per_rank = {base + trial % 3};
    if (trial % 5 == 0) in.slots_per_rank = std::vector<int32_t>(static_cast<size_t>(L), base), in.slots_per_rank.back() += 2;
    const int32_t cap = trial % 4 == 0 ? 2 : 0;
    const std::string spec = cap ? "omni(max_replicas_per_expert=2)" : "omni";
    auto r = plan_with(spec, in);
    ASSERT_TRUE(r.ok()) << r.status();
    expect_valid(*r, in, cap, "trial " + std::to_string(trial));
    auto again = plan_with(spec, in);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(r->placement, again->placement) << "not deterministic, trial " << trial;
  }
}

TEST(OmniPlanner, NoWorseThanEplbOnRandomLoads) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 30; ++trial) {
    const int32_t R = 4 << (trial % 3);
    const int32_t E = R * (2 + trial % 3);
    LoadMatrix load = testing::random_load(rng, 3, E, 1.0);
    PlanInput in;
    in.load = &load;
    in.num_ranks = R;
    in.num_replicas = static_cast<int64_t>(E) + R * (trial % 3);
    auto o = plan_with("omni", in);
    auto e = plan_with("eplb", in);
    ASSERT_TRUE(o.ok() && e.ok());
    auto bo = placement_balance(o->placement, load);
    auto be = placement_balance(e->placement, load);
    for (LayerId l = 0; l < 3; ++l) {
      EXPECT_LE(bo->layers[static_cast<size_t>(l)].max, be->layers[static_cast<size_t>(l)].max * (1 + 1e-9))
          << "trial " << trial << " layer " << l;
    }
  }
}

TEST(OmniPlanner, ReachesTheLowerBoundOnASmallExactCase) {
  // 4 experts of loads 7, 5, 4, 2 on 2 ranks, 2 slots each: {7,2} and {5,4} give 9 = W / R.
  auto load = LoadMatrix::from_counts(1, 4, {7, 5, 4, 2});
  PlanInput in;
  in.load = &*load;
  in.num_ranks = 2;
  in.num_replicas = 4;
  auto r = plan_with("omni", in);
  ASSERT_TRUE(r.ok());
  auto b = layer_balance(r->placement, *load, 0);
  EXPECT_DOUBLE_EQ(b->max, 9.0);
}

TEST(OmniPlanner, RespectsTheReplicaCap) {
  // One very hot expert would take every redundant slot without a cap.
  auto load = LoadMatrix::from_counts(1, 8, {10000, 1, 1, 1, 1, 1, 1, 1});
  PlanInput in;
  in.load = &*load;
  in.num_ranks = 4;
  in.num_replicas = 16;
  auto capped = plan_with("omni(max_replicas_per_expert=3)", in);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->placement.replica_count(0, 0), 3);
  auto free = plan_with("omni", in);
  ASSERT_TRUE(free.ok());
  EXPECT_EQ(free->placement.replica_count(0, 0), 4);  // at most one per rank
  expect_valid(*free, in, 4, "uncapped");
}

TEST(OmniPlanner, SharesReachTheBoundWhereEvenSplitCannot) {
  // Expert 0 (load 90) on two ranks with experts of loads 30 and 0: the even
  // split gives 45 + 30 = 75 on one rank; shares 30/60 give 60 on both.
  auto load = LoadMatrix::from_counts(1, 3, {90, 30, 0});
  PlanInput in;
  in.load = &*load;
  in.num_ranks = 2;
  in.num_replicas = 4;
  auto r = plan_with("omni(shares=true)", in);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->placement.has_shares());
  auto even = layer_balance(r->placement, *load, 0, SplitMode::kEven);
  auto shared = layer_balance(r->placement, *load, 0, SplitMode::kShares);
  EXPECT_NEAR(shared->max, 60.0, 1e-6);
  EXPECT_LE(shared->max, even->max + 1e-9);
}

TEST(OmniPlanner, SharesNeverWorseThanEvenOnRandomLoads) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const int32_t R = 4 + trial % 5;
    const int32_t E = 3 * R;
    LoadMatrix load = testing::random_load(rng, 2, E, 1.2);
    PlanInput in;
    in.load = &load;
    in.num_ranks = R;
    in.num_replicas = E + R;
    auto r = plan_with("omni(shares=true)", in);
    ASSERT_TRUE(r.ok()) << r.status();
    auto even = placement_balance(r->placement, load, SplitMode::kEven);
    auto shared = placement_balance(r->placement, load, SplitMode::kShares);
    EXPECT_LE(shared->sum_max, even->sum_max * (1 + 1e-9));
    EXPECT_GE(shared->sum_max, shared->sum_lower_bound * (1 - 1e-9));
  }
}

TEST(OmniPlanner, TimeBudgetStillGivesAValidPlan) {
  std::mt19937_64 rng(3);
  LoadMatrix load = testing::random_load(rng, 8, 64, 1.5);
  PlanInput in;
  in.load = &load;
  in.num_ranks = 16;
  in.num_replicas = 80;
  auto r = plan_with("omni(time_budget_ms=0.001)", in);
  ASSERT_TRUE(r.ok());
  expect_valid(*r, in, 0, "budget");
}

TEST(OmniPlanner, SpreadKeepsReplicasOnDistinctHostsAndCutsCrossHostTraffic) {
  std::mt19937_64 rng(9);
  LoadMatrix load = testing::random_load(rng, 4, 64, 1.0);
  auto topo = Topology::uniform(16, 4);
  PlanInput in;
  in.load = &load;
  in.num_ranks = 16;
  in.num_replicas = 128;  // plenty of redundancy
  in.topology = &*topo;
  auto flat = plan_with("omni", in);
  auto spread = plan_with("omni(locality=spread)", in);
  ASSERT_TRUE(flat.ok() && spread.ok()) << spread.status();
  expect_valid(*spread, in, 0, "spread");
  auto tf = dispatch_traffic(flat->placement, load, *topo);
  auto ts = dispatch_traffic(spread->placement, load, *topo);
  EXPECT_LT(ts->cross_host, tf->cross_host);
}

TEST(OmniPlanner, GroupLocalityKeepsEachGroupOnOneHost) {
  std::mt19937_64 rng(13);
  LoadMatrix load = testing::random_load(rng, 3, 64, 0.5);
  PlanInput in;
  in.load = &load;
  in.num_ranks = 16;
  in.num_replicas = 96;
  in.num_nodes = 4;
  in.num_groups = 8;
  auto r = plan_with("omni(locality=groups,locality_slack=10)", in);
  ASSERT_TRUE(r.ok()) << r.status();
  expect_valid(*r, in, 0, "groups");
  auto topo = Topology::uniform(16, 4);
  for (LayerId l = 0; l < 3; ++l)
    for (int32_t g = 0; g < 8; ++g) {
      std::set<HostId> hosts;
      for (ExpertId e = g * 8; e < g * 8 + 8; ++e)
        for (GlobalSlot s : r->placement.replicas(l, e)) hosts.insert(topo->host_of(r->placement.rank_of(l, s)));
      EXPECT_EQ(hosts.size(), 1u) << "layer " << l << " group " << g;
    }
}

TEST(OmniPlanner, LocalityErrors) {
  auto load = LoadMatrix::from_counts(1, 6, {1, 2, 3, 4, 5, 6});
  PlanInput in;
  in.load = &*load;
  in.num_ranks = 4;
  in.num_replicas = 8;
  in.num_nodes = 2;
  in.num_groups = 4;  // 6 % 4 != 0
  auto r = plan_with("omni(locality=groups)", in);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("multiple of num_groups"), std::string::npos) << r.status();
  auto c = plan_with("omni(locality=coactivation)", in);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("coactivation is required"), std::string::npos) << c.status();
}

}  // namespace
}  // namespace omni
