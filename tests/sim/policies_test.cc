#include "omniplacement/sim/policies.h"

#include <gtest/gtest.h>

namespace omni::sim {
namespace {

PolicyContext small_context() {
  PolicyContext ctx;
  ctx.topology = *Topology::uniform(4, 2);
  ctx.num_layers = 2;
  ctx.num_experts = 8;
  ctx.slots_per_rank = 3;
  ctx.num_groups = 2;
  return ctx;
}

TEST(PoliciesTest, StandardNamesGiveTheirKinds) {
  auto all = make_policies("contiguous,static-eplb,static-omni,dynamic-eplb,dynamic-omni,oracle", small_context());
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 6u);
  const std::vector<PolicyKind> kinds = {PolicyKind::kFixed,   PolicyKind::kStatic,  PolicyKind::kStatic,
                                         PolicyKind::kDynamic, PolicyKind::kDynamic, PolicyKind::kOracle};
  for (size_t i = 0; i < kinds.size(); ++i) {
    EXPECT_EQ((*all)[i].kind, kinds[i]) << (*all)[i].name;
    EXPECT_EQ((*all)[i].name, standard_policy_names()[i]);
  }
  EXPECT_EQ((*all)[0].placement, *Placement::contiguous(2, 4, 8, 3));
  EXPECT_FALSE((*all)[5].charge_migration);
}

TEST(PoliciesTest, KindColonSpecKeepsCommasInsideParentheses) {
  auto p = make_policies("static:eplb(global),dynamic:omni(max_replicas_per_expert=2,reallocate=false)", small_context());
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[1].name, "dynamic:omni(max_replicas_per_expert=2,reallocate=false)");
  EXPECT_EQ((*p)[1].kind, PolicyKind::kDynamic);
}

TEST(PoliciesTest, PlanFnsPlanValidPlacementsOfTheContext) {
  PolicyContext ctx = small_context();
  ctx.serving.expert_bytes = 0;  // moves cost only the latency: worth it for the hot expert
  const LoadMatrix load = *LoadMatrix::from_counts(2, 8, {80, 1, 1, 1, 1, 1, 1, 1, 5, 5, 5, 5, 5, 5, 5, 40});
  for (const char* spec : {"eplb", "omni"}) {
    auto plan = planner_plan_fn(spec, ctx, /*incremental=*/true);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const Placement contiguous = *Placement::contiguous(2, 4, 8, 3);
    auto p = (*plan)(load, &contiguous, {load});
    ASSERT_TRUE(p.ok()) << spec << ": " << p.status();
    EXPECT_EQ(p->num_ranks(), 4);
    EXPECT_EQ(p->slots_per_rank(0), 3);
    EXPECT_GE(p->replica_count(0, 0), 2) << spec << ": the hot expert gets a redundant slot";
  }
}

TEST(PoliciesTest, UnknownNamesAndSpecsAreErrors) {
  const PolicyContext ctx = small_context();
  auto bad = make_policy("dynamic-magic", ctx);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("dynamic-omni"), std::string::npos) << bad.status();
  EXPECT_FALSE(make_policy("static:nosuchplanner", ctx).ok());
  EXPECT_FALSE(make_policy("sometimes:omni", ctx).ok());
  EXPECT_FALSE(make_policies("", ctx).ok());
  EXPECT_FALSE(make_policies(",,", ctx).ok());
}

}  // namespace
}  // namespace omni::sim
