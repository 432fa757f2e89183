// Expert-to-host assignment (src/planner/host_sets.h): group packing,
// co-activation affinity and the spread check, on hand-built inputs.
#include "host_sets.h"

#include <gtest/gtest.h>

namespace omni::detail {
namespace {

TEST(GroupHosts, WholeGroupsBalancedOverHosts) {
  // 4 groups of 2 experts with group loads 10, 7, 5, 2 on 2 hosts: {10, 2}
  // and {7, 5} (12 each).
  const std::vector<double> w = {6, 4, 3, 4, 2, 3, 1, 1};
  const HostSets sets = group_hosts(w, 4, 2);
  ASSERT_EQ(sets.size(), 2u);
  double load0 = 0, load1 = 0;
  for (ExpertId e : sets[0]) load0 += w[static_cast<size_t>(e)];
  for (ExpertId e : sets[1]) load1 += w[static_cast<size_t>(e)];
  EXPECT_DOUBLE_EQ(load0, 12.0);
  EXPECT_DOUBLE_EQ(load1, 12.0);
  for (const auto& s : sets) {
    ASSERT_EQ(s.size(), 4u);
    for (size_t k = 0; k < s.size(); k += 2) EXPECT_EQ(s[k] / 2, s[k + 1] / 2) << "a group is split";
  }
}

TEST(CoactivationHosts, CoChosenExpertsShareAHost) {
  // Experts 0-3 of equal load; 0 and 3 are always chosen together, so are 1 and 2.
  const std::vector<double> w = {10, 10, 10, 10};
  std::vector<double> c(16, 1.0);
  for (int i = 0; i < 4; ++i) c[static_cast<size_t>(i * 4 + i)] = 0;
  c[0 * 4 + 3] = c[3 * 4 + 0] = 20;
  c[1 * 4 + 2] = c[2 * 4 + 1] = 20;
  const HostSets sets = coactivation_hosts(w, c.data(), 2, 0.05);
  ASSERT_EQ(sets.size(), 2u);
  for (const auto& s : sets) {
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0] + s[1], 3) << "pairs {0,3} and {1,2} expected";
  }
}

TEST(SpreadOverHosts, DetectsReplicasOnOneHost) {
  const std::vector<int32_t> host = {0, 0, 1, 1};
  // Expert 0 on ranks 0 and 1 (host 0 only): not spread.
  EXPECT_FALSE(spread_over_hosts({0, 1, 0, 2, 3, 4, 5, 6}, host, 2));
  // Expert 0 on ranks 0 and 2: spread.
  EXPECT_TRUE(spread_over_hosts({0, 1, 2, 3, 0, 4, 5, 6}, host, 2));
  // One host: always true.
  EXPECT_TRUE(spread_over_hosts({0, 1, 0, 2}, {0, 0}, 2));
}

}  // namespace
}  // namespace omni::detail
