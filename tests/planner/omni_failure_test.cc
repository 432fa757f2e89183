// Failure-aware omni options (issue 9): spread_hosts puts the replicas of every
// expert with two or more on at least two hosts; protect gives the heaviest
// experts their second replica first. Properties on seeded random inputs, the
// coverage metric they improve, the spec and the errors.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "common/plan_with.h"
#include "common/random_placement.h"
#include "omniplacement/core/coverage.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/planner/omni_planner.h"
#include "omniplacement/planner/planner.h"

namespace omni {
namespace {

using testing::plan_with;

TEST(OmniFailureAware, SpreadHostsPutsEveryMultiReplicaExpertOnTwoHosts) {
  std::mt19937_64 rng(21);
  int checked = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const int32_t H = 2 + trial % 3;               // 2..4 hosts
    const int32_t R = H * (1 + trial % 4);         // 1..4 ranks per host
    const int32_t E = R * (1 + trial % 3) + trial % 5;
    const int32_t L = 1 + trial % 2;
    LoadMatrix load = testing::random_load(rng, L, E, 0.5 + 0.3 * (trial % 4));
    auto topo = Topology::uniform(R, R / H);
    ASSERT_TRUE(topo.ok());
    PlanInput in;
    in.load = &load;
    in.num_ranks = R;
    in.topology = &*topo;
    in.slots_per_rank = {(E + R - 1) / R + 1 + trial % 3};
    const std::string spec = trial % 3 == 0 ? "omni(spread_hosts=true,max_replicas_per_expert=2)"
                                            : "omni(spread_hosts=true)";
    auto r = plan_with(spec, in);
    ASSERT_TRUE(r.ok()) << r.status();
    ValidationRules rules;
    rules.forbid_same_rank_duplicates = true;
    EXPECT_TRUE(r->placement.validate(rules).empty()) << "trial " << trial;
    for (LayerId l = 0; l < L; ++l)
      for (ExpertId e = 0; e < E; ++e) {
        const auto reps = r->placement.replicas(l, e);
        if (reps.size() < 2) continue;
        std::set<HostId> hosts;
        for (GlobalSlot g : reps) hosts.insert(topo->host_of(r->placement.rank_of(l, g)));
        EXPECT_GE(hosts.size(), 2u) << "trial " << trial << " (" << spec << ", " << R << " ranks on " << H
                                    << " hosts) layer " << l << " expert " << e;
        ++checked;
      }
    auto again = plan_with(spec, in);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->placement, r->placement) << "trial " << trial << ": not deterministic";
  }
  EXPECT_GT(checked, 500);  // the property was exercised on many replicated experts
}

TEST(OmniFailureAware, SpreadHostsHoldsForIncrementalPlansWithoutAMoveLimit) {
  std::mt19937_64 rng(8);
  for (int trial = 0; trial < 10; ++trial) {
    LoadMatrix load = testing::random_load(rng, 2, 24, 1.0 + 0.2 * trial);
    auto topo = Topology::uniform(8, 2 + 2 * (trial % 2));
    auto current = Placement::contiguous(2, 8, 24, 4);  // 8 redundant slots per layer, empty
    ASSERT_TRUE(current.ok());
    PlanInput in;
    in.load = &load;
    in.num_ranks = 8;
    in.topology = &*topo;
    in.slots_per_rank = {4};
    in.current = &*current;
    auto r = plan_with("omni(spread_hosts=true)", in);
    ASSERT_TRUE(r.ok()) << r.status();
    for (LayerId l = 0; l < 2; ++l)
      for (ExpertId e = 0; e < 24; ++e) {
        const auto reps = r->placement.replicas(l, e);
        std::set<HostId> hosts;
        for (GlobalSlot g : reps) hosts.insert(topo->host_of(r->placement.rank_of(l, g)));
        if (reps.size() >= 2) {
          EXPECT_GE(hosts.size(), 2u) << "trial " << trial << " layer " << l << " expert " << e;
        }
      }
  }
}

TEST(OmniFailureAware, SpreadHostsRaisesHostCoverageAndKeepsBalance) {
  std::mt19937_64 rng(5);
  LoadMatrix load = testing::random_load(rng, 6, 64, 1.0);
  auto topo = Topology::uniform(16, 4);
  PlanInput in;
  in.load = &load;
  in.num_ranks = 16;
  in.num_replicas = 96;
  in.topology = &*topo;
  auto plain = plan_with("omni", in);
  auto spread = plan_with("omni(spread_hosts=true)", in);
  ASSERT_TRUE(plain.ok() && spread.ok()) << spread.status();
  auto cp = failure_coverage(plain->placement, *topo, &load);
  auto cs = failure_coverage(spread->placement, *topo, &load);
  ASSERT_TRUE(cp.ok() && cs.ok());
  EXPECT_GT(cs->host.expert_share, cp->host.expert_share);
  EXPECT_GE(cs->host.load_share, cp->host.load_share);
  auto bp = placement_balance(plain->placement, load);
  auto bs = placement_balance(spread->placement, load);
  EXPECT_LT(bs->mean_max_over_mean, bp->mean_max_over_mean + 0.02);
}

TEST(OmniFailureAware, ProtectGivesTheHeaviestExpertsTwoReplicasFirst) {
  std::mt19937_64 rng(11);
  int plain_below_half = 0;
  for (int trial = 0; trial < 20; ++trial) {
    const int32_t R = 8;
    const int32_t E = 32 + 8 * (trial % 3);
    // Few redundant slots (one per rank): water-filling alone would give the
    // hottest experts many replicas and leave others of the heavy half at one.
    LoadMatrix load = testing::random_load(rng, 2, E, 1.5 + 0.25 * (trial % 3));
    PlanInput in;
    in.load = &load;
    in.num_ranks = R;
    in.slots_per_rank = {E / R + 2};
    auto r = plan_with("omni(protect=0.5)", in);
    ASSERT_TRUE(r.ok()) << r.status();
    auto plain = plan_with("omni", in);
    ASSERT_TRUE(plain.ok());
    for (LayerId l = 0; l < 2; ++l) {
      std::vector<ExpertId> order(static_cast<size_t>(E));
      std::iota(order.begin(), order.end(), 0);
      const auto w = load.row(l);
      std::stable_sort(order.begin(), order.end(), [&](ExpertId a, ExpertId b) { return w[static_cast<size_t>(a)] > w[static_cast<size_t>(b)]; });
      double covered = 0;
      const double total = load.layer_total(l);
      int protected_experts = 0;
      for (ExpertId e : order) {
        if (covered >= 0.5 * total) break;
        covered += w[static_cast<size_t>(e)];
        ++protected_experts;
      }
      ASSERT_LE(protected_experts, 2 * R) << "trial " << trial << ": more protected experts than redundant slots";
      for (int k = 0; k < protected_experts; ++k)
        EXPECT_GE(r->placement.replica_count(l, order[static_cast<size_t>(k)]), 2)
            << "trial " << trial << " layer " << l << " expert " << order[static_cast<size_t>(k)];
    }
    auto topo = Topology::single_host(R);
    auto cr = failure_coverage(r->placement, *topo, &load);
    auto cp = failure_coverage(plain->placement, *topo, &load);
    EXPECT_GE(cr->rank.load_share, 0.5 - 1e-9) << "trial " << trial;
    plain_below_half += cp->rank.load_share < 0.5 - 1e-9;
  }
  // Without protect, water-filling leaves some of these layers below half the load covered.
  EXPECT_GT(plain_below_half, 0);
}

TEST(OmniFailureAware, SpecAndErrors) {
  auto c = canonical_spec("omni(protect=0.25, spread_hosts=1)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, "omni(spread_hosts=true,protect=0.25)");
  EXPECT_FALSE(make_planner("omni(protect=1.5)").ok());
  std::mt19937_64 rng(3);
  LoadMatrix load = testing::random_load(rng, 1, 16, 1.0);
  PlanInput in;
  in.load = &load;
  in.num_ranks = 6;
  in.num_nodes = 4;
  in.num_replicas = 24;
  auto bad = plan_with("omni(spread_hosts=true)", in);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("multiple of num_nodes"), std::string::npos) << bad.status();
  in.num_ranks = 8;
  in.num_nodes = 2;
  in.num_groups = 4;
  auto groups = plan_with("omni(spread_hosts=true,locality=groups)", in);
  ASSERT_FALSE(groups.ok());
  EXPECT_NE(groups.status().message().find("not groups"), std::string::npos) << groups.status();
}

}  // namespace
}  // namespace omni
