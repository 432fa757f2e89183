// omni(forecast=false) from a placement in force: the budgeted incremental
// fit of `load` (issue 5 item 1), and the rank matching both planners use.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/random_placement.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/planner/omni_planner.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/planner/rank_matching.h"

namespace omni {
namespace {

PlanResult plan_or_die(const std::string& spec, const PlanInput& in) {
  auto p = make_planner(spec);
  EXPECT_TRUE(p.ok()) << p.status();
  auto r = (*p)->plan(in);
  EXPECT_TRUE(r.ok()) << r.status();
  return std::move(r).value();
}

// Changed slots of rank r in layer l (an expert arriving where another was).
int32_t changed_on_rank(const Placement& a, const Placement& b, LayerId l, RankId r) {
  int32_t n = 0;
  for (SlotId s = 0; s < b.slots_per_rank(l); ++s) {
    const ExpertId e = b.expert_at(l, r, s);
    if (e != kEmptySlot && (s >= a.slots_per_rank(l) || a.expert_at(l, r, s) != e)) ++n;
  }
  return n;
}

struct Scenario {
  LoadMatrix old_load, new_load;
  PlanInput in;
  Placement current;
};

Scenario make_scenario(uint64_t seed, int32_t L, int32_t R, int32_t E, int64_t slots) {
  std::mt19937_64 rng(seed);
  Scenario s;
  s.old_load = testing::random_load(rng, L, E, 1.0);
  s.new_load = testing::random_load(rng, L, E, 1.0);
  PlanInput first;
  first.load = &s.old_load;
  first.num_ranks = R;
  first.num_replicas = slots;
  s.current = plan_or_die("omni(forecast=false)", first).placement;
  s.in.load = &s.new_load;
  s.in.num_ranks = R;
  s.in.num_replicas = slots;
  return s;
}

TEST(OmniIncremental, SameLoadMovesNothing) {
  Scenario s = make_scenario(1, 4, 8, 32, 40);
  s.in.load = &s.old_load;
  s.in.current = &s.current;
  const PlanResult r = plan_or_die("omni(forecast=false,max_moves_per_rank=4)", s.in);
  EXPECT_EQ(r.stats.slots_changed, 0);
  EXPECT_EQ(r.placement, s.current);
}

TEST(OmniIncremental, MoveBudgetIsRespectedPerRankAndLayer) {
  for (int32_t budget : {0, 1, 2, 3}) {
    Scenario s = make_scenario(2 + static_cast<uint64_t>(budget), 3, 8, 32, 48);
    s.in.current = &s.current;
    const PlanResult r = plan_or_die("omni(forecast=false,max_moves_per_rank=" + std::to_string(budget) + ")", s.in);
    ValidationRules rules;
    rules.forbid_same_rank_duplicates = true;
    EXPECT_TRUE(r.placement.validate(rules).empty());
    for (LayerId l = 0; l < 3; ++l)
      for (RankId q = 0; q < 8; ++q) EXPECT_LE(changed_on_rank(s.current, r.placement, l, q), budget);
    // Balance on the new load never gets worse than leaving the placement alone.
    auto before = placement_balance(s.current, s.new_load);
    auto after = placement_balance(r.placement, s.new_load);
    EXPECT_LE(after->sum_max, before->sum_max * (1 + 1e-12)) << "budget " << budget;
    if (budget == 0) {
      EXPECT_EQ(r.stats.slots_changed, 0);
    }
  }
}

TEST(OmniIncremental, MoreBudgetBalancesBetterAndMovesMore) {
  Scenario s = make_scenario(7, 6, 16, 64, 80);
  s.in.current = &s.current;
  double prev_max = 1e300;
  int64_t prev_moves = -1;
  for (int32_t budget : {0, 1, 2, 5}) {
    const PlanResult r = plan_or_die("omni(forecast=false,max_moves_per_rank=" + std::to_string(budget) + ")", s.in);
    const double mx = placement_balance(r.placement, s.new_load)->sum_max;
    EXPECT_LE(mx, prev_max * (1 + 1e-9)) << budget;
    EXPECT_GE(r.stats.slots_changed, prev_moves) << budget;
    prev_max = mx;
    prev_moves = r.stats.slots_changed;
  }
}

TEST(OmniIncremental, UnlimitedIsAtLeastAsGoodAsFromScratch) {
  Scenario s = make_scenario(8, 4, 8, 32, 40);
  const PlanResult scratch = plan_or_die("omni(forecast=false)", s.in);
  s.in.current = &s.current;
  const PlanResult inc = plan_or_die("omni(forecast=false)", s.in);
  auto bs = placement_balance(scratch.placement, s.new_load);
  auto bi = placement_balance(inc.placement, s.new_load);
  for (LayerId l = 0; l < 4; ++l) EXPECT_LE(bi->layers[static_cast<size_t>(l)].max, bs->layers[static_cast<size_t>(l)].max * (1 + 1e-12));
}

TEST(OmniIncremental, RestoresExpertsLostWithARank) {
  Scenario s = make_scenario(10, 2, 8, 32, 40);
  // Rank 3 failed: its slots are empty, some experts have no replica left.
  PlacementLayout layout = s.current.layout();
  for (auto& row : layout.phy2log)
    for (SlotId k = 0; k < 5; ++k) row[static_cast<size_t>(3 * 5 + k)] = kEmptySlot;
  ValidationRules allow_missing;
  allow_missing.require_every_expert = false;
  auto damaged = Placement::create(layout, allow_missing);
  ASSERT_TRUE(damaged.ok()) << damaged.status();
  s.in.current = &*damaged;
  const PlanResult r = plan_or_die("omni(forecast=false,max_moves_per_rank=0)", s.in);
  ValidationRules rules;
  rules.forbid_same_rank_duplicates = true;
  EXPECT_TRUE(r.placement.validate(rules).empty()) << violations_to_status(r.placement.validate(rules));
}

TEST(OmniIncremental, ShapeMismatchIsAnError) {
  Scenario s = make_scenario(11, 2, 8, 32, 40);
  std::mt19937_64 rng(1);
  LoadMatrix other = testing::random_load(rng, 3, 32);
  s.in.load = &other;
  s.in.current = &s.current;
  auto p = make_planner("omni");
  auto r = (*p)->plan(s.in);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("current placement"), std::string::npos) << r.status();
}

// A placement in force may hold an expert twice on one rank (a legal
// placement, ValidationRules' default). From it every planner path gives a
// valid plan; the default planner drops the second copies; the local search
// never adds a copy of an expert to a rank that already holds it (it once
// did: its rank x expert flags forgot that a rank still held the other copy
// after one moved away); and a budget of 0 keeps the placement as it is.
TEST(OmniIncremental, PlacementInForceWithSameRankDuplicates) {
  constexpr int32_t L = 4, R = 8, E = 64, S = 9;
  // copies[(l * R + r) * E + e]: replicas of expert e on rank r of layer l.
  const auto copies = [](const PlacementLayout& layout) {
    std::vector<int32_t> c;
    for (const auto& row : layout.phy2log) {
      std::vector<int32_t> layer(static_cast<size_t>(R) * E, 0);
      for (size_t g = 0; g < row.size(); ++g)
        if (row[g] >= 0) ++layer[g / S * E + static_cast<size_t>(row[g])];
      c.insert(c.end(), layer.begin(), layer.end());
    }
    return c;
  };
  int64_t start_duplicates = 0;
  for (uint64_t seed = 20; seed < 40; ++seed) {
    std::mt19937_64 rng(seed);
    // The placement in force is eplb's plan of a skewed window (eplb puts
    // the replicas of a hot expert on one rank when that balances best).
    const LoadMatrix old_load = testing::random_load(rng, L, E, 1.5);
    const LoadMatrix new_load = testing::random_load(rng, L, E, 1.5);
    PlanInput in;
    in.load = &old_load;
    in.num_ranks = R;
    in.num_replicas = int64_t{R} * S;
    const Placement start = plan_or_die("eplb", in).placement;
    for (int32_t c : copies(start.layout())) start_duplicates += c > 1;
    in.load = &new_load;
    in.current = &start;
    for (const char* spec : {"omni", "omni(forecast=false)", "omni(forecast=false,max_moves_per_rank=2)",
                             "omni(forecast=false,max_moves_per_rank=0)"}) {
      const PlanResult r = plan_or_die(spec, in);
      const auto v = r.placement.validate(ValidationRules{});
      EXPECT_TRUE(v.empty()) << spec << " seed " << seed << ": " << violations_to_status(v);
      const std::string_view name = spec;
      if (name == "omni") {
        ValidationRules strict;
        strict.forbid_same_rank_duplicates = true;
        const auto vs = r.placement.validate(strict);
        EXPECT_TRUE(vs.empty()) << spec << " seed " << seed << ": " << violations_to_status(vs);
      }
      if (name.ends_with("max_moves_per_rank=0)")) {
        EXPECT_EQ(r.placement, start) << spec << " seed " << seed;
      }
      // A slot the plan changed never holds an expert that another slot of
      // its rank holds (second copies left in place are the start's).
      const std::vector<int32_t> after = copies(r.placement.layout());
      for (LayerId l = 0; l < L; ++l) {
        const auto& was = start.layout().phy2log[static_cast<size_t>(l)];
        const auto& now = r.placement.layout().phy2log[static_cast<size_t>(l)];
        for (size_t g = 0; g < now.size(); ++g) {
          if (now[g] < 0 || now[g] == was[g]) continue;
          const size_t rank = g / S;
          EXPECT_EQ(after[(static_cast<size_t>(l) * R + rank) * E + static_cast<size_t>(now[g])], 1)
              << spec << " seed " << seed << ": layer " << l << ", rank " << rank << ", slot " << g % S
              << " changed to expert " << now[g] << ", which the rank already holds";
        }
      }
    }
  }
  EXPECT_GT(start_duplicates, 20);  // the case under test occurs
}

TEST(RankMatching, RecoversAPermutationOfRanks) {
  std::mt19937_64 rng(12);
  for (int trial = 0; trial < 20; ++trial) {
    const int32_t R = 2 + trial % 12, S = 3;
    PlacementLayout layout = testing::random_layout(rng, 1, R, R * 2, 1, 1, true, 0.1);
    const std::vector<ExpertId>& old_row = layout.phy2log[0];
    std::vector<RankId> perm(static_cast<size_t>(R));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    // new rank q holds old rank perm[q]'s experts, in reversed slot order.
    std::vector<ExpertId> new_row(old_row.size());
    for (int32_t q = 0; q < R; ++q)
      for (int32_t k = 0; k < S; ++k)
        new_row[static_cast<size_t>(q * S + k)] = old_row[static_cast<size_t>(perm[static_cast<size_t>(q)] * S + (S - 1 - k))];
    const auto to = match_ranks(old_row, new_row, R);
    const auto aligned = relabel_and_align(old_row, new_row, R, to);
    EXPECT_EQ(aligned, old_row) << "trial " << trial;
    const auto changes = slot_changes_per_rank(old_row, aligned, R);
    EXPECT_EQ(std::count(changes.begin(), changes.end(), 0), R);
  }
}

TEST(RankMatching, MaximisesOverlap) {
  // Old: rank 0 {0,1}, rank 1 {2,3}, rank 2 {4,5}. New: q0 {2,4}, q1 {0,1}, q2 {3,5}.
  const std::vector<ExpertId> old_row = {0, 1, 2, 3, 4, 5};
  const std::vector<ExpertId> new_row = {2, 4, 0, 1, 3, 5};
  const auto to = match_ranks(old_row, new_row, 3);
  EXPECT_EQ(to[1], 0);  // full overlap
  const auto aligned = relabel_and_align(old_row, new_row, 3, to);
  const auto changes = slot_changes_per_rank(old_row, aligned, 3);
  EXPECT_EQ(changes[0] + changes[1] + changes[2], 2);  // the best possible: 4 of 6 stay
}

}  // namespace
}  // namespace omni
