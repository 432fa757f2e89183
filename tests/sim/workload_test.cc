#include "omniplacement/sim/workload.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "omniplacement/sim/trace.h"

namespace omni::sim {
namespace {

WorkloadParams small(uint64_t seed = 7) {
  WorkloadParams p;
  p.num_layers = 3;
  p.num_experts = 32;
  p.top_k = 4;
  p.tokens_per_step = 512;
  p.seed = seed;
  return p;
}

std::vector<LoadMatrix> run(const WorkloadParams& p, int steps) {
  auto gen = SyntheticWorkload::create(p);
  EXPECT_TRUE(gen.ok()) << gen.status();
  std::vector<LoadMatrix> out(static_cast<size_t>(steps));
  for (auto& m : out) EXPECT_TRUE(gen->next(&m).ok());
  return out;
}

std::set<ExpertId> top_set(std::vector<double> p, int k) {
  std::vector<ExpertId> idx(p.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<ExpertId>(i);
  std::stable_sort(idx.begin(), idx.end(), [&](ExpertId a, ExpertId b) { return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)]; });
  return {idx.begin(), idx.begin() + k};
}

TEST(WorkloadTest, SameSeedSameLoadsOtherSeedOtherLoads) {
  WorkloadParams p = small();
  p.drift_rate = 0.05;
  p.phase_period = 5;
  p.burst_prob = 0.2;
  p.group_size = 4;
  p.group_sigma = 0.3;
  const auto a = run(p, 12), b = run(p, 12);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "step " << i;
  p.seed = 8;
  const auto c = run(p, 12);
  int differing = 0;
  for (size_t i = 0; i < a.size(); ++i) differing += !(a[i] == c[i]);
  EXPECT_EQ(differing, 12);
}

TEST(WorkloadTest, NoiselessZipfHasTheExactShapeAndTotal) {
  WorkloadParams p = small();
  p.skew_param = 1.0;
  p.skew_layer_spread = 0;
  p.drift_rate = 0;
  p.sampling_noise = false;
  auto gen = SyntheticWorkload::create(p);
  ASSERT_TRUE(gen.ok());
  const auto prob = gen->probabilities(0);
  const auto [mn, mx] = std::minmax_element(prob.begin(), prob.end());
  EXPECT_NEAR(*mx / *mn, 32.0, 1e-9);  // (1/1) / (1/32)
  LoadMatrix m;
  ASSERT_TRUE(gen->next(&m).ok());
  // 512 tokens x top-4 = 2048 assignments; rounding moves each expert by < 0.5.
  EXPECT_NEAR(m.layer_total(0), 2048, 16);
  for (ExpertId e = 0; e < 32; ++e) EXPECT_NEAR(m.at(0, e), 2048 * prob[static_cast<size_t>(e)], 0.5 + 1e-9);
}

TEST(WorkloadTest, LognormalLayersDifferAndCountsAreCappedByTokens) {
  WorkloadParams p = small();
  p.skew = SkewKind::kLognormal;
  p.skew_param = 3.0;  // very skewed: the hottest expert would exceed one per token
  auto gen = SyntheticWorkload::create(p);
  ASSERT_TRUE(gen.ok());
  EXPECT_NE(gen->probabilities(0), gen->probabilities(1));
  LoadMatrix m;
  ASSERT_TRUE(gen->next(&m).ok());
  for (LayerId l = 0; l < 3; ++l)
    for (ExpertId e = 0; e < 32; ++e) EXPECT_LE(m.at(l, e), 512);
}

TEST(WorkloadTest, DriftMovesTheHotSetAndNoDriftKeepsIt) {
  WorkloadParams p = small();
  p.drift_rate = 0;
  auto still = SyntheticWorkload::create(p);
  p.drift_rate = 0.02;
  auto moving = SyntheticWorkload::create(p);
  const auto hot_still = top_set(still->probabilities(0), 4);
  const auto hot_moving = top_set(moving->probabilities(0), 4);
  EXPECT_EQ(hot_still, hot_moving);  // same seed, same start
  LoadMatrix m;
  for (int s = 0; s < 300; ++s) {
    ASSERT_TRUE(still->next(&m).ok());
    ASSERT_TRUE(moving->next(&m).ok());
  }
  EXPECT_EQ(top_set(still->probabilities(0), 4), hot_still);
  EXPECT_NE(top_set(moving->probabilities(0), 4), hot_moving);
}

TEST(WorkloadTest, PhaseShiftChangesPopularityOnlyAtThePeriod) {
  WorkloadParams p = small();
  p.drift_rate = 0;
  p.phase_period = 10;
  p.phase_fraction = 1.0;
  auto gen = SyntheticWorkload::create(p);
  LoadMatrix m;
  std::vector<std::vector<double>> probs;
  for (int s = 0; s < 12; ++s) {
    ASSERT_TRUE(gen->next(&m).ok());
    probs.push_back(gen->probabilities(2));
  }
  for (int s = 1; s < 10; ++s) EXPECT_EQ(probs[static_cast<size_t>(s)], probs[0]) << "step " << s;
  EXPECT_NE(probs[10], probs[9]);
  EXPECT_EQ(probs[11], probs[10]);
}

TEST(WorkloadTest, BurstsRaiseOneExpertForTheirLength) {
  WorkloadParams p = small();
  p.drift_rate = 0;
  p.skew_param = 0;  // uniform, so a burst is plain to see
  p.burst_prob = 1.0;
  p.burst_factor = 100;
  p.burst_steps = 3;
  auto gen = SyntheticWorkload::create(p);
  LoadMatrix m;
  ASSERT_TRUE(gen->next(&m).ok());  // step 0: no burst yet
  auto p0 = gen->probabilities(0);
  EXPECT_NEAR(*std::max_element(p0.begin(), p0.end()), 1.0 / 32, 1e-12);
  ASSERT_TRUE(gen->next(&m).ok());  // step 1: one burst started
  auto p1 = gen->probabilities(0);
  EXPECT_NEAR(*std::max_element(p1.begin(), p1.end()), 100.0 / 131, 1e-12);
}

TEST(WorkloadTest, GroupMembersMoveTogether) {
  WorkloadParams p = small();
  p.drift_rate = 0;
  p.skew_param = 0;
  p.group_size = 4;
  p.group_sigma = 0.5;
  p.sampling_noise = false;
  p.tokens_per_step = 1 << 20;  // large counts: rounding is negligible
  const auto steps = run(p, 30);
  // Uniform base weights: experts of one group always have equal counts, and
  // some pair of experts differs at some step (other groups).
  int equal_pairs_always = 0;
  for (ExpertId a = 0; a < 32; ++a)
    for (ExpertId b = a + 1; b < 32; ++b) {
      bool always = true;
      for (const auto& m : steps) always &= m.at(1, a) == m.at(1, b);
      equal_pairs_always += always;
    }
  EXPECT_EQ(equal_pairs_always, 8 * 6);  // 8 groups of 4: 6 pairs each
}

TEST(WorkloadTest, WindowIsTheSumOfItsSteps) {
  WorkloadParams p = small();
  p.drift_rate = 0.05;
  const auto steps = run(p, 5);
  auto gen = SyntheticWorkload::create(p);
  LoadMatrix w;
  ASSERT_TRUE(gen->next_window(5, &w).ok());
  LoadMatrix sum = steps[0];
  for (size_t i = 1; i < 5; ++i) ASSERT_TRUE(sum.add(steps[i]).ok());
  EXPECT_EQ(w, sum);
  EXPECT_FALSE(gen->next_window(0, &w).ok());
}

TEST(WorkloadTest, RejectsBadParameters) {
  std::vector<WorkloadParams> bad(9, small());
  bad[0].num_layers = 0;
  bad[1].top_k = 33;
  bad[2].tokens_per_step = 0;
  bad[3].drift_rate = -1;
  bad[4].phase_fraction = 1.5;
  bad[5].burst_prob = NAN;
  bad[6].group_size = 0;
  bad[7].burst_steps = 0;
  bad[8].skew_param = INFINITY;
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_EQ(SyntheticWorkload::create(bad[i]).status().code(), StatusCode::kInvalidArgument) << "case " << i;
  }
  EXPECT_EQ(*parse_skew_kind("lognormal"), SkewKind::kLognormal);
  EXPECT_FALSE(parse_skew_kind("pareto").ok());
}

TEST(TraceTest, WindowTraceRepeatsEachWindowAndEnds) {
  // Each window holds 2 steps' tokens: replayed as 2 steps of half of it.
  std::vector<LoadMatrix> w = {*LoadMatrix::from_counts(1, 2, {2, 4}), *LoadMatrix::from_counts(1, 2, {6, 8})};
  auto t = WindowTrace::create(w, 2);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->num_steps(), 4);
  LoadMatrix m;
  std::vector<double> firsts;
  while (*t->next(&m)) firsts.push_back(m.at(0, 0));
  EXPECT_EQ(firsts, (std::vector<double>{1, 1, 3, 3}));
  auto once = WindowTrace::create(w, 1);
  ASSERT_TRUE(*once->next(&m));
  EXPECT_TRUE(m.is_counts());
  EXPECT_EQ(m, w[0]);
  EXPECT_FALSE(WindowTrace::create({}, 1).ok());
  EXPECT_FALSE(WindowTrace::create(w, 0).ok());
  w.push_back(*LoadMatrix::zeros(2, 2));
  EXPECT_FALSE(WindowTrace::create(w, 1).ok());
}

TEST(TraceTest, SyntheticTraceStreamsTheGenerator) {
  const WorkloadParams p = small();
  auto t = SyntheticTrace::create(p, 3);
  ASSERT_TRUE(t.ok());
  const auto expect = run(p, 3);
  LoadMatrix m;
  for (int s = 0; s < 3; ++s) {
    ASSERT_TRUE(*t->next(&m));
    EXPECT_EQ(m, expect[static_cast<size_t>(s)]);
  }
  EXPECT_FALSE(*t->next(&m));
}

}  // namespace
}  // namespace omni::sim
