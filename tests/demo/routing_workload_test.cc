// Tests of RoutingWorkload: determinism, distinct top-k, frequencies follow the window, bad input.
#include "demo/routing_workload.h"

#include <gtest/gtest.h>

#include <set>

namespace omni {
namespace {

LoadMatrix freq(std::vector<double> row) {
  const auto E = static_cast<int32_t>(row.size());
  return *LoadMatrix::from_weights(1, E, std::move(row));
}

TEST(RoutingWorkload, RejectsBadInput) {
  EXPECT_FALSE(RoutingWorkload::create({}, 1, 1, 1, 0).ok());
  EXPECT_FALSE(RoutingWorkload::create({freq({1, 1})}, 0, 1, 1, 0).ok());
  EXPECT_FALSE(RoutingWorkload::create({freq({1, 1})}, 1, 0, 1, 0).ok());
  EXPECT_FALSE(RoutingWorkload::create({freq({1, 1})}, 1, 1, 3, 0).ok());
  EXPECT_FALSE(RoutingWorkload::create({freq({1, 0, 0})}, 1, 1, 2, 0).ok());  // too few positive experts
  EXPECT_FALSE(RoutingWorkload::create({freq({1, 1}), freq({1, 1, 1})}, 1, 1, 1, 0).ok());
}

TEST(RoutingWorkload, DeterministicAndDistinctPerToken) {
  auto w = RoutingWorkload::create({freq({5, 1, 1, 1, 3, 0, 2})}, 4, 64, 3, 9);
  ASSERT_TRUE(w.ok());
  std::vector<ExpertId> a(64 * 3), b(64 * 3), c(64 * 3);
  w->topk_ids(7, 2, 0, a);
  w->topk_ids(7, 2, 0, b);
  w->topk_ids(7, 3, 0, c);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (int t = 0; t < 64; ++t) {
    std::set<ExpertId> s(a.begin() + t * 3, a.begin() + t * 3 + 3);
    EXPECT_EQ(s.size(), 3u);
    EXPECT_EQ(s.count(5), 0u) << "expert with zero frequency drawn";
  }
}

TEST(RoutingWorkload, Top1FrequenciesFollowTheWindowAndWindowsChange) {
  auto w = RoutingWorkload::create({freq({6, 3, 1, 0}), freq({0, 1, 1, 8})}, 10, 1000, 1, 3);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->window_of(9), 0);
  EXPECT_EQ(w->window_of(10), 1);
  EXPECT_EQ(w->window_of(1000), 1);
  std::vector<double> f0(4, 0), f1(4, 0);
  std::vector<ExpertId> ids(1000);
  for (int step = 0; step < 10; ++step) {
    w->topk_ids(step, 0, 0, ids);
    for (ExpertId e : ids) f0[static_cast<size_t>(e)] += 1e-4;
    w->topk_ids(step + 10, 0, 0, ids);
    for (ExpertId e : ids) f1[static_cast<size_t>(e)] += 1e-4;
  }
  // 10,000 draws: 4 standard deviations of a proportion are below 0.02.
  EXPECT_NEAR(f0[0], 0.6, 0.02);
  EXPECT_NEAR(f0[1], 0.3, 0.02);
  EXPECT_NEAR(f0[2], 0.1, 0.02);
  EXPECT_EQ(f0[3], 0.0);
  EXPECT_EQ(f1[0], 0.0);
  EXPECT_NEAR(f1[3], 0.8, 0.02);
}

}  // namespace
}  // namespace omni
