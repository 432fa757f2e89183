#include "omniplacement/runtime/migration_steps.h"

#include <gtest/gtest.h>

#include <random>

#include "common/random_placement.h"
#include "omniplacement/core/placement_ops.h"

namespace omni {
namespace {

Topology hosts(int32_t num_ranks, int32_t per_host) { return *Topology::uniform(num_ranks, per_host); }

Placement make(int32_t num_ranks, int32_t num_experts, int32_t spr, std::vector<std::vector<ExpertId>> rows,
               std::vector<std::vector<double>> shares = {}, bool every_expert = true) {
  PlacementLayout p;
  p.num_ranks = num_ranks;
  p.num_experts = num_experts;
  p.slots_per_rank.assign(rows.size(), spr);
  p.phy2log = std::move(rows);
  p.shares = std::move(shares);
  auto out = Placement::create(std::move(p), every_expert ? ValidationRules{} : lost_experts_allowed());
  OMNI_CHECK_MSG(out.ok(), out.status().to_string());
  return *std::move(out);
}

MigrationOptions budget(int64_t experts, int32_t layers, int64_t expert_bytes = 100) {
  MigrationOptions o;
  o.expert_bytes = expert_bytes;
  o.staging_bytes_per_rank = experts * expert_bytes;
  o.layers_per_commit = layers;
  return o;
}

TEST(MigrationStepsTest, EqualPlacementsNeedNoStep) {
  const Placement p = make(2, 3, 2, {{0, 1, 2, 0}});
  auto steps = migration_steps(p, p, hosts(2, 1), budget(1, 0));
  ASSERT_TRUE(steps.ok()) << steps.status();
  EXPECT_TRUE(steps->empty());
}

TEST(MigrationStepsTest, OneStepPerRoundOfTheMigrationPlan) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 30; ++trial) {
    PlacementLayout la = testing::random_layout(rng, 3, 4, 9, 1, 1, true, 0.2);
    PlacementLayout lb = testing::random_layout(rng, 3, 4, 9, 1, 1, true, 0.2);
    lb.slots_per_rank = la.slots_per_rank;  // a runtime's slots do not change
    for (size_t l = 0; l < lb.phy2log.size(); ++l) lb.phy2log[l].resize(la.phy2log[l].size(), kEmptySlot);
    auto a = Placement::create(la, lost_experts_allowed());
    auto b = Placement::create(lb, lost_experts_allowed());
    ASSERT_TRUE(a.ok() && b.ok());
    if (count_lost_experts(*a) > 0 || count_lost_experts(*b) > 0) continue;  // diff needs every expert's source
    const Topology topo = hosts(4, 2);
    const MigrationOptions o = budget(1 + trial % 3, trial % 3);
    auto steps = migration_steps(*a, *b, topo, o);
    auto plan = diff(*a, *b, topo, o);
    ASSERT_TRUE(steps.ok() && plan.ok()) << steps.status() << plan.status();
    ASSERT_EQ(static_cast<int32_t>(steps->size()), plan->num_rounds()) << "trial " << trial;
    const Placement* prev = &*a;
    for (size_t k = 0; k < steps->size(); ++k) {
      const MigrationStep& s = (*steps)[k];
      EXPECT_EQ(s.transfers, plan->rounds[k].transfers);
      EXPECT_EQ(s.max_receive_bytes, plan->rounds[k].max_receive_bytes);
      auto want = routing_after_round(*a, *plan, *b, static_cast<int32_t>(k + 1));
      ASSERT_TRUE(want.ok());
      EXPECT_EQ(*s.routing, *want);
      std::vector<LayerId> changed;
      for (LayerId l = 0; l < a->num_layers(); ++l)
        if (!layers_equal(*prev, *s.routing, l)) changed.push_back(l);
      EXPECT_EQ(s.changed, changed);
      prev = s.routing.get();
    }
    if (!steps->empty()) {
      EXPECT_EQ(*steps->back().routing, *b);
    }
  }
}

TEST(MigrationStepsTest, SharesOnlyChangeIsOneStepWithoutTransfers) {
  const Placement a = make(2, 2, 2, {{0, 1, 0, 1}});
  const Placement b = make(2, 2, 2, {{0, 1, 0, 1}}, {{0.25, 0.5, 0.75, 0.5}});
  auto steps = migration_steps(a, b, hosts(2, 1), budget(1, 0));
  ASSERT_TRUE(steps.ok()) << steps.status();
  ASSERT_EQ(steps->size(), 1u);
  EXPECT_TRUE((*steps)[0].transfers.empty());
  EXPECT_EQ(*(*steps)[0].routing, b);
  EXPECT_EQ((*steps)[0].changed, std::vector<LayerId>{0});
}

TEST(MigrationStepsTest, RefusesChangedSlotsAndUnsplittableRoundsOverTheStaging) {
  const Placement a = make(2, 2, 1, {{0, 1}});
  const Placement wider = make(2, 2, 2, {{0, 1, 1, 0}});
  auto slots = migration_steps(a, wider, hosts(2, 1), budget(1, 0));
  ASSERT_FALSE(slots.ok());
  EXPECT_NE(slots.status().message().find("layer 0 has 1 slots per rank in force but 2 in the plan"),
            std::string::npos)
      << slots.status();
  // A swap of two sole copies moves in one round; it needs one expert of staging per rank.
  const Placement swapped = make(2, 2, 1, {{1, 0}});
  MigrationOptions tiny = budget(1, 0);
  tiny.staging_bytes_per_rank = 50;
  auto over = migration_steps(a, swapped, hosts(2, 1), tiny);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(over.status().message().find("migration round 0 needs 100 bytes of staging on rank 0, over "
                                         "staging_bytes_per_rank 50"),
            std::string::npos)
      << over.status();
  auto fits = migration_steps(a, swapped, hosts(2, 1), budget(1, 0));
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(fits->size(), 1u);
}

// Restores: expert 1 of every layer was lost with rank 1; each layer reloads it into rank 0's empty slot.
struct RestoreCase {
  int64_t experts;  // staging budget in experts per rank (0: none)
  int32_t layers;   // layers_per_commit (0: none)
  std::vector<std::vector<LayerId>> want;
};

TEST(MigrationStepsTest, RestoresGoWholeLayersUnderTheBudget) {
  const Placement lost = make(2, 2, 2, {{0, -1, -1, -1}, {0, -1, -1, -1}, {0, -1, -1, -1}}, {}, false);
  const Placement next = make(2, 2, 2, {{0, 1, -1, -1}, {0, 1, -1, -1}, {0, 1, -1, -1}});
  std::vector<Transfer> ts;
  for (LayerId l = 0; l < 3; ++l) ts.push_back(Transfer{l, 1, -1, -1, 0, 1, kEmptySlot, LinkClass::kSameRank, 100});
  for (const RestoreCase& c : std::vector<RestoreCase>{{0, 0, {{0, 1, 2}}},
                                                        {2, 0, {{0, 1}, {2}}},
                                                        {0, 1, {{0}, {1}, {2}}},
                                                        {3, 2, {{0, 1}, {2}}}}) {
    MigrationOptions o = budget(c.experts, c.layers);
    auto steps = restore_steps(lost, next, ts, o);
    ASSERT_TRUE(steps.ok()) << steps.status();
    ASSERT_EQ(steps->size(), c.want.size()) << "staging " << c.experts << ", layers " << c.layers;
    std::vector<LayerId> done;
    for (size_t k = 0; k < steps->size(); ++k) {
      const MigrationStep& s = (*steps)[k];
      EXPECT_EQ(s.changed, c.want[k]);
      EXPECT_EQ(s.transfers.size(), c.want[k].size());
      done.insert(done.end(), c.want[k].begin(), c.want[k].end());
      for (LayerId l = 0; l < 3; ++l)
        EXPECT_TRUE(layers_equal(*s.routing, std::find(done.begin(), done.end(), l) != done.end() ? next : lost, l));
    }
    EXPECT_EQ(*steps->back().routing, next);
  }
  MigrationOptions small = budget(1, 0);
  small.staging_bytes_per_rank = 99;
  auto over = restore_steps(lost, next, ts, small);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("restore of layer 0 needs 100 bytes of staging on one rank"),
            std::string::npos)
      << over.status();
}

}  // namespace
}  // namespace omni
