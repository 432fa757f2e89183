// eplb_rebalance against the reference outputs of docs/REFERENCES.md §1 (golden
// cases) and structural properties on random inputs.
#include "omniplacement/planner/eplb.h"

#include <gtest/gtest.h>

#include <random>

#include "common/random_placement.h"
#include "omniplacement/planner/planner.h"

namespace omni {
namespace {

struct GoldenCase {
  const char* name;
  int32_t num_layers, num_experts;
  std::vector<int64_t> weight;
  int32_t replicas, groups, nodes, gpus;
  std::vector<int32_t> phy2log;
  std::vector<int32_t> logcnt;
  bool hierarchical;
};

class EplbGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(EplbGolden, MatchesReference) {
  const GoldenCase& c = GetParam();
  auto w = LoadMatrix::from_counts(c.num_layers, c.num_experts, c.weight);
  ASSERT_TRUE(w.ok());
  auto r = eplb_rebalance(*w, c.replicas, c.groups, c.nodes, c.gpus);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->phy2log, c.phy2log);
  EXPECT_EQ(r->logcnt, c.logcnt);
  EXPECT_EQ(r->hierarchical, c.hierarchical);
  // log2phy is the inverse of (phy2log, phyrank).
  for (int32_t l = 0; l < c.num_layers; ++l)
    for (int32_t p = 0; p < c.replicas; ++p) {
      const size_t i = static_cast<size_t>(l * c.replicas + p);
      const size_t k = (static_cast<size_t>(l * c.num_experts + r->phy2log[i])) * static_cast<size_t>(r->max_replicas) +
                       static_cast<size_t>(r->phyrank[i]);
      EXPECT_EQ(r->log2phy[k], p);
    }
}

INSTANTIATE_TEST_SUITE_P(
    Anchors, EplbGolden,
    ::testing::Values(
        GoldenCase{"TwoLayersHierarchical16Replicas8Gpus", 2, 12,
                   {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86, 20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27},
                   16, 4, 2, 8,
                   {5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1, 7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1},
                   {1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1}, true},
        GoldenCase{"OneGpuNoRedundancy", 1, 4, {10, 20, 30, 40}, 4, 1, 1, 1, {3, 2, 1, 0}, {1, 1, 1, 1}, true},
        GoldenCase{"HotExpertDuplicatedOnOneGpu", 1, 8, {1000, 1, 1, 1, 1, 1, 1, 1}, 12, 2, 2, 4,
                   {0, 0, 3, 0, 1, 2, 6, 4, 4, 7, 5, 5}, {3, 1, 1, 1, 2, 2, 1, 1}, true},
        GoldenCase{"FourGroupsTwoNodes", 1, 8, {100, 50, 200, 75, 150, 25, 300, 80}, 12, 4, 2, 4,
                   {6, 6, 7, 0, 6, 1, 2, 3, 4, 2, 4, 5}, {1, 1, 2, 1, 2, 1, 3, 1}, true},
        GoldenCase{"GlobalWhenGroupsNotDivisibleByNodes", 1, 6, {10, 20, 30, 40, 50, 60}, 8, 3, 2, 4,
                   {3, 0, 2, 4, 5, 4, 5, 1}, {1, 1, 1, 1, 2, 2}, false},
        GoldenCase{"MirroredLayersOneNode", 2, 6, {200, 150, 100, 50, 25, 12, 12, 25, 50, 100, 150, 200}, 10, 3, 1, 2,
                   {1, 0, 0, 2, 5, 1, 0, 2, 3, 4, 4, 5, 5, 3, 0, 4, 5, 2, 3, 1},
                   {3, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 3}, true}),
    [](const ::testing::TestParamInfo<GoldenCase>& info) { return std::string(info.param.name); });

TEST(Eplb, Log2PhyOfFirstAnchorCaseInReplicaRankOrder) {
  auto w = LoadMatrix::from_counts(
      2, 12, {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86, 20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27});
  auto r = eplb_rebalance(*w, 16, 4, 2, 8);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->max_replicas, 2);
  const std::vector<int32_t> expected = {12, -1, 15, 13, 11, -1, 6,  -1, 7,  5,  0, 2, 1,  -1, 3,  -1,
                                         4,  -1, 9,  -1, 8,  10, 14, -1, 13, -1, 15, 11, 8, -1, 14, -1,
                                         9,  -1, 10, 12, 2,  4,  0,  -1, 6,  3,  7, -1, 1,  -1, 5,  -1};
  EXPECT_EQ(r->log2phy, expected);
}

struct RejectCase {
  const char* name;
  int32_t replicas, groups, nodes, gpus;
  EplbPolicy policy;
};

class EplbRejects : public ::testing::TestWithParam<RejectCase> {};

TEST_P(EplbRejects, InvalidArgument) {
  const RejectCase& c = GetParam();
  auto w = LoadMatrix::from_counts(1, 4, {10, 20, 30, 40});
  auto r = eplb_rebalance(*w, c.replicas, c.groups, c.nodes, c.gpus, c.policy);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("eplb"), std::string::npos) << r.status();
}

INSTANTIATE_TEST_SUITE_P(
    Preconditions, EplbRejects,
    ::testing::Values(RejectCase{"ReplicasNotMultipleOfGpus", 7, 2, 2, 4, EplbPolicy::kAuto},
                      RejectCase{"FewerReplicasThanExperts", 2, 1, 1, 2, EplbPolicy::kAuto},
                      RejectCase{"ExpertsNotMultipleOfGroups", 4, 3, 1, 1, EplbPolicy::kAuto},
                      RejectCase{"GpusNotMultipleOfNodes", 6, 2, 2, 3, EplbPolicy::kAuto},
                      RejectCase{"ZeroGpus", 4, 1, 1, 0, EplbPolicy::kAuto},
                      RejectCase{"ZeroNodes", 4, 1, 0, 1, EplbPolicy::kAuto},
                      RejectCase{"ZeroGroups", 4, 0, 1, 1, EplbPolicy::kAuto},
                      RejectCase{"ForcedHierarchicalWithIndivisibleGroups", 8, 3, 2, 4, EplbPolicy::kHierarchical}),
    [](const ::testing::TestParamInfo<RejectCase>& info) { return std::string(info.param.name); });

TEST(Eplb, AnchorRejectionSevenReplicasOnFourGpus) {
  auto w = LoadMatrix::from_counts(1, 4, {10, 20, 30, 40});
  auto r = eplb_rebalance(*w, 7, 2, 2, 4);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("multiple of num_gpus"), std::string::npos) << r.status();
}

TEST(Eplb, ForcedGlobalIgnoresGroupsAndNodes) {
  // With the global policy the reference calls the hierarchical routine with
  // one group and one node, so groups that do not divide the experts are fine.
  auto w = LoadMatrix::from_counts(1, 6, {10, 20, 30, 40, 50, 60});
  auto forced = eplb_rebalance(*w, 8, 4, 2, 4, EplbPolicy::kGlobal);
  auto plain = eplb_rebalance(*w, 8, 1, 1, 4);
  ASSERT_TRUE(forced.ok()) << forced.status();
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(forced->hierarchical);
  EXPECT_EQ(forced->phy2log, plain->phy2log);
}

// Properties on random inputs: counts sum to the replicas, each expert has at
// least one replica, the slots of each expert match logcnt, and every GPU
// holds exactly num_replicas / num_gpus slots (by construction of phy2log).
TEST(Eplb, RandomInputsAreConsistent) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 200; ++trial) {
    const int32_t nodes = 1 << (trial % 3);
    const int32_t groups = nodes * (1 + trial % 4);
    const int32_t E = groups * (1 + trial % 5);
    const int32_t gpus = nodes * (1 + (trial / 3) % 4);
    const int32_t per_gpu = (E + gpus - 1) / gpus + trial % 3;
    const int32_t replicas = gpus * per_gpu;
    const int32_t L = 1 + trial % 3;
    LoadMatrix w = testing::random_load(rng, L, E, 1.0 + 0.1 * (trial % 7));
    auto r = eplb_rebalance(w, replicas, groups, nodes, gpus);
    ASSERT_TRUE(r.ok()) << r.status() << " trial " << trial;
    for (int32_t l = 0; l < L; ++l) {
      std::vector<int32_t> seen(static_cast<size_t>(E), 0);
      for (int32_t p = 0; p < replicas; ++p) ++seen[static_cast<size_t>(r->phy2log[static_cast<size_t>(l * replicas + p)])];
      for (int32_t e = 0; e < E; ++e) {
        EXPECT_GE(seen[static_cast<size_t>(e)], 1);
        EXPECT_EQ(seen[static_cast<size_t>(e)], r->logcnt[static_cast<size_t>(l * E + e)]);
      }
    }
  }
}

TEST(EplbPlanner, ReportsSameRankDuplicatesOfTheReference) {
  auto w = LoadMatrix::from_counts(1, 8, {1000, 1, 1, 1, 1, 1, 1, 1});
  auto planner = make_planner("eplb");
  ASSERT_TRUE(planner.ok());
  PlanInput in;
  in.load = &*w;
  in.num_ranks = 4;
  in.num_replicas = 12;
  in.num_nodes = 2;
  in.num_groups = 2;
  auto r = (*planner)->plan(in);
  ASSERT_TRUE(r.ok()) << r.status();
  // phy2log [0,0,3 | 0,1,2 | 6,4,4 | 7,5,5]: experts 0, 4 and 5 each twice on
  // one GPU, as the reference does.
  EXPECT_EQ(r->stats.same_rank_duplicates, 3);
  EXPECT_EQ(r->placement.expert_at(0, 0, 0), 0);
  EXPECT_EQ(r->placement.expert_at(0, 0, 1), 0);
  EXPECT_EQ(r->stats.policy, "hierarchical");
}

}  // namespace
}  // namespace omni
