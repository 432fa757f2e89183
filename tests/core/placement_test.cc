#include "omniplacement/core/placement.h"

#include <gtest/gtest.h>

#include <random>

#include "common/random_placement.h"
#include "omniplacement/core/metrics.h"

namespace omni {
namespace {

PlacementLayout small_layout() {
  // 1 layer, 2 ranks, 3 experts, 2 slots per rank: [0, 1 | 2, 0]
  PlacementLayout p;
  p.num_ranks = 2;
  p.num_experts = 3;
  p.slots_per_rank = {2};
  p.phy2log = {{0, 1, 2, 0}};
  return p;
}

TEST(PlacementTest, IndexesReplicas) {
  auto p = Placement::create(small_layout());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->num_slots(0), 4);
  EXPECT_EQ(p->replica_count(0, 0), 2);
  EXPECT_EQ(p->replicas(0, 0)[1], 3);
  EXPECT_EQ(p->rank_of(0, 3), 1);
  EXPECT_EQ(p->local_slot(0, 3), 1);
  EXPECT_EQ(p->expert_at(0, 1, 0), 2);
  EXPECT_DOUBLE_EQ(p->share_of(0, 3), 0.5);
  EXPECT_EQ(p->num_replicas(0), 4);
}

TEST(PlacementTest, ContiguousSpreadsExpertsInOrder) {
  auto p = Placement::contiguous(2, 4, 10, 3);
  ASSERT_TRUE(p.ok()) << p.status();
  // 10 experts on 4 ranks: 3, 3, 2, 2.
  std::vector<ExpertId> want = {0, 1, 2, 3, 4, 5, 6, 7, -1, 8, 9, -1};
  auto row = p->phy2log(1);
  EXPECT_EQ(std::vector<ExpertId>(row.begin(), row.end()), want);
  EXPECT_FALSE(Placement::contiguous(1, 4, 10, 2).ok());
}

TEST(PlacementTest, LayerWiseUnevenIsFirstClass) {
  PlacementLayout p;
  p.num_ranks = 2;
  p.num_experts = 2;
  p.slots_per_rank = {1, 2};
  p.phy2log = {{0, 1}, {0, 1, 1, 0}};
  auto pl = Placement::create(p);
  ASSERT_TRUE(pl.ok()) << pl.status();
  EXPECT_FALSE(pl->is_uniform());
  EXPECT_EQ(pl->num_slots(1), 4);
  EXPECT_EQ(pl->summary(), "2 layers, 2 ranks, 2 experts, 1-2 slots per rank");
}

TEST(PlacementTest, ChecksumSeparatesPlacements) {
  auto a = Placement::create(small_layout());
  auto layout = small_layout();
  std::swap(layout.phy2log[0][0], layout.phy2log[0][1]);
  auto b = Placement::create(layout);
  EXPECT_EQ(a->checksum(), Placement::create(small_layout())->checksum());
  EXPECT_NE(a->checksum(), b->checksum());
  EXPECT_EQ(*a, *Placement::create(small_layout()));
}

TEST(PlacementTest, SharesSplitLoadUnevenly) {
  auto layout = small_layout();
  layout.shares = {{0.75, 1.0, 1.0, 0.25}};
  auto p = Placement::create(layout);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_DOUBLE_EQ(p->share_of(0, 0), 0.75);
  EXPECT_FALSE(p->without_shares().has_shares());
}

// --- validate(): each violation kind, named with layer, rank, slot, expert ---

struct ValidationCase {
  const char* name;
  void (*mutate)(PlacementLayout&, ValidationRules&);
  ViolationKind kind;
  const char* message_part;
};

class ValidateReports : public ::testing::TestWithParam<ValidationCase> {};

TEST_P(ValidateReports, NamedViolation) {
  PlacementLayout p = small_layout();
  ValidationRules rules;
  GetParam().mutate(p, rules);
  auto v = validate(p, rules);
  ASSERT_FALSE(v.empty());
  EXPECT_EQ(v[0].kind, GetParam().kind) << v[0].message;
  EXPECT_NE(v[0].message.find(GetParam().message_part), std::string::npos) << v[0].message;
  EXPECT_FALSE(Placement::create(p, rules).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ValidateReports,
    ::testing::Values(
        ValidationCase{"ExpertOutOfRange", [](PlacementLayout& p, ValidationRules&) { p.phy2log[0][2] = 3; },
                       ViolationKind::kExpertOutOfRange, "layer 0, rank 1, slot 0: expert 3 out of range"},
        ValidationCase{"HugeNegativeExpert",
                       [](PlacementLayout& p, ValidationRules&) { p.phy2log[0][1] = -2147483647; },
                       ViolationKind::kExpertOutOfRange, "rank 0, slot 1: expert -2147483647"},
        ValidationCase{"ExpertMissing", [](PlacementLayout& p, ValidationRules&) { p.phy2log[0][2] = -1; },
                       ViolationKind::kExpertMissing, "layer 0: expert 2 has no replica"},
        ValidationCase{"SameRankDuplicate",
                       [](PlacementLayout& p, ValidationRules& r) {
                         p.phy2log[0] = {0, 0, 1, 2};
                         r.forbid_same_rank_duplicates = true;
                       },
                       ViolationKind::kSameRankDuplicate, "layer 0, rank 0, slot 1: expert 0 already"},
        ValidationCase{"TooManyReplicas",
                       [](PlacementLayout&, ValidationRules& r) { r.max_replicas_per_expert = 1; },
                       ViolationKind::kTooManyReplicas, "expert 0 has 2 replicas, more than the cap of 1"},
        ValidationCase{"WrongRowLength", [](PlacementLayout& p, ValidationRules&) { p.phy2log[0].pop_back(); },
                       ViolationKind::kShape, "phy2log has 3 slots, expected"},
        ValidationCase{"ZeroSlotsPerRank", [](PlacementLayout& p, ValidationRules&) { p.slots_per_rank[0] = 0; },
                       ViolationKind::kShape, "slots_per_rank must be in"},
        ValidationCase{"HugeSlotsPerRank",
                       [](PlacementLayout& p, ValidationRules&) { p.slots_per_rank[0] = 2147483647; },
                       ViolationKind::kShape, "slots_per_rank must be in"},
        ValidationCase{"LayerCountMismatch",
                       [](PlacementLayout& p, ValidationRules&) { p.slots_per_rank.push_back(2); },
                       ViolationKind::kShape, "phy2log has 1 layers but slots_per_rank has 2"},
        ValidationCase{"NoLayers",
                       [](PlacementLayout& p, ValidationRules&) {
                         p.slots_per_rank.clear();
                         p.phy2log.clear();
                       },
                       ViolationKind::kShape, "number of layers"},
        ValidationCase{"NegativeRanks", [](PlacementLayout& p, ValidationRules&) { p.num_ranks = -3; },
                       ViolationKind::kShape, "num_ranks must be in"},
        ValidationCase{"ZeroExperts", [](PlacementLayout& p, ValidationRules&) { p.num_experts = 0; },
                       ViolationKind::kShape, "num_experts must be in"},
        ValidationCase{"NegativeCap", [](PlacementLayout&, ValidationRules& r) { r.max_replicas_per_expert = -1; },
                       ViolationKind::kShape, "max_replicas_per_expert must be >= 0"},
        ValidationCase{"SharesNotSummingToOne",
                       [](PlacementLayout& p, ValidationRules&) { p.shares = {{0.5, 1.0, 1.0, 0.25}}; },
                       ViolationKind::kBadShare, "shares of expert 0 sum to 0.75"},
        ValidationCase{"NegativeShare",
                       [](PlacementLayout& p, ValidationRules&) { p.shares = {{1.5, 1.0, 1.0, -0.5}}; },
                       ViolationKind::kBadShare, "share 1.5 must be in [0, 1]"},
        ValidationCase{"ShareRowLength", [](PlacementLayout& p, ValidationRules&) { p.shares = {{1.0}}; },
                       ViolationKind::kShape, "shares has 1 entries, expected 4"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ValidateTest, ReportsEveryViolationNotJustTheFirst) {
  PlacementLayout p;
  p.num_ranks = 2;
  p.num_experts = 4;
  p.slots_per_rank = {2, 2};
  p.phy2log = {{0, 0, 9, -1}, {0, 1, 2, 3}};
  ValidationRules rules;
  rules.forbid_same_rank_duplicates = true;
  auto v = validate(p, rules);
  // layer 0: duplicate of 0 on rank 0, expert 9 out of range, experts 1, 2, 3 missing.
  ASSERT_EQ(v.size(), 5u);
  EXPECT_EQ(v[0].kind, ViolationKind::kSameRankDuplicate);
  EXPECT_EQ(v[1].kind, ViolationKind::kExpertOutOfRange);
  EXPECT_EQ(v[1].rank, 1);
  EXPECT_EQ(v[1].slot, 0);
  EXPECT_EQ(v[1].expert, 9);
  EXPECT_EQ(v[4].expert, 3);
  Status s = violations_to_status(v, 2);
  EXPECT_NE(s.message().find("(5 violations)"), std::string::npos) << s;
  EXPECT_NE(s.message().find("3 more"), std::string::npos) << s;
}

TEST(ValidateTest, StopsAtTheLimitOnHugeInput) {
  PlacementLayout p;
  p.num_ranks = 100;
  p.num_experts = 10;
  p.slots_per_rank = {100};
  p.phy2log = {std::vector<ExpertId>(10000, 77)};
  auto v = validate(p, {}, 50);
  EXPECT_EQ(v.size(), 51u);
  EXPECT_NE(v.back().message.find("stopped after 50"), std::string::npos);
}

TEST(ValidateTest, MissingExpertAllowedWhenRuleOff) {
  PlacementLayout p = small_layout();
  p.phy2log[0][2] = -1;
  ValidationRules rules;
  rules.require_every_expert = false;
  auto pl = Placement::create(p, rules);
  ASSERT_TRUE(pl.ok()) << pl.status();
  EXPECT_EQ(pl->replica_count(0, 2), 0);
}

// Property: random valid layouts validate, and their replica index agrees with phy2log.
TEST(PlacementProperty, RandomLayoutsValidateAndIndexConsistently) {
  std::mt19937_64 rng(20261126);
  for (int trial = 0; trial < 200; ++trial) {
    const int32_t R = std::uniform_int_distribution<int32_t>(1, 12)(rng);
    const int32_t E = std::uniform_int_distribution<int32_t>(1, 40)(rng);
    const int32_t L = std::uniform_int_distribution<int32_t>(1, 4)(rng);
    auto layout = testing::random_layout(rng, L, R, E, 0, 3);
    ValidationRules rules;
    rules.forbid_same_rank_duplicates = true;
    auto p = Placement::create(layout, rules);
    ASSERT_TRUE(p.ok()) << p.status();
    for (LayerId l = 0; l < L; ++l) {
      int32_t total = 0;
      for (ExpertId e = 0; e < E; ++e) {
        ASSERT_GE(p->replica_count(l, e), 1);
        for (GlobalSlot g : p->replicas(l, e)) ASSERT_EQ(p->expert_at(l, g), e);
        total += p->replica_count(l, e);
      }
      EXPECT_EQ(total, p->num_replicas(l));
      EXPECT_EQ(same_rank_duplicates(*p, l), 0);
    }
  }
}

}  // namespace
}  // namespace omni
