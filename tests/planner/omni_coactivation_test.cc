// omni(locality=coactivation): experts that are chosen together end up on one
// host, even when their ids are scattered and a popular expert is co-chosen
// with everything (the affinity is the lift over independence).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

#include "omniplacement/core/metrics.h"
#include "omniplacement/planner/planner.h"

namespace omni {
namespace {

TEST(OmniCoactivation, HiddenClustersLandOnOneHostEach) {
  constexpr int32_t E = 32, H = 4, kCluster = 8;
  std::mt19937_64 rng(17);
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<int32_t> perm(E);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    // cluster_of[perm[i]] = i / kCluster: four clusters of 8 scattered ids.
    std::vector<int32_t> cluster_of(E);
    for (int32_t i = 0; i < E; ++i) cluster_of[static_cast<size_t>(perm[static_cast<size_t>(i)])] = i / kCluster;
    std::vector<double> co(static_cast<size_t>(E) * E, 0.0);
    std::vector<double> w(E, 100.0);
    for (int32_t a = 0; a < E; ++a)
      for (int32_t b = 0; b < E; ++b) {
        if (a == b) continue;
        double c = cluster_of[static_cast<size_t>(a)] == cluster_of[static_cast<size_t>(b)] ? 20.0 : 1.0;
        // A popular expert (perm[0]) is co-chosen with everyone far more than raw counts of pairs within clusters.
        if (a == perm[0] || b == perm[0]) c *= 40.0;
        co[static_cast<size_t>(a) * E + static_cast<size_t>(b)] = c;
      }
    auto load = LoadMatrix::from_weights(1, E, w);
    ASSERT_TRUE(load.ok());
    PlanInput in;
    in.load = &*load;
    in.num_ranks = 8;
    in.num_nodes = H;
    in.slots_per_rank = {5};
    in.coactivation = &co;
    auto planner = make_planner("omni(locality=coactivation)");
    ASSERT_TRUE(planner.ok());
    auto r = (*planner)->plan(in);
    ASSERT_TRUE(r.ok()) << r.status();
    for (int32_t c = 0; c < E / kCluster; ++c) {
      std::set<int32_t> hosts;
      for (int32_t e = 0; e < E; ++e)
        if (cluster_of[static_cast<size_t>(e)] == c)
          for (GlobalSlot g : r->placement.replicas(0, e)) hosts.insert(r->placement.rank_of(0, g) / 2);
      EXPECT_EQ(hosts.size(), 1u) << "trial " << trial << " cluster " << c;
    }
    auto b = placement_balance(r->placement, *load);
    EXPECT_LT(b->mean_max_over_mean, 1.0 + 1e-9);  // equal loads: clusters on hosts cost no balance
  }
}

}  // namespace
}  // namespace omni
