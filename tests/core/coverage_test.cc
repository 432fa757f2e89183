#include "omniplacement/core/coverage.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "common/random_placement.h"

namespace omni {
namespace {

// 4 ranks on 2 hosts, 2 slots per rank:
//   rank 0: [0, 1]  rank 1: [0, 2]  | host 0
//   rank 2: [3, 1]  rank 3: [3, -1] | host 1
// expert 0 on ranks 0, 1 (host 0 only), expert 1 on ranks 0, 2 (both hosts),
// expert 2 on rank 1 only, expert 3 on ranks 2, 3 (host 1 only).
Placement fixture(bool with_shares = false) {
  PlacementLayout p;
  p.num_ranks = 4;
  p.num_experts = 4;
  p.slots_per_rank = {2};
  p.phy2log = {{0, 1, 0, 2, 3, 1, 3, -1}};
  if (with_shares) p.shares = {{0.25, 0.5, 0.75, 1.0, 0.6, 0.5, 0.4, 0.0}};
  return *Placement::create(p);
}

TEST(CoverageTest, ByHandRanksAndHosts) {
  auto topo = Topology::uniform(4, 2);
  auto load = LoadMatrix::from_counts(1, 4, {10, 20, 30, 40});
  auto c = failure_coverage(fixture(), *topo, &*load);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->rank.expert_share, 0.75);  // experts 0, 1, 3
  EXPECT_DOUBLE_EQ(c->rank.load_share, 0.7);     // (10 + 20 + 40) / 100
  EXPECT_EQ(c->rank.worst_domain, 1);            // rank 1 holds the only copy of expert 2
  EXPECT_EQ(c->rank.worst_lost_experts, 1);
  EXPECT_DOUBLE_EQ(c->rank.worst_lost_load_share, 0.3);
  EXPECT_DOUBLE_EQ(c->host.expert_share, 0.25);  // expert 1 only
  EXPECT_DOUBLE_EQ(c->host.load_share, 0.2);
  EXPECT_EQ(c->host.worst_domain, 0);            // host 0 loses experts 0 and 2
  EXPECT_EQ(c->host.worst_lost_experts, 2);
  EXPECT_DOUBLE_EQ(c->host.worst_lost_load_share, 0.4);
  auto no_load = failure_coverage(fixture(), *topo);
  EXPECT_DOUBLE_EQ(no_load->rank.load_share, 0.75);
}

TEST(CoverageTest, LostExpertsByHand) {
  Placement p = fixture();
  std::vector<RankId> r1 = {1};
  EXPECT_EQ(*lost_experts(p, r1), (std::vector<LostExpert>{{0, 2}}));
  std::vector<RankId> host0 = {0, 1, 1};
  EXPECT_EQ(*lost_experts(p, host0), (std::vector<LostExpert>{{0, 0}, {0, 2}}));
  std::vector<RankId> none;
  EXPECT_TRUE(lost_experts(p, none)->empty());
  std::vector<RankId> bad = {4};
  auto s = lost_experts(p, bad);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("failed rank 4 out of range; valid ranks are 0..3"), std::string::npos);
}

TEST(CoverageTest, DropRanksRenormalisesShares) {
  std::vector<RankId> r1 = {1};
  auto d = drop_ranks(fixture(true), r1);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->expert_at(0, 2), kEmptySlot);
  EXPECT_EQ(d->expert_at(0, 3), kEmptySlot);
  EXPECT_DOUBLE_EQ(d->share_of(0, 0), 1.0);  // expert 0's only survivor
  EXPECT_DOUBLE_EQ(d->share_of(0, 4), 0.6);  // expert 3 untouched
  EXPECT_EQ(d->replica_count(0, 2), 0);      // expert 2 lost
  auto even = drop_ranks(fixture(false), r1);
  EXPECT_FALSE(even->has_shares());
  EXPECT_DOUBLE_EQ(even->share_of(0, 0), 1.0);
}

TEST(CoverageTest, RejectsMismatches) {
  EXPECT_FALSE(failure_coverage(fixture(), *Topology::uniform(8, 2)).ok());
  auto load = LoadMatrix::from_counts(1, 3, {1, 2, 3});
  EXPECT_FALSE(failure_coverage(fixture(), *Topology::uniform(4, 2), &*load).ok());
}

// Property: dropping any single rank loses exactly the experts that the
// rank-coverage metric counts as uncovered on that rank, and never routes to
// the failed rank.
TEST(CoverageProperty, SingleRankFailuresMatchCoverage) {
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 60; ++trial) {
    const int32_t R = std::uniform_int_distribution<int32_t>(2, 10)(rng);
    const int32_t E = std::uniform_int_distribution<int32_t>(2, 30)(rng);
    Placement p = *Placement::create(testing::random_layout(rng, 2, R, E, 0, 2));
    auto c = failure_coverage(p, *Topology::single_host(R));
    int64_t uncovered_total = 0;
    int64_t worst = 0;
    for (RankId r = 0; r < R; ++r) {
      std::vector<RankId> f = {r};
      auto lost = lost_experts(p, f);
      uncovered_total += static_cast<int64_t>(lost->size());
      worst = std::max<int64_t>(worst, static_cast<int64_t>(lost->size()));
      auto d = drop_ranks(p, f);
      ASSERT_TRUE(d.ok());
      for (LayerId l = 0; l < 2; ++l)
        for (int32_t s = 0; s < d->slots_per_rank(l); ++s) ASSERT_EQ(d->expert_at(l, r, s), kEmptySlot);
    }
    // Each uncovered pair is lost under exactly one single-rank failure.
    EXPECT_NEAR(c->rank.expert_share, 1.0 - static_cast<double>(uncovered_total) / (2.0 * E), 1e-12);
    EXPECT_EQ(c->rank.worst_lost_experts, worst);
  }
}

// Reference drop: the emptied, renormalised layout validated and indexed from
// scratch (what drop_ranks did before it filtered the index in place).
Placement drop_by_rebuild(const Placement& p, std::span<const RankId> failed) {
  PlacementLayout layout = p.layout();
  for (size_t l = 0; l < layout.phy2log.size(); ++l) {
    const auto spr = static_cast<size_t>(layout.slots_per_rank[l]);
    auto& row = layout.phy2log[l];
    for (size_t g = 0; g < row.size(); ++g) {
      if (std::find(failed.begin(), failed.end(), static_cast<RankId>(g / spr)) == failed.end()) continue;
      row[g] = kEmptySlot;
      if (!layout.shares.empty()) layout.shares[l][g] = 0.0;
    }
    if (layout.shares.empty()) continue;
    auto& sh = layout.shares[l];
    std::vector<double> sum(static_cast<size_t>(p.num_experts()), 0.0);
    std::vector<int32_t> count(static_cast<size_t>(p.num_experts()), 0);
    for (size_t g = 0; g < row.size(); ++g)
      if (row[g] >= 0) sum[static_cast<size_t>(row[g])] += sh[g], ++count[static_cast<size_t>(row[g])];
    for (size_t g = 0; g < row.size(); ++g)
      if (row[g] >= 0) {
        const auto e = static_cast<size_t>(row[g]);
        sh[g] = sum[e] > 0 ? sh[g] / sum[e] : 1.0 / count[e];
      }
  }
  ValidationRules rules;
  rules.require_every_expert = false;
  return *Placement::create(std::move(layout), rules);
}

// Property: drop_ranks (index filtered in place, no re-validation) gives the
// placement, replica index, shares and checksum of a from-scratch rebuild, for
// one to three failed ranks, with and without explicit shares (some all-zero).
TEST(CoverageProperty, DropRanksMatchesARebuild) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 80; ++trial) {
    const int32_t R = std::uniform_int_distribution<int32_t>(2, 9)(rng);
    const int32_t E = std::uniform_int_distribution<int32_t>(2, 25)(rng);
    PlacementLayout layout = testing::random_layout(rng, 3, R, E, 0, 3, trial % 3 != 0, 0.2);
    if (trial % 2 == 0) {
      std::uniform_real_distribution<double> u(0.0, 1.0);
      for (const auto& row : layout.phy2log) {
        std::vector<double> sh(row.size(), 0.0);
        for (size_t g = 0; g < row.size(); ++g)
          if (row[g] >= 0) sh[g] = u(rng) < 0.2 ? 0.0 : u(rng);
        layout.shares.push_back(std::move(sh));
      }
      // Normalise per expert (an expert whose draws were all zero gets an even
      // split); zero shares that survive make the drop's even-split case.
      for (auto& sh : layout.shares) {
        const auto& row = layout.phy2log[static_cast<size_t>(&sh - layout.shares.data())];
        std::vector<double> sum(static_cast<size_t>(E), 0.0);
        std::vector<int32_t> count(static_cast<size_t>(E), 0);
        for (size_t g = 0; g < row.size(); ++g)
          if (row[g] >= 0) sum[static_cast<size_t>(row[g])] += sh[g], ++count[static_cast<size_t>(row[g])];
        for (size_t g = 0; g < row.size(); ++g) {
          if (row[g] < 0) continue;
          const auto e = static_cast<size_t>(row[g]);
          sh[g] = sum[e] > 0 ? sh[g] / sum[e] : 1.0 / count[e];
        }
      }
    }
    auto p = Placement::create(layout);
    ASSERT_TRUE(p.ok()) << "trial " << trial << ": " << p.status();
    std::vector<RankId> failed;
    const int32_t n = std::uniform_int_distribution<int32_t>(1, std::min(3, R - 1))(rng);
    while (static_cast<int32_t>(failed.size()) < n) {
      const RankId r = std::uniform_int_distribution<RankId>(0, R - 1)(rng);
      if (std::find(failed.begin(), failed.end(), r) == failed.end()) failed.push_back(r);
    }
    auto fast = drop_ranks(*p, failed);
    ASSERT_TRUE(fast.ok()) << fast.status();
    const Placement ref = drop_by_rebuild(*p, failed);
    EXPECT_TRUE(*fast == ref) << "trial " << trial;
    EXPECT_EQ(fast->checksum(), ref.checksum()) << "trial " << trial;
    for (LayerId l = 0; l < 3; ++l)
      for (ExpertId e = 0; e < E; ++e) {
        const auto a = fast->replicas(l, e), b = ref.replicas(l, e);
        EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << "trial " << trial << " layer " << l << " expert " << e;
      }
    // Dropping again (a second failure) still matches.
    const RankId more[] = {failed[0]};
    EXPECT_TRUE(*drop_ranks(*fast, more) == drop_by_rebuild(ref, more)) << "trial " << trial;
  }
}

}  // namespace
}  // namespace omni
