// Tests of the dispatch policy: locality (own rank, own host, elsewhere), per-replica
// shares realised over all origins, determinism, padding, and random placements.
#include "omniplacement/dispatch/dispatch_table.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "common/random_placement.h"

namespace omni {
namespace {

Placement make(int32_t R, int32_t E, int32_t spr, std::vector<ExpertId> row, std::vector<double> shares = {}) {
  PlacementLayout p;
  p.num_ranks = R;
  p.num_experts = E;
  p.slots_per_rank = {spr};
  p.phy2log = {std::move(row)};
  if (!shares.empty()) p.shares = {std::move(shares)};
  auto placement = Placement::create(std::move(p));
  OMNI_CHECK_MSG(placement.ok(), placement.status().to_string());
  return *placement;
}

// Share of rank `origin`'s tokens of expert e that each global slot gets, by dispatching n tokens.
std::map<GlobalSlot, double> realised(const LayerDispatch& d, ExpertId e, int n) {
  std::vector<ExpertId> ids(static_cast<size_t>(n), e);
  std::vector<GlobalSlot> out(ids.size());
  std::vector<uint32_t> counters(static_cast<size_t>(d.num_experts()), 0);
  d.dispatch(ids, out, counters);
  std::map<GlobalSlot, double> m;
  for (GlobalSlot g : out) m[g] += 1.0 / n;
  return m;
}

TEST(Dispatch, SingleReplicaExpertsAlwaysGoToTheirSlot) {
  // 4 ranks x 2 slots: experts 0..7 contiguous.
  auto p = make(4, 8, 2, {0, 1, 2, 3, 4, 5, 6, 7});
  auto topo = *Topology::uniform(4, 2);
  for (RankId q = 0; q < 4; ++q) {
    auto d = LayerDispatch::build(p, 0, topo, q);
    ASSERT_TRUE(d.ok());
    std::vector<ExpertId> ids = {7, 0, 3, 3, -1, 8, 5};
    std::vector<GlobalSlot> out(ids.size());
    std::vector<uint32_t> counters(8, 0);
    d->dispatch(ids, out, counters);
    EXPECT_EQ(out, (std::vector<GlobalSlot>{7, 0, 3, 3, -1, -1, 5})) << "rank " << q;
  }
}

TEST(Dispatch, PrefersOwnRankThenOwnHostThenElsewhere) {
  // 4 ranks on 2 hosts (0,1 | 2,3), 2 slots each; expert 0 on ranks 0 and 2 (slots 0 and 4).
  auto p = make(4, 6, 2, {0, 1, 2, 3, 0, 4, 5, -1});
  auto topo = *Topology::uniform(4, 2);
  auto at = [&](RankId q) { return realised(*LayerDispatch::build(p, 0, topo, q), 0, 1024); };
  EXPECT_EQ(at(0), (std::map<GlobalSlot, double>{{0, 1.0}}));  // own rank
  EXPECT_EQ(at(1), (std::map<GlobalSlot, double>{{0, 1.0}}));  // own host
  EXPECT_EQ(at(2), (std::map<GlobalSlot, double>{{4, 1.0}}));
  EXPECT_EQ(at(3), (std::map<GlobalSlot, double>{{4, 1.0}}));
}

TEST(Dispatch, RemoteTokensAreSpreadByShareNotSentToOneReplica) {
  // 4 ranks, one per host; expert 0 on ranks 0 and 1 with shares 0.75 / 0.25.
  // Ranks 0 and 1 serve themselves first (0.25 each); ranks 2 and 3 fill the
  // rest: replica on rank 0 still wants 0.5, rank 1's 0.0 -> all remote to rank 0.
  // With shares 0.5/0.5 both remote ranks split evenly over both replicas.
  auto topo = *Topology::uniform(4, 1);
  {
    auto p = make(4, 4, 2, {0, 1, 0, 2, 3, -1, -1, -1}, {0.75, 1, 0.25, 1, 1, 0, 0, 0});
    auto m = realised(*LayerDispatch::build(p, 0, topo, 3), 0, 1024);
    EXPECT_EQ(m, (std::map<GlobalSlot, double>{{0, 1.0}}));
  }
  {
    auto p = make(4, 4, 2, {0, 1, 0, 2, 3, -1, -1, -1}, {0.5, 1, 0.5, 1, 1, 0, 0, 0});
    for (RankId q : {2, 3}) {
      auto m = realised(*LayerDispatch::build(p, 0, topo, q), 0, 1024);
      ASSERT_EQ(m.size(), 2u) << "rank " << q;
      EXPECT_NEAR(m[0], 0.5, 1.0 / kDispatchPeriod);
      EXPECT_NEAR(m[2], 0.5, 1.0 / kDispatchPeriod);
    }
  }
  {
    // Three replicas with shares 0.6/0.3/0.1 on ranks 0..2; rank 3 holds none:
    // own-rank service leaves demands 0.35/0.05/0 for rank 3's 0.25 tokens.
    auto p = make(4, 4, 2, {0, 1, 0, 2, 0, 3, -1, -1}, {0.6, 1, 0.3, 1, 0.1, 1, 0, 0});
    auto split = replica_split(p, 0, topo, 3);
    ASSERT_TRUE(split.ok());
    EXPECT_NEAR((*split)[0][0], 0.35 / 0.4, 1e-12);
    EXPECT_NEAR((*split)[0][1], 0.05 / 0.4, 1e-12);
    EXPECT_NEAR((*split)[0][2], 0.0, 1e-12);
    auto m = realised(*LayerDispatch::build(p, 0, topo, 3), 0, 128 * 8);
    EXPECT_NEAR(m[0], 0.875, 1.0 / kDispatchPeriod);
    EXPECT_NEAR(m[2], 0.125, 1.0 / kDispatchPeriod);
  }
}

TEST(Dispatch, SequenceIsInterleavedAndDeterministic) {
  auto topo = *Topology::uniform(4, 1);
  auto p = make(4, 4, 2, {0, 1, 0, 2, 3, -1, -1, -1}, {0.5, 1, 0.5, 1, 1, 0, 0, 0});
  auto a = LayerDispatch::build(p, 0, topo, 3), b = LayerDispatch::build(p, 0, topo, 3);
  ASSERT_TRUE(a.ok() && b.ok());
  const auto sa = a->sequence(0), sb = b->sequence(0);
  ASSERT_EQ(sa.size(), static_cast<size_t>(kDispatchPeriod));
  EXPECT_TRUE(std::equal(sa.begin(), sa.end(), sb.begin()));
  // Even split: the two replicas alternate (no run of the same replica longer than 1).
  for (size_t i = 1; i < sa.size(); ++i) EXPECT_NE(sa[i], sa[i - 1]) << "position " << i;
  EXPECT_EQ(a->targets(), (std::vector<GlobalSlot>{0, 1, 2, 3, 4}));
}

TEST(Dispatch, RejectsMismatchedInputs) {
  auto p = make(4, 4, 1, {0, 1, 2, 3});
  EXPECT_EQ(LayerDispatch::build(p, 0, *Topology::uniform(8, 1), 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(LayerDispatch::build(p, 1, *Topology::uniform(4, 1), 0).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(LayerDispatch::build(p, 0, *Topology::uniform(4, 1), 4).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(LayerDispatch::build(p, -1, *Topology::uniform(4, 1), 0).status().code(), StatusCode::kOutOfRange);
}

TEST(Dispatch, ApportionIsExactAndFavoursLargestRemainders) {
  EXPECT_EQ(apportion(std::vector<double>{1, 1, 1}, 128), (std::vector<int32_t>{43, 43, 42}));
  EXPECT_EQ(apportion(std::vector<double>{0.7, 0.2, 0.1}, 10), (std::vector<int32_t>{7, 2, 1}));
  EXPECT_EQ(apportion(std::vector<double>{0, 0}, 10), (std::vector<int32_t>{0, 0}));
}

// Property: over random placements (uneven layers, duplicates allowed or not,
// random hosts), every origin's split sums to 1, and the splits summed over all
// origins (tokens originating evenly) give each replica exactly its share.
TEST(DispatchProperty, OriginSplitsRealiseReplicaShares) {
  std::mt19937_64 rng(20261126);
  for (int trial = 0; trial < 60; ++trial) {
    const int32_t R = std::uniform_int_distribution<int32_t>(1, 12)(rng);
    const int32_t E = std::uniform_int_distribution<int32_t>(1, 40)(rng);
    auto layout = testing::random_layout(rng, 2, R, E, 0, 3, trial % 3 != 0);
    if (trial % 2 == 0) {  // random explicit shares
      layout.shares.resize(2);
      for (int l = 0; l < 2; ++l) {
        auto& row = layout.phy2log[static_cast<size_t>(l)];
        std::vector<double> w(row.size(), 0.0), sum(static_cast<size_t>(E), 0.0);
        for (size_t g = 0; g < row.size(); ++g)
          if (row[g] >= 0) sum[static_cast<size_t>(row[g])] += (w[g] = std::uniform_real_distribution<double>(0.1, 1)(rng));
        for (size_t g = 0; g < row.size(); ++g)
          if (row[g] >= 0) w[g] /= sum[static_cast<size_t>(row[g])];
        layout.shares[static_cast<size_t>(l)] = w;
      }
    }
    auto p = Placement::create(layout);
    ASSERT_TRUE(p.ok()) << p.status();
    std::vector<int32_t> divisors;
    for (int32_t k = 1; k <= R; ++k)
      if (R % k == 0) divisors.push_back(k);
    const int32_t per_host = divisors[std::uniform_int_distribution<size_t>(0, divisors.size() - 1)(rng)];
    auto topo = *Topology::uniform(R, per_host);
    for (LayerId l = 0; l < 2; ++l) {
      std::vector<double> got(static_cast<size_t>(p->num_slots(l)), 0.0);
      for (RankId q = 0; q < R; ++q) {
        auto split = replica_split(*p, l, topo, q);
        ASSERT_TRUE(split.ok());
        for (ExpertId e = 0; e < E; ++e) {
          const auto reps = p->replicas(l, e);
          const auto& row = (*split)[static_cast<size_t>(e)];
          ASSERT_EQ(row.size(), reps.size());
          double s = 0;
          for (size_t k = 0; k < row.size(); ++k) {
            EXPECT_GE(row[k], -1e-12);
            s += row[k];
            got[static_cast<size_t>(reps[k])] += row[k] / R;
          }
          EXPECT_NEAR(s, 1.0, 1e-9) << "trial " << trial << " rank " << q << " expert " << e;
          // Replicas on the origin rank are used whenever there are any.
          double local = 0;
          bool has_local = false;
          for (size_t k = 0; k < reps.size(); ++k) {
            if (p->rank_of(l, reps[k]) == q) {
              has_local = true;
              local += row[k];
            }
          }
          EXPECT_TRUE(!has_local || local > 0.0) << "trial " << trial << " rank " << q << " expert " << e;
        }
        // Dispatch only ever routes to slots holding the token's expert.
        auto d = LayerDispatch::build(*p, l, topo, q);
        ASSERT_TRUE(d.ok());
        for (ExpertId e = 0; e < E; ++e)
          for (GlobalSlot g : d->sequence(e)) EXPECT_EQ(p->expert_at(l, g), e);
      }
      for (GlobalSlot g = 0; g < p->num_slots(l); ++g)
        EXPECT_NEAR(got[static_cast<size_t>(g)], p->share_of(l, g), 1e-9) << "trial " << trial << " slot " << g;
    }
  }
}

}  // namespace
}  // namespace omni
