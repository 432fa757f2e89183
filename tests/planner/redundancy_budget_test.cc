// Layer-wise redundancy budget: the dynamic program against brute force, the
// reference rules, and the errors.
#include "omniplacement/planner/redundancy_budget.h"

#include <gtest/gtest.h>

#include <random>

#include "common/random_placement.h"
#include "omniplacement/core/metrics.h"

namespace omni {
namespace {

std::unique_ptr<Planner> omni_planner() { return std::move(make_planner("omni")).value(); }

// Cost of layer l with k redundant slots per rank, planned on its own.
double layer_cost(const LoadMatrix& load, LayerId l, int32_t R, int32_t k, const Planner& p) {
  auto one = load.layers(l, 1);
  PlanInput in;
  in.load = &*one;
  in.num_ranks = R;
  in.slots_per_rank = {(load.num_experts() + R - 1) / R + k};
  auto plan = p.plan(in);
  return layer_balance(plan->placement, *one, 0)->max;
}

TEST(RedundancyBudget, OptimalMatchesBruteForce) {
  std::mt19937_64 rng(21);
  const auto p = omni_planner();
  for (int trial = 0; trial < 4; ++trial) {
    LoadMatrix load = testing::random_load(rng, 3, 16, 0.6 + 0.4 * trial);
    const int32_t R = 4, B = 3;
    auto a = allocate_redundancy(load, R, B, *p, BudgetRule::kOptimal);
    ASSERT_TRUE(a.ok()) << a.status();
    double best = 1e300;
    for (int k0 = 0; k0 <= B; ++k0)
      for (int k1 = 0; k0 + k1 <= B; ++k1)
        for (int k2 = 0; k0 + k1 + k2 <= B; ++k2)
          best = std::min(best, layer_cost(load, 0, R, k0, *p) + layer_cost(load, 1, R, k1, *p) +
                                    layer_cost(load, 2, R, k2, *p));
    EXPECT_NEAR(a->sum_max, best, 1e-9 * best) << "trial " << trial;
    int32_t used = 0;
    for (int32_t k : a->redundant_per_rank) used += k;
    EXPECT_LE(used, B);
    for (LayerId l = 0; l < 3; ++l) EXPECT_EQ(a->slots_per_rank[static_cast<size_t>(l)], 4 + a->redundant_per_rank[static_cast<size_t>(l)]);
  }
}

TEST(RedundancyBudget, OptimalNoWorseThanTheRules) {
  std::mt19937_64 rng(22);
  const auto p = omni_planner();
  LoadMatrix load = testing::random_load(rng, 10, 32, 1.2);
  for (int64_t B : {0, 3, 10, 17}) {
    auto opt = allocate_redundancy(load, 8, B, *p, BudgetRule::kOptimal);
    auto uni = allocate_redundancy(load, 8, B, *p, BudgetRule::kUniform);
    auto heavy = allocate_redundancy(load, 8, B, *p, BudgetRule::kHeaviestLayers);
    ASSERT_TRUE(opt.ok() && uni.ok() && heavy.ok());
    EXPECT_LE(opt->sum_max, uni->sum_max * (1 + 1e-12)) << B;
    EXPECT_LE(opt->sum_max, heavy->sum_max * (1 + 1e-12)) << B;
  }
}

TEST(RedundancyBudget, ReferenceRules) {
  // Layer 1 is the heaviest (largest max with no redundancy), then layer 2.
  auto load = LoadMatrix::from_counts(3, 4, {5, 5, 5, 5, 100, 1, 1, 1, 50, 1, 1, 1});
  const auto p = omni_planner();
  auto uni = allocate_redundancy(load.value(), 2, 4, *p, BudgetRule::kUniform);
  ASSERT_TRUE(uni.ok());
  EXPECT_EQ(uni->redundant_per_rank, (std::vector<int32_t>{2, 1, 1}));
  auto heavy = allocate_redundancy(load.value(), 2, 2, *p, BudgetRule::kHeaviestLayers);
  ASSERT_TRUE(heavy.ok());
  EXPECT_EQ(heavy->redundant_per_rank, (std::vector<int32_t>{0, 1, 1}));
  auto opt = allocate_redundancy(load.value(), 2, 2, *p, BudgetRule::kOptimal);
  ASSERT_TRUE(opt.ok());
  // A second replica of expert 0 in layer 1 halves its max (100 -> 51 + ...).
  EXPECT_GE(opt->redundant_per_rank[1], 1);
  EXPECT_EQ(opt->redundant_per_rank[0], 0);  // a flat layer gains nothing
}

TEST(RedundancyBudget, Errors) {
  auto load = LoadMatrix::from_counts(2, 4, {1, 2, 3, 4, 5, 6, 7, 8});
  const auto p = omni_planner();
  auto a = allocate_redundancy(*load, 2, -1, *p, BudgetRule::kOptimal);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("budget must be in [0,"), std::string::npos) << a.status();
  auto b = allocate_redundancy(*load, 0, 2, *p, BudgetRule::kOptimal);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("num_ranks"), std::string::npos);
}

}  // namespace
}  // namespace omni
