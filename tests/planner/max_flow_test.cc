// MaxFlow (src/planner/max_flow.h) and optimal_shares (omni_planner.h) on
// hand-computed graphs and placements.
#include "max_flow.h"

#include <gtest/gtest.h>

#include "omniplacement/planner/omni_planner.h"

namespace omni {
namespace {

TEST(MaxFlow, DiamondGraph) {
  // 0 -> 1 (3), 0 -> 2 (2), 1 -> 2 (1), 1 -> 3 (2), 2 -> 3 (3): max flow 5.
  detail::MaxFlow mf(4);
  const int32_t a = mf.add_edge(0, 1, 3), b = mf.add_edge(0, 2, 2);
  mf.add_edge(1, 2, 1);
  mf.add_edge(1, 3, 2);
  mf.add_edge(2, 3, 3);
  EXPECT_DOUBLE_EQ(mf.run(0, 3), 5.0);
  EXPECT_DOUBLE_EQ(mf.flow_on(a) + mf.flow_on(b), 5.0);
}

TEST(MaxFlow, ResetAndNewCapacities) {
  detail::MaxFlow mf(3);
  mf.add_edge(0, 1, 10);
  const int32_t sink = mf.add_edge(1, 2, 4);
  EXPECT_DOUBLE_EQ(mf.run(0, 2), 4.0);
  mf.set_capacity(sink, 7);
  mf.reset();
  EXPECT_DOUBLE_EQ(mf.run(0, 2), 7.0);
  EXPECT_DOUBLE_EQ(mf.flow_on(sink), 7.0);
}

TEST(OptimalShares, MovesLoadOffTheBusyRank) {
  // Rank 0: expert 0 (10, shared with rank 1) and expert 1 (6); rank 1: expert
  // 0 and an empty slot. Best: rank 0 serves 2 of expert 0, rank 1 serves 8.
  const std::vector<double> w = {10, 6};
  const std::vector<ExpertId> phy2log = {0, 1, 0, kEmptySlot};
  const auto shares = optimal_shares(w, phy2log, 2);
  ASSERT_EQ(shares.size(), 4u);
  EXPECT_NEAR(shares[0], 0.2, 1e-6);
  EXPECT_DOUBLE_EQ(shares[1], 1.0);
  EXPECT_NEAR(shares[2], 0.8, 1e-6);
  EXPECT_DOUBLE_EQ(shares[3], 0.0);
}

TEST(OptimalShares, NoLoadKeepsTheEvenSplit) {
  const std::vector<double> w = {0, 0};
  const std::vector<ExpertId> phy2log = {0, 1, 0, 1};
  const auto shares = optimal_shares(w, phy2log, 2);
  for (double s : shares) EXPECT_DOUBLE_EQ(s, 0.5);
}

}  // namespace
}  // namespace omni
