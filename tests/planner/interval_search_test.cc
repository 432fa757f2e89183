// IntervalSearch::prune under the per-batch split (src/planner/interval_search.h):
// a pass that takes its give-backs on the estimate and splits once must never
// raise F + C, and must leave the search's state equal to a fresh evaluation
// of its slots (the pass's bookkeeping, and its take-back, are exact).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "interval_search.h"
#include "move_prices.h"

namespace omni {
namespace {

struct PruneCase {
  static constexpr int32_t R = 8, S = 5, E = 32;
  std::vector<ExpertId> reference, candidate;
  std::vector<std::vector<double>> scenarios;
  std::vector<int32_t> host_of_rank{0, 0, 0, 0, 1, 1, 1, 1};

  explicit PruneCase(uint32_t seed) {
    // Reference: experts 0..31 once, 0..7 a second time (no rank holds one twice);
    // the candidate: the same sequence rotated by 13 slots (most slots change).
    for (int32_t g = 0; g < R * S; ++g) reference.push_back(g % E);
    for (int32_t g = 0; g < R * S; ++g) candidate.push_back(reference[static_cast<size_t>((g + 13) % (R * S))]);
    std::mt19937 rng(seed);
    std::lognormal_distribution<double> load(6.0, 1.0);
    for (int32_t k = 0; k < 3; ++k) {
      std::vector<double> sc(static_cast<size_t>(E));
      for (double& v : sc) v = std::floor(load(rng));
      scenarios.push_back(std::move(sc));
    }
  }
};

detail::IntervalProblem problem_of(const PruneCase& c, const detail::MovePrices& prices) {
  detail::IntervalProblem p;
  p.num_ranks = PruneCase::R;
  p.slots_per_rank = PruneCase::S;
  p.num_experts = PruneCase::E;
  p.cap = PruneCase::R;
  p.dispatch = DispatchMode::kPerBatch;
  p.scenarios = &c.scenarios;
  p.prices = &prices;
  p.reference = c.reference;
  return p;
}

TEST(IntervalSearch, PerBatchPruneNeverRaisesTheValueAndKeepsItsStateExact) {
  int64_t gave_back = 0;
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    const PruneCase c(seed);
    // Expert bytes for prices of the order of the loads' differences.
    for (double bytes : {1e4, 1e5, 1e6, 1e7, 1e8, 3e8}) {
      const detail::MovePrices prices(c.reference, PruneCase::R, PruneCase::S, PruneCase::E, c.host_of_rank, {},
                                      bytes, 1e-7);
      const detail::IntervalProblem p = problem_of(c, prices);
      detail::IntervalSearch s(p);
      s.start_from(c.candidate);
      const double before = s.value();
      s.prune();
      EXPECT_LE(s.value(), before + 1e-9 * (1.0 + before)) << "seed " << seed << ", bytes " << bytes;
      gave_back += s.moves();
      // The state after prune is what a fresh evaluation of its slots gives.
      detail::IntervalSearch fresh(p);
      fresh.start_from(s.slots());
      EXPECT_NEAR(fresh.value(), s.value(), 1e-9 * (1.0 + s.value())) << "seed " << seed << ", bytes " << bytes;
      EXPECT_NEAR(fresh.move_cost(), s.move_cost(), 1e-9 * (1.0 + s.move_cost())) << "seed " << seed;
      // Deterministic: the same input gives the same slots.
      detail::IntervalSearch again(p);
      again.start_from(c.candidate);
      again.prune();
      EXPECT_EQ(std::vector<ExpertId>(again.slots().begin(), again.slots().end()),
                std::vector<ExpertId>(s.slots().begin(), s.slots().end()));
    }
  }
  // The cases give moves back (the test is not vacuous).
  EXPECT_GT(gave_back, 0);
}

}  // namespace
}  // namespace omni
