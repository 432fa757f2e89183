// Tests of the per-batch split: conservation of tokens, quality against the even
// split and the lower bound, locality, bad input.
#include "omniplacement/dispatch/batch_split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "common/random_placement.h"
#include "omniplacement/dispatch/dispatch_table.h"

namespace omni {
namespace {

Placement make(int32_t R, int32_t E, int32_t spr, std::vector<ExpertId> row) {
  PlacementLayout p;
  p.num_ranks = R;
  p.num_experts = E;
  p.slots_per_rank = {spr};
  p.phy2log = {std::move(row)};
  return *Placement::create(std::move(p));
}

TEST(BatchSplit, FlexibleExpertFillsTheLighterRank) {
  // 2 ranks; expert 0 on both, expert 1 only on rank 0. Counts: e0 = 10 (all
  // from rank 0), e1 = 10. Best: e0 entirely on rank 1, max load 10.
  auto p = make(2, 2, 2, {0, 1, 0, -1});
  auto topo = *Topology::uniform(2, 1);
  std::vector<int64_t> counts = {10, 6, 0, 4};  // [rank][expert]
  auto s0 = split_batch(p, 0, topo, 0, counts);
  ASSERT_TRUE(s0.ok()) << s0.status();
  EXPECT_EQ(s0->rank_load, (std::vector<int64_t>{10, 10}));
  // Rank 0's 10 tokens of expert 0 all go to rank 1's replica (global slot 2).
  ASSERT_EQ(s0->segment_offset[1] - s0->segment_offset[0], 1);
  EXPECT_EQ(s0->segment_slot[0], 2);
  EXPECT_EQ(s0->segment_count[0], 10);
  BatchDispatch d(*s0);
  std::vector<ExpertId> ids = {0, 1, 0, 0, 1, -1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1};
  std::vector<GlobalSlot> out(ids.size());
  d.dispatch(ids, out);
  for (size_t i = 0; i < ids.size(); ++i) {
    const GlobalSlot expect = ids[i] == 0 ? 2 : ids[i] == 1 ? 1 : -1;
    EXPECT_EQ(out[i], expect) << "token " << i;
  }
}

TEST(BatchSplit, RejectsBadInput) {
  auto p = make(2, 2, 2, {0, 1, 0, -1});
  auto topo = *Topology::uniform(2, 1);
  EXPECT_EQ(split_batch(p, 0, topo, 0, std::vector<int64_t>{1, 2, 3}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(split_batch(p, 0, topo, 0, std::vector<int64_t>{1, -2, 3, 4}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(split_batch(p, 0, topo, 2, std::vector<int64_t>{1, 2, 3, 4}).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(split_batch(p, 1, topo, 0, std::vector<int64_t>{1, 2, 3, 4}).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(split_batch(p, 0, *Topology::uniform(4, 1), 0, std::vector<int64_t>{1, 2, 3, 4}).status().code(),
            StatusCode::kInvalidArgument);
}

// Property: on random placements and batches, every rank's segments cover
// exactly its own tokens, the global loads implied by all ranks' segments equal
// rank_load, segments only name replicas of their expert, and the batch's max
// rank load is never worse than the even split of the same placement.
TEST(BatchSplitProperty, ConservesTokensAndBeatsEvenSplit) {
  std::mt19937_64 rng(7);
  int strictly_better = 0;
  for (int trial = 0; trial < 80; ++trial) {
    const int32_t R = std::uniform_int_distribution<int32_t>(1, 10)(rng);
    const int32_t E = std::uniform_int_distribution<int32_t>(2, 30)(rng);
    auto p = *Placement::create(testing::random_layout(rng, 1, R, E, 0, 3, true, 0.1));
    auto topo = *Topology::uniform(R, R % 2 == 0 ? 2 : 1);
    std::vector<int64_t> counts(static_cast<size_t>(R * E));
    std::lognormal_distribution<double> ln(0, 1.2);
    for (auto& c : counts) c = static_cast<int64_t>(ln(rng) * 20);
    std::vector<int64_t> served(static_cast<size_t>(R), 0);
    std::vector<int64_t> rank_load;
    for (RankId q = 0; q < R; ++q) {
      auto s = split_batch(p, 0, topo, q, counts);
      ASSERT_TRUE(s.ok()) << s.status();
      if (q == 0) rank_load = s->rank_load;
      EXPECT_EQ(s->rank_load, rank_load) << "ranks disagree, trial " << trial;
      for (ExpertId e = 0; e < E; ++e) {
        int64_t mine = 0;
        for (int32_t k = s->segment_offset[static_cast<size_t>(e)]; k < s->segment_offset[static_cast<size_t>(e) + 1];
             ++k) {
          EXPECT_EQ(p.expert_at(0, s->segment_slot[static_cast<size_t>(k)]), e);
          mine += s->segment_count[static_cast<size_t>(k)];
          served[static_cast<size_t>(p.rank_of(0, s->segment_slot[static_cast<size_t>(k)]))] +=
              s->segment_count[static_cast<size_t>(k)];
        }
        EXPECT_EQ(mine, counts[static_cast<size_t>(q * E + e)]) << "trial " << trial;
      }
    }
    EXPECT_EQ(served, rank_load) << "trial " << trial;
    // Even split of the same batch.
    std::vector<double> total(static_cast<size_t>(E), 0);
    for (RankId q = 0; q < R; ++q)
      for (ExpertId e = 0; e < E; ++e) total[static_cast<size_t>(e)] += static_cast<double>(counts[static_cast<size_t>(q * E + e)]);
    std::vector<double> even(static_cast<size_t>(R), 0);
    for (ExpertId e = 0; e < E; ++e) {
      const auto reps = p.replicas(0, e);
      for (GlobalSlot g : reps) even[static_cast<size_t>(p.rank_of(0, g))] += total[static_cast<size_t>(e)] / static_cast<double>(reps.size());
    }
    const double max_split = static_cast<double>(*std::max_element(rank_load.begin(), rank_load.end()));
    const double max_even = *std::max_element(even.begin(), even.end());
    EXPECT_LE(max_split, max_even + 1.0) << "trial " << trial;  // +1: integer rounding
    if (max_split < max_even - 1.0) ++strictly_better;
  }
  EXPECT_GT(strictly_better, 20);
}

}  // namespace
}  // namespace omni
