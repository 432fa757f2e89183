// Spec strings: parsing, canonical round trip and error messages.
#include <gtest/gtest.h>

#include <random>

#include "omniplacement/planner/planner.h"
#include "omniplacement/planner/planner_spec.h"

namespace omni {
namespace {

struct RoundTrip {
  const char* name;
  const char* spec;
  const char* canonical;
};

class SpecRoundTrip : public ::testing::TestWithParam<RoundTrip> {};

TEST_P(SpecRoundTrip, CanonicalIsAFixedPoint) {
  const RoundTrip& c = GetParam();
  auto p = make_planner(c.spec);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->spec(), c.canonical);
  auto again = make_planner((*p)->spec());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->spec(), c.canonical);
  EXPECT_EQ((*again)->name(), (*p)->name());
}

INSTANTIATE_TEST_SUITE_P(
    Specs, SpecRoundTrip,
    ::testing::Values(RoundTrip{"Eplb", "eplb", "eplb"}, RoundTrip{"EplbAutoFlagIsDefault", "eplb(auto)", "eplb"},
                      RoundTrip{"EplbHierarchical", "eplb(hierarchical)", "eplb(hierarchical)"},
                      RoundTrip{"EplbGlobalWithSpaces", "  eplb ( global ) ", "eplb(global)"},
                      RoundTrip{"OmniDefaults", "omni", "omni"}, RoundTrip{"OmniEmptyParens", "omni()", "omni"},
                      RoundTrip{"OmniDefaultValuesDropped", "omni(max_replicas_per_expert=0,shares=false)", "omni"},
                      RoundTrip{"OmniCapAndBudget", "omni(max_replicas_per_expert=8,time_budget_ms=5)",
                                "omni(max_replicas_per_expert=8,time_budget_ms=5)"},
                      RoundTrip{"OmniKeysReordered", "omni(time_budget_ms=5, max_replicas_per_expert=8)",
                                "omni(max_replicas_per_expert=8,time_budget_ms=5)"},
                      RoundTrip{"OmniAll",
                                "omni(shares=1,reallocate=false,locality=groups,locality_slack=0.1,max_iterations=100)",
                                "omni(shares=true,reallocate=false,locality=groups,locality_slack=0.1,max_iterations=100)"},
                      RoundTrip{"Contiguous", "contiguous", "contiguous"}),
    [](const ::testing::TestParamInfo<RoundTrip>& info) { return std::string(info.param.name); });

struct BadSpec {
  const char* name;
  const char* spec;
  StatusCode code;
  const char* must_mention;  // the error lists what is valid
};

class SpecErrors : public ::testing::TestWithParam<BadSpec> {};

TEST_P(SpecErrors, ClearStatus) {
  const BadSpec& c = GetParam();
  auto p = make_planner(c.spec);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), c.code) << p.status();
  EXPECT_NE(p.status().message().find(c.must_mention), std::string::npos) << p.status();
}

INSTANTIATE_TEST_SUITE_P(
    Specs, SpecErrors,
    ::testing::Values(
        BadSpec{"UnknownNameListsRegistered", "greedy", StatusCode::kNotFound, "contiguous, eplb, omni"},
        BadSpec{"UnknownKeyListsValid", "omni(max_replicas=8)", StatusCode::kInvalidArgument, "max_replicas_per_expert="},
        BadSpec{"NegativeCap", "omni(max_replicas_per_expert=-1)", StatusCode::kInvalidArgument, "an integer in [0,"},
        BadSpec{"NotANumber", "omni(time_budget_ms=fast)", StatusCode::kInvalidArgument, "a number in"},
        BadSpec{"BadBool", "omni(shares=yes)", StatusCode::kInvalidArgument, "true or false"},
        BadSpec{"BadChoice", "omni(locality=rack)", StatusCode::kInvalidArgument, "none, groups, coactivation, spread"},
        BadSpec{"UnknownEplbFlag", "eplb(fast)", StatusCode::kInvalidArgument, "hierarchical or global"},
        BadSpec{"TwoEplbFlags", "eplb(hierarchical,global)", StatusCode::kInvalidArgument, "exclude each other"},
        BadSpec{"MissingParen", "omni(shares=true", StatusCode::kInvalidArgument, "missing ')'"},
        BadSpec{"DuplicateKey", "omni(shares=true,shares=false)", StatusCode::kInvalidArgument, "given twice"},
        BadSpec{"EmptyItem", "omni(shares=true,)", StatusCode::kInvalidArgument, "empty parameter"},
        BadSpec{"EmptyName", "(x)", StatusCode::kInvalidArgument, "lower-case"},
        BadSpec{"UpperCaseName", "EPLB", StatusCode::kInvalidArgument, "lower-case"},
        BadSpec{"Nested", "omni(a=(b))", StatusCode::kInvalidArgument, "nested"},
        BadSpec{"TrailingGarbageNumber", "omni(max_replicas_per_expert=8x)", StatusCode::kInvalidArgument,
                "an integer"},
        BadSpec{"ContiguousTakesNothing", "contiguous(x=1)", StatusCode::kInvalidArgument, "valid: none"}),
    [](const ::testing::TestParamInfo<BadSpec>& info) { return std::string(info.param.name); });

TEST(PlannerSpec, ParsesFlagsAndKeysInOrder) {
  auto s = PlannerSpec::parse("omni( a=1 , flag ,b = x )");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, "omni");
  ASSERT_EQ(s->params.size(), 3u);
  EXPECT_EQ(s->params[0].key, "a");
  EXPECT_EQ(s->params[0].value, "1");
  EXPECT_EQ(s->params[1].key, "");
  EXPECT_EQ(s->params[1].value, "flag");
  EXPECT_EQ(s->params[2].key, "b");
  EXPECT_EQ(s->params[2].value, "x");
  EXPECT_EQ(s->to_string(), "omni(a=1,flag,b=x)");
}

TEST(PlannerRegistry, NamesAndHelp) {
  EXPECT_EQ(planner_names(), (std::vector<std::string>{"contiguous", "eplb", "omni"}));
  const std::string help = planner_help();
  EXPECT_NE(help.find("max_replicas_per_expert"), std::string::npos);
  auto c = canonical_spec("omni(time_budget_ms=2.5)");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, "omni(time_budget_ms=2.5)");
}

struct InputCase {
  const char* name;
  int32_t num_ranks;
  std::vector<int32_t> slots_per_rank;
  int64_t num_replicas;
  const char* must_mention;
};

class PlanInputErrors : public ::testing::TestWithParam<InputCase> {};

TEST_P(PlanInputErrors, EveryPlannerRejects) {
  const InputCase& c = GetParam();
  auto load = LoadMatrix::from_counts(2, 8, std::vector<int64_t>(16, 5));
  PlanInput in;
  in.load = &*load;
  in.num_ranks = c.num_ranks;
  in.slots_per_rank = c.slots_per_rank;
  in.num_replicas = c.num_replicas;
  for (const std::string& name : planner_names()) {
    auto p = make_planner(name);
    ASSERT_TRUE(p.ok());
    auto r = (*p)->plan(in);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.must_mention), std::string::npos) << r.status();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, PlanInputErrors,
    ::testing::Values(InputCase{"ZeroRanks", 0, {}, 8, "num_ranks"},
                      InputCase{"ReplicasNotMultipleOfRanks", 4, {}, 10, "multiple of num_ranks"},
                      InputCase{"NoSlotsGiven", 4, {}, 0, "multiple of num_ranks"},
                      InputCase{"TooFewSlots", 4, {1}, 0, "need at least 2"},
                      InputCase{"TooFewSlotsInOneLayer", 4, {2, 1}, 0, "layer 1"},
                      InputCase{"WrongNumberOfLayers", 4, {2, 2, 2}, 0, "give 1 (all layers)"}),
    [](const ::testing::TestParamInfo<InputCase>& info) { return std::string(info.param.name); });

TEST(PlanInput, MissingLoad) {
  PlanInput in;
  in.num_ranks = 2;
  in.num_replicas = 4;
  auto p = make_planner("omni");
  auto r = (*p)->plan(in);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("load is required"), std::string::npos);
}

// PlanInput's typed limits: the same plan as the spec parameter, no string splicing.
TEST(TypedLimits, OverrideTheSpecAndAreRefusedByScratchPlanners) {
  std::mt19937_64 rng(3);
  std::vector<int64_t> counts(2 * 24);
  for (auto& c : counts) c = std::uniform_int_distribution<int64_t>(1, 400)(rng);
  const LoadMatrix load = *LoadMatrix::from_counts(2, 24, counts);
  const Placement current = *Placement::contiguous(2, 6, 24, 5);
  PlanInput in;
  in.load = &load;
  in.num_ranks = 6;
  in.slots_per_rank = {5};
  in.current = &current;
  auto omni = make_planner("omni");
  ASSERT_TRUE(omni.ok());
  EXPECT_TRUE((*omni)->takes_incremental_limits());
  for (const int32_t moves : {0, 1, 3}) {
    auto spliced = make_planner("omni(max_moves_per_rank=" + std::to_string(moves) + ")");
    ASSERT_TRUE(spliced.ok());
    auto want = (*spliced)->plan(in);
    PlanInput typed = in;
    typed.max_moves_per_rank = moves;
    auto got = (*omni)->plan(typed);
    ASSERT_TRUE(want.ok() && got.ok()) << want.status() << got.status();
    EXPECT_EQ(got->placement, want->placement) << "max_moves_per_rank " << moves;
  }
  // min_gain (omni has no spec parameter for it): a plan that does not improve
  // the window's mean max/mean by that much keeps the placement in force.
  {
    auto plain = (*omni)->plan(in);
    ASSERT_TRUE(plain.ok()) << plain.status();
    ASSERT_GT(plain->stats.slots_changed, 0);
    EXPECT_FALSE(plain->stats.skipped);
    PlanInput gated = in;
    gated.min_gain = 10.0;  // no plan improves max/mean by 10
    auto kept = (*omni)->plan(gated);
    ASSERT_TRUE(kept.ok()) << kept.status();
    EXPECT_TRUE(kept->stats.skipped);
    EXPECT_EQ(kept->stats.slots_changed, 0);
    EXPECT_EQ(kept->placement, current);
    gated.min_gain = 0;  // 0: no check
    auto taken = (*omni)->plan(gated);
    ASSERT_TRUE(taken.ok()) << taken.status();
    EXPECT_FALSE(taken->stats.skipped);
    EXPECT_EQ(taken->placement, plain->placement);
    EXPECT_FALSE(make_planner("omni(min_gain=0.01)").ok()) << "min_gain is no spec parameter of omni";
  }
  // The typed value wins over the spec's for this call.
  auto spec_two = make_planner("omni(max_moves_per_rank=2)");
  PlanInput one = in;
  one.max_moves_per_rank = 1;
  auto a = (*spec_two)->plan(one);
  auto b = (*make_planner("omni(max_moves_per_rank=1)"))->plan(in);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->placement, b->placement);
  PlanInput bad = in;
  bad.max_moves_per_rank = -2;
  EXPECT_EQ((*omni)->plan(bad).status().code(), StatusCode::kInvalidArgument);
  for (const char* scratch : {"eplb", "contiguous"}) {
    auto p = make_planner(scratch);
    ASSERT_TRUE(p.ok());
    EXPECT_FALSE((*p)->takes_incremental_limits());
    PlanInput limited = in;
    limited.max_moves_per_rank = 1;
    auto r = (*p)->plan(limited);
    ASSERT_FALSE(r.ok()) << scratch;
    EXPECT_NE(r.status().message().find(std::string(scratch) + " plans from scratch"), std::string::npos)
        << r.status();
    EXPECT_TRUE((*p)->plan(in).ok()) << scratch;  // unset limits: as before
  }
}

}  // namespace
}  // namespace omni
