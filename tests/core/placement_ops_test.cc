#include "omniplacement/core/placement_ops.h"

#include <gtest/gtest.h>

#include <random>

#include "common/random_placement.h"

namespace omni {
namespace {

// 2 layers, 2 ranks, 3 experts, 2 slots per rank.
Placement two_layers(std::vector<ExpertId> l0, std::vector<ExpertId> l1, std::vector<std::vector<double>> shares = {}) {
  PlacementLayout p;
  p.num_ranks = 2;
  p.num_experts = 3;
  p.slots_per_rank = {2, 2};
  p.phy2log = {std::move(l0), std::move(l1)};
  p.shares = std::move(shares);
  auto out = Placement::create(std::move(p), lost_experts_allowed());
  OMNI_CHECK_MSG(out.ok(), out.status().to_string());
  return *std::move(out);
}

TEST(PlacementOpsTest, LayersEqualComparesExpertsAndShares) {
  const Placement a = two_layers({0, 1, 2, 0}, {0, 1, 2, -1});
  const Placement b = two_layers({0, 1, 2, 0}, {0, 1, -1, 2});
  EXPECT_TRUE(layers_equal(a, b, 0));
  EXPECT_FALSE(layers_equal(a, b, 1));
  // Explicit shares equal to the even split are equal; uneven ones are not.
  const Placement even = two_layers({0, 1, 2, 0}, {0, 1, 2, -1}, {{0.5, 1, 1, 0.5}, {1, 1, 1, 0}});
  const Placement uneven = two_layers({0, 1, 2, 0}, {0, 1, 2, -1}, {{0.25, 1, 1, 0.75}, {1, 1, 1, 0}});
  EXPECT_TRUE(layers_equal(a, even, 0));
  EXPECT_FALSE(layers_equal(a, uneven, 0));
  EXPECT_TRUE(layers_equal(a, uneven, 1));
}

TEST(PlacementOpsTest, HoldsOnRanksAndLostExperts) {
  const Placement p = two_layers({0, 1, -1, -1}, {0, 1, 2, -1});
  const std::vector<RankId> r1 = {1}, r0 = {0}, none = {}, out_of_range = {7};
  EXPECT_FALSE(holds_on_ranks(two_layers({0, 1, -1, -1}, {0, 1, -1, -1}), r1));
  EXPECT_TRUE(holds_on_ranks(p, r1));  // layer 1, rank 1 slot 0 holds expert 2
  EXPECT_TRUE(holds_on_ranks(p, r0));
  EXPECT_FALSE(holds_on_ranks(p, none));
  EXPECT_FALSE(holds_on_ranks(p, out_of_range));
  EXPECT_EQ(count_lost_experts(p), 1);  // layer 0 has no expert 2
  const std::vector<LostExpert> lost = experts_without_replica(p);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0], (LostExpert{0, 2}));
}

struct RenormaliseCase {
  std::string name;
  std::vector<ExpertId> row;
  std::vector<double> shares;
  std::vector<double> want;
};

class RenormaliseSharesTest : public ::testing::TestWithParam<RenormaliseCase> {};

TEST_P(RenormaliseSharesTest, EveryExpertSumsToOne) {
  const RenormaliseCase& c = GetParam();
  std::vector<double> sh = c.shares;
  renormalise_shares(c.row, sh, 3);
  ASSERT_EQ(sh.size(), c.want.size());
  for (size_t g = 0; g < sh.size(); ++g) EXPECT_DOUBLE_EQ(sh[g], c.want[g]) << "slot " << g;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RenormaliseSharesTest,
    ::testing::Values(RenormaliseCase{"AlreadyNormal", {0, 1, 0, 2}, {0.25, 1, 0.75, 1}, {0.25, 1, 0.75, 1}},
                      RenormaliseCase{"SurvivorTakesAll", {0, 1, -1, 2}, {0.25, 1, 0.75, 1}, {1, 1, 0, 1}},
                      RenormaliseCase{"ScaledUp", {0, 0, 1, 2}, {0.1, 0.3, 0.5, 2}, {0.25, 0.75, 1, 1}},
                      RenormaliseCase{"ZeroSumIsEven", {0, 0, 1, 2}, {0, 0, 1, 1}, {0.5, 0.5, 1, 1}},
                      RenormaliseCase{"EmptySlotGetsZero", {-1, 0, 1, 2}, {0.4, 1, 1, 1}, {0, 1, 1, 1}}),
    [](const auto& info) { return info.param.name; });

TEST(PlacementOpsTest, ComposeTakesTheNamedLayers) {
  const Placement base = two_layers({0, 1, 2, 0}, {0, 1, 2, -1});
  const Placement next = two_layers({2, 1, 0, -1}, {1, 0, 2, 2});
  const std::vector<LayerId> second = {1};
  auto c = compose_layers(base, next, second);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(layers_equal(*c, base, 0));
  EXPECT_TRUE(layers_equal(*c, next, 1));
  EXPECT_FALSE(c->has_shares());
  const std::vector<LayerId> all = {0, 1};
  auto whole = compose_layers(base, next, all);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(*whole, next);
  auto none = compose_layers(base, next, {});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, base);
}

TEST(PlacementOpsTest, ComposeKeepsSharesOfEitherSide) {
  const Placement base = two_layers({0, 1, 2, 0}, {0, 1, 2, -1});
  const Placement next = two_layers({0, 1, 2, 0}, {0, 1, 2, 2}, {{0.2, 1, 1, 0.8}, {1, 1, 0.3, 0.7}});
  const std::vector<LayerId> second = {1};
  auto c = compose_layers(base, next, second);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->has_shares());
  EXPECT_DOUBLE_EQ(c->share_of(0, 3), 0.5);  // base's even split, made explicit
  EXPECT_DOUBLE_EQ(c->share_of(1, 3), 0.7);  // next's
  EXPECT_TRUE(layers_equal(*c, base, 0));
  EXPECT_TRUE(layers_equal(*c, next, 1));
}

TEST(PlacementOpsTest, ComposeRefusesMismatchedShapesAndLayers) {
  const Placement base = two_layers({0, 1, 2, 0}, {0, 1, 2, -1});
  auto other = Placement::contiguous(2, 3, 3, 1);
  ASSERT_TRUE(other.ok());
  auto c = compose_layers(base, *other, {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("layers, ranks and experts must be equal"), std::string::npos) << c.status();
  const std::vector<LayerId> bad = {2};
  auto d = compose_layers(base, base, bad);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("layer 2 out of [0, 2)"), std::string::npos) << d.status();
}

// Property: composing every layer one at a time, in any order, ends at next,
// and every intermediate has each layer equal to exactly one side where they differ.
TEST(PlacementOpsTest, ComposingLayerByLayerEndsAtNext) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    auto a = Placement::create(testing::random_layout(rng, 4, 3, 7, 0, 2));
    auto b = Placement::create(testing::random_layout(rng, 4, 3, 7, 0, 2));
    ASSERT_TRUE(a.ok() && b.ok());
    Placement cur = *a;
    std::vector<LayerId> order = {2, 0, 3, 1};
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i = 0; i < order.size(); ++i) {
      const std::vector<LayerId> one = {order[i]};
      auto c = compose_layers(cur, *b, one);
      ASSERT_TRUE(c.ok()) << c.status();
      cur = *std::move(c);
      for (size_t j = 0; j < order.size(); ++j)
        EXPECT_TRUE(layers_equal(cur, j <= i ? *b : *a, order[j])) << "trial " << trial << " layer " << order[j];
    }
    EXPECT_EQ(cur, *b);
  }
}

}  // namespace
}  // namespace omni
