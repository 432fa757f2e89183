// omni(per_batch=true): placements shaped for the runtime's per-batch split,
// scored on PlanInput::samples (src/planner/batch_refine.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "batch_refine.h"
#include "common/plan_with.h"
#include "common/random_placement.h"
#include "omniplacement/dispatch/batch_split.h"
#include "omniplacement/planner/omni_planner.h"

namespace omni {
namespace {

using testing::plan_with;

constexpr int32_t kExperts = 27, kRanks = 6, kSlots = 5;  // 3 redundant slots

// Zipf-like base loads with multiplicative noise per window.
std::vector<LoadMatrix> noisy_windows(uint64_t seed, int n, int32_t first_hot = 0, double sigma = 0.3) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> noise(0.0, sigma);
  std::vector<LoadMatrix> out;
  for (int k = 0; k < n; ++k) {
    std::vector<int64_t> counts(kExperts);
    for (int32_t e = 0; e < kExperts; ++e) {
      const int32_t rank = (e - first_hot + kExperts) % kExperts;
      counts[static_cast<size_t>(e)] = std::llround(4000.0 / std::pow(rank + 1, 1.0) * noise(rng));
    }
    out.push_back(*LoadMatrix::from_counts(1, kExperts, counts));
  }
  return out;
}

double score(const Placement& p, const std::vector<LoadMatrix>& windows) {
  std::vector<std::vector<double>> samples;
  for (const LoadMatrix& m : windows) samples.emplace_back(m.row(0).begin(), m.row(0).end());
  return detail::batch_split_score(p.phy2log(0), samples, p.num_ranks(), p.slots_per_rank(0));
}

void expect_complete_and_spread(const Placement& p) {
  for (ExpertId e = 0; e < p.num_experts(); ++e) EXPECT_GE(p.replica_count(0, e), 1) << "expert " << e;
  for (RankId r = 0; r < p.num_ranks(); ++r)
    for (SlotId a = 0; a < p.slots_per_rank(0); ++a)
      for (SlotId b = a + 1; b < p.slots_per_rank(0); ++b)
        if (p.expert_at(0, r, a) >= 0) {
          EXPECT_NE(p.expert_at(0, r, a), p.expert_at(0, r, b)) << "rank " << r;
        }
}

PlanInput input(const LoadMatrix& load, const std::vector<LoadMatrix>* samples, const Placement* current = nullptr) {
  PlanInput in;
  in.load = &load;
  in.num_ranks = kRanks;
  in.slots_per_rank = {kSlots};
  in.samples = samples;
  in.current = current;
  return in;
}

TEST(OmniPerBatchTest, ScoresBetterOnItsSamplesAndOnTheNextWindow) {
  const std::vector<LoadMatrix> windows = noisy_windows(7, 9);
  const std::vector<LoadMatrix> past(windows.begin(), windows.end() - 1);
  const LoadMatrix& last = past.back();
  auto plain = plan_with("omni", input(last, &past));
  auto shaped = plan_with("omni(per_batch=true)", input(last, &past));
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(shaped.ok()) << shaped.status();
  expect_complete_and_spread(shaped->placement);
  const double plain_past = score(plain->placement, past), shaped_past = score(shaped->placement, past);
  EXPECT_LT(shaped_past, plain_past - 0.01) << shaped_past << " vs " << plain_past;
  // The window after the samples, not seen by either plan.
  const std::vector<LoadMatrix> next(windows.end() - 1, windows.end());
  EXPECT_LT(score(shaped->placement, next), score(plain->placement, next))
      << score(shaped->placement, next) << " vs " << score(plain->placement, next);
  // Deterministic.
  auto again = plan_with("omni(per_batch=true)", input(last, &past));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->placement == shaped->placement);
}

TEST(OmniPerBatchTest, WithoutSamplesScoresOnTheLoad) {
  const std::vector<LoadMatrix> windows = noisy_windows(11, 1);
  auto plain = plan_with("omni", input(windows[0], nullptr));
  auto shaped = plan_with("omni(per_batch=true)", input(windows[0], nullptr));
  ASSERT_TRUE(plain.ok() && shaped.ok());
  EXPECT_LE(score(shaped->placement, windows), score(plain->placement, windows) + 1e-12);
}

TEST(OmniPerBatchTest, MoveCapAndMoveCostBindAgainstTheCurrentPlacement) {
  const std::vector<LoadMatrix> before = noisy_windows(3, 4, /*first_hot=*/0);
  const std::vector<LoadMatrix> after = noisy_windows(5, 4, /*first_hot=*/7);
  auto current = plan_with("omni", input(before.back(), nullptr));
  ASSERT_TRUE(current.ok());
  const Placement& cur = current->placement;

  auto capped = plan_with("omni(per_batch=true,max_moves_per_rank=1)", input(after.back(), &after, &cur));
  ASSERT_TRUE(capped.ok()) << capped.status();
  expect_complete_and_spread(capped->placement);
  int64_t changed = 0;
  for (RankId r = 0; r < kRanks; ++r) {
    int32_t on_rank = 0;
    for (SlotId s = 0; s < kSlots; ++s) {
      const ExpertId e = capped->placement.expert_at(0, r, s);
      on_rank += e >= 0 && e != cur.expert_at(0, r, s);
    }
    EXPECT_LE(on_rank, 1) << "rank " << r;
    changed += on_rank;
  }
  EXPECT_GT(changed, 0) << "the hot experts moved; the cap still allows a move per rank";
  EXPECT_LT(score(capped->placement, after), score(cur, after));

  // A move cost no gain can pay keeps the placement in force.
  auto frozen = plan_with("omni(per_batch=true,per_batch_move_cost=1000)", input(after.back(), &after, &cur));
  ASSERT_TRUE(frozen.ok());
  EXPECT_TRUE(frozen->placement == cur);
  // Free moves reach at least the capped score.
  auto free_moves = plan_with("omni(per_batch=true,per_batch_move_cost=0)", input(after.back(), &after, &cur));
  ASSERT_TRUE(free_moves.ok());
  EXPECT_LE(score(free_moves->placement, after), score(capped->placement, after) + 0.02);
}

TEST(OmniPerBatchTest, LeavesOutSamplesFromBeforeAShift) {
  // Three windows of one mix, then one of another: with the shift filter the
  // plan is the one made on the new window alone; without it, it differs.
  std::vector<LoadMatrix> samples = noisy_windows(21, 3, /*first_hot=*/0, /*sigma=*/0.1);
  const std::vector<LoadMatrix> shifted = noisy_windows(22, 1, /*first_hot=*/13, /*sigma=*/0.1);
  samples.push_back(shifted[0]);
  auto filtered = plan_with("omni(per_batch=true)", input(shifted[0], &samples));
  auto alone = plan_with("omni(per_batch=true)", input(shifted[0], &shifted));
  auto all = plan_with("omni(per_batch=true,per_batch_shift=0)", input(shifted[0], &samples));
  ASSERT_TRUE(filtered.ok() && alone.ok() && all.ok());
  EXPECT_TRUE(filtered->placement == alone->placement);
  EXPECT_FALSE(all->placement == alone->placement);
}

TEST(OmniPerBatchTest, RejectsHostConstraintsAndMisshapenSamples) {
  const std::vector<LoadMatrix> windows = noisy_windows(1, 2);
  PlanInput in = input(windows[0], &windows);
  in.num_nodes = 2;
  auto spread = plan_with("omni(per_batch=true,locality=spread)", in);
  ASSERT_FALSE(spread.ok());
  EXPECT_NE(spread.status().message().find("locality=none"), std::string::npos) << spread.status();
  EXPECT_FALSE(plan_with("omni(per_batch=true,spread_hosts=true)", in).ok());

  std::vector<LoadMatrix> bad = windows;
  bad.push_back(*LoadMatrix::from_counts(1, kExperts - 1, std::vector<int64_t>(kExperts - 1, 1)));
  auto misshapen = plan_with("omni(per_batch=true)", input(windows[0], &bad));
  ASSERT_FALSE(misshapen.ok());
  EXPECT_NE(misshapen.status().message().find("sample 2"), std::string::npos) << misshapen.status();
}

TEST(OmniPerBatchTest, SpecRoundTrips) {
  auto p = make_planner("omni(per_batch=true,per_batch_spread=1.5,per_batch_shift=3,per_batch_move_cost=0.01,"
                        "per_batch_evals=5000)");
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string spec = (*p)->spec();
  auto again = make_planner(spec);
  ASSERT_TRUE(again.ok()) << spec;
  EXPECT_EQ((*again)->spec(), spec);
  for (const char* key : {"per_batch=true", "per_batch_spread=1.5", "per_batch_shift=3", "per_batch_move_cost=0.01",
                          "per_batch_evals=5000"})
    EXPECT_NE(spec.find(key), std::string::npos) << key << " in " << spec;
  EXPECT_FALSE(make_planner("omni(per_batch_spread=-1)").ok());
}

// omni(per_batch=true) scores placements with the runtime's split computed
// in doubles (batch_refine.h; BatchBalancer<double>): on random placements and
// integer loads its max/mean is that of the runtime's split (balance_batch_loads,
// whole tokens, as split_batch and the simulator's per-batch cost model use it)
// up to rounding to whole tokens. (Moved from tests/sim: a test includes only
// its own module's private headers.)
TEST(OmniPerBatchTest, PlannerScoreIsTheRuntimeSplit) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 40; ++trial) {
    const int32_t R = 2 + static_cast<int32_t>(rng() % 10);
    const int32_t E = R + static_cast<int32_t>(rng() % 30);
    const Placement p = *Placement::create(testing::random_layout(rng, 1, R, E, 0, 3, /*no_dups=*/true, 0.1));
    std::vector<int64_t> totals(static_cast<size_t>(E));
    for (auto& t : totals) t = 1000 + static_cast<int64_t>(rng() % 100000);
    auto loads = balance_batch_loads(R, layer_replica_ranks(p, 0), totals);
    ASSERT_TRUE(loads.ok()) << loads.status();
    double sum = 0;
    for (int64_t t : totals) sum += static_cast<double>(t);
    const double runtime = static_cast<double>(*std::max_element(loads->begin(), loads->end())) / (sum / R);
    const std::vector<std::vector<double>> samples = {std::vector<double>(totals.begin(), totals.end())};
    const double planner = detail::batch_split_score(p.phy2log(0), samples, R, p.slots_per_rank(0));
    EXPECT_NEAR(planner, runtime, 2.0 * R / sum) << "trial " << trial;
  }
}

}  // namespace
}  // namespace omni
