// BlockSolver (src/planner/block_solver.h), the unit under omni's layers:
// hand-computed cases, the change budget of incremental solves, missing
// experts, the replica cap and determinism.
#include "block_solver.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace omni::detail {
namespace {

// Replicas of each local expert and "no rank holds an expert twice".
std::vector<int32_t> counts_of(const std::vector<int32_t>& slots, int32_t n, int32_t S) {
  std::vector<int32_t> cnt(static_cast<size_t>(n), 0);
  for (size_t g = 0; g < slots.size(); ++g) {
    if (slots[g] < 0) continue;
    ++cnt[static_cast<size_t>(slots[g])];
    const size_t r = g / static_cast<size_t>(S);
    for (size_t h = r * static_cast<size_t>(S); h < g; ++h) EXPECT_NE(slots[h], slots[g]) << "slot " << g;
  }
  return cnt;
}

TEST(BlockSolver, HandComputedTwoRanks) {
  // 16 tokens on 2 ranks x 3 slots: water-filling gives experts 0 and 1 two
  // replicas each (cap 2 = ranks), sizes 4,4,2,2,2,2; the best packing puts
  // 8 on each rank.
  OmniOptions opt;
  BlockSolver s({8, 4, 2, 2}, 2, 3, 2, {}, opt, nullptr);
  s.solve();
  EXPECT_DOUBLE_EQ(s.max_load(), 8.0);
  const auto cnt = counts_of(s.slots(), 4, 3);
  EXPECT_EQ(cnt, (std::vector<int32_t>{2, 2, 1, 1}));
}

TEST(BlockSolver, CapOneLeavesRedundantSlotsEmpty) {
  OmniOptions opt;
  BlockSolver s({50, 30, 10, 10}, 3, 2, 1, {}, opt, nullptr);
  s.solve();
  const auto cnt = counts_of(s.slots(), 4, 2);
  EXPECT_EQ(cnt, (std::vector<int32_t>{1, 1, 1, 1}));
  EXPECT_EQ(std::count(s.slots().begin(), s.slots().end(), -1), 2);
  EXPECT_DOUBLE_EQ(s.max_load(), 50.0);  // the hottest expert alone on its rank
}

TEST(BlockSolver, ZeroChangeBudgetKeepsTheStart) {
  OmniOptions opt;
  // A poor start: both heavy experts on rank 0.
  const std::vector<int32_t> start = {0, 1, 2, 3, 4, 5};
  BlockSolver s({40, 40, 1, 1, 1, 1}, 3, 2, 3, {}, opt, nullptr);
  s.solve_from(start, 0);
  EXPECT_EQ(s.slots(), start);
  EXPECT_EQ(s.moves(), 0);
  // With one change per rank the search fixes the worst rank.
  BlockSolver t({40, 40, 1, 1, 1, 1}, 3, 2, 3, {}, opt, nullptr);
  t.solve_from(start, 1);
  EXPECT_LT(t.max_load(), 80.0);
  int32_t changed_rank0 = 0;
  for (int32_t g = 0; g < 2; ++g) changed_rank0 += t.slots()[static_cast<size_t>(g)] != start[static_cast<size_t>(g)];
  EXPECT_LE(changed_rank0, 1);
}

TEST(BlockSolver, MissingExpertGetsASlotEvenWithoutBudget) {
  OmniOptions opt;
  // Expert 3 has no replica; expert 0 has two, so one of its slots can go.
  const std::vector<int32_t> start = {0, 1, 0, 2};
  BlockSolver s({10, 5, 5, 7}, 2, 2, 2, {}, opt, nullptr);
  s.solve_from(start, 0);
  const auto cnt = counts_of(s.slots(), 4, 2);
  EXPECT_EQ(cnt, (std::vector<int32_t>{1, 1, 1, 1}));
}

TEST(BlockSolver, RandomProblemsAreValidAndDeterministic) {
  std::mt19937_64 rng(11);
  std::lognormal_distribution<double> d(0.0, 1.0);
  OmniOptions opt;
  for (int trial = 0; trial < 30; ++trial) {
    const int32_t m = 2 + static_cast<int32_t>(rng() % 7), S = 1 + static_cast<int32_t>(rng() % 4);
    const int32_t n = std::max<int32_t>(1, m * S - static_cast<int32_t>(rng() % (m + 1)));
    std::vector<double> w(static_cast<size_t>(n));
    for (double& v : w) v = d(rng) * 100;
    BlockSolver a(w, m, S, m, {}, opt, nullptr);
    a.solve();
    BlockSolver b(w, m, S, m, {}, opt, nullptr);
    b.solve();
    ASSERT_EQ(a.slots(), b.slots()) << "trial " << trial;
    const auto cnt = counts_of(a.slots(), n, S);
    for (int32_t e = 0; e < n; ++e) EXPECT_GE(cnt[static_cast<size_t>(e)], 1) << "trial " << trial << " expert " << e;
    // Never worse than the heaviest replica's share alone or the mean.
    double total = 0, heaviest = 0;
    for (int32_t e = 0; e < n; ++e) {
      total += w[static_cast<size_t>(e)];
      heaviest = std::max(heaviest, w[static_cast<size_t>(e)] / cnt[static_cast<size_t>(e)]);
    }
    EXPECT_GE(a.max_load(), std::max(total / m, heaviest) * (1 - 1e-12)) << "trial " << trial;
  }
}

TEST(BlockSolver, SpreadHostsPutsReplicasOnTwoHosts) {
  OmniOptions opt;
  opt.spread_hosts = true;
  // 4 ranks on 2 hosts; expert 0 is hot and gets replicas.
  BlockSolver s({100, 10, 10, 10, 10, 10}, 4, 2, 4, {0, 0, 1, 1}, opt, nullptr);
  s.solve();
  std::set<int32_t> hosts;
  for (size_t g = 0; g < s.slots().size(); ++g)
    if (s.slots()[g] == 0) hosts.insert(g / 2 < 2 ? 0 : 1);
  EXPECT_EQ(hosts.size(), 2u);
}

}  // namespace
}  // namespace omni::detail
