#include "omniplacement/core/expert_map.h"

#include <gtest/gtest.h>

namespace omni {
namespace {

Placement two_layers() {
  PlacementLayout p;
  p.num_ranks = 2;
  p.num_experts = 3;
  p.slots_per_rank = {2, 3};
  p.phy2log = {{0, 1, 2, 0}, {2, 2, 1, 0, 2, -1}};
  return *Placement::create(p);
}

TEST(ExpertMapTest, BySlotOrder) {
  auto m = ExpertMap::from_placement(two_layers());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->max_replicas(), 3);
  EXPECT_EQ(m->max_slots(), 6);
  const auto& l1 = m->layer(1);
  EXPECT_EQ(l1.logcnt, (std::vector<int32_t>{1, 1, 3}));
  auto r2 = l1.replicas_of(2);
  EXPECT_EQ(std::vector<int32_t>(r2.begin(), r2.end()), (std::vector<int32_t>{0, 1, 4}));
  // Padded exports in DeepSeek shapes.
  EXPECT_EQ(m->padded_phy2log(), (std::vector<int32_t>{0, 1, 2, 0, -1, -1, 2, 2, 1, 0, 2, -1}));
  EXPECT_EQ(m->logcnt_matrix(), (std::vector<int32_t>{2, 1, 1, 1, 1, 3}));
  auto log2phy = m->padded_log2phy();
  ASSERT_EQ(log2phy.size(), 2u * 3u * 3u);
  EXPECT_EQ(std::vector<int32_t>(log2phy.begin(), log2phy.begin() + 9),
            (std::vector<int32_t>{0, 3, -1, 1, -1, -1, 2, -1, -1}));
}

TEST(ExpertMapTest, ByCreationOrder) {
  Placement p = two_layers();
  std::vector<std::vector<int32_t>> rank = {{1, 0, 0, 0}, {2, 0, 0, 0, 1, -1}};
  auto m = ExpertMap::from_placement(p, ReplicaOrder::kByCreation, rank);
  ASSERT_TRUE(m.ok()) << m.status();
  auto r0 = m->layer(0).replicas_of(0);
  EXPECT_EQ(std::vector<int32_t>(r0.begin(), r0.end()), (std::vector<int32_t>{3, 0}));
  auto r2 = m->layer(1).replicas_of(2);
  EXPECT_EQ(std::vector<int32_t>(r2.begin(), r2.end()), (std::vector<int32_t>{1, 4, 0}));
}

TEST(ExpertMapTest, RejectsBadReplicaRanks) {
  Placement p = two_layers();
  EXPECT_FALSE(ExpertMap::from_placement(p, ReplicaOrder::kByCreation, {}).ok());
  std::vector<std::vector<int32_t>> dup = {{0, 0, 0, 0}, {2, 0, 0, 0, 1, -1}};
  auto m = ExpertMap::from_placement(p, ReplicaOrder::kByCreation, dup);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("layer 0, global slot 3 (expert 0)"), std::string::npos) << m.status();
}

}  // namespace
}  // namespace omni
