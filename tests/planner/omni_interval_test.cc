// omni's plan for the next interval (the default planner): the forecast on
// hand-built windows (src/planner/load_forecast.h), move pricing on a
// hand-computed case, determinism, the hard cap on moves, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <span>

#include "common/plan_with.h"
#include "common/random_placement.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/dispatch/batch_split.h"
#include "omniplacement/planner/omni_planner.h"
#include "omniplacement/planner/planner.h"
#include "load_forecast.h"

namespace omni {
namespace {

using testing::plan_with;

LoadMatrix row_matrix(std::vector<int64_t> counts) {
  const auto E = static_cast<int32_t>(counts.size());
  return *LoadMatrix::from_counts(1, E, std::move(counts));
}

detail::LayerForecast forecast(const std::vector<LoadMatrix>& windows) {
  std::vector<const LoadMatrix*> w;
  for (const LoadMatrix& m : windows) w.push_back(&m);
  return detail::forecast_layer(w, detail::windows_since_shift(w), 0);
}

TEST(LoadForecast, FollowsASignificantTrend) {
  // Expert 0 rises by 100 per window; the others hold still with a little noise.
  std::vector<LoadMatrix> w;
  for (int k = 0; k < 5; ++k) w.push_back(row_matrix({100 + 100 * k, 1000 + (k % 2) * 10, 1000 - (k % 2) * 10, 500}));
  // Rescaling to the newest total changes little here; the trend carries expert 0 past its last value.
  const auto f = forecast(w);
  EXPECT_TRUE(f.trend[0]);
  EXPECT_FALSE(f.trend[1]);
  EXPECT_GT(f.mean[0], 500.0);
  EXPECT_NEAR(f.mean[0], 600.0, 60.0);
  EXPECT_NEAR(f.mean[3], 500.0, 50.0);
}

TEST(LoadForecast, AVolatileExpertVariesMoreThanAStableOne) {
  // Experts 0 and 1 have the same mean load; 0 swings by 50% window to window.
  std::vector<LoadMatrix> w;
  for (int k = 0; k < 6; ++k) w.push_back(row_matrix({k % 2 == 0 ? 1500 : 500, 1000 + (k % 3) * 5, 800, 700}));
  const auto f = forecast(w);
  EXPECT_NEAR(f.mean[0], f.mean[1], 120.0);
  EXPECT_GT(f.stddev[0], 10 * f.stddev[1]);
  ASSERT_EQ(f.scenarios.size(), 6u);
  double lo = 1e18, hi = 0;
  for (const auto& s : f.scenarios) {
    lo = std::min(lo, s[0]);
    hi = std::max(hi, s[0]);
  }
  EXPECT_GT(hi - lo, 900.0);  // the scenarios carry the swing
}

TEST(LoadForecast, AShiftStartsANewRegime) {
  // Windows 0-2 favour experts 0-1, windows 3-5 experts 2-3.
  std::vector<LoadMatrix> w;
  for (int k = 0; k < 3; ++k) w.push_back(row_matrix({3000 + k * 7, 2900 - k * 5, 300, 200}));
  for (int k = 0; k < 3; ++k) w.push_back(row_matrix({300, 200, 3000 + k * 7, 2900 - k * 5}));
  std::vector<const LoadMatrix*> ptrs;
  for (const LoadMatrix& m : w) ptrs.push_back(&m);
  EXPECT_EQ(detail::windows_since_shift(ptrs), (std::vector<size_t>{3, 4, 5}));
  const auto f = forecast(w);
  EXPECT_LT(f.mean[0], 400.0);
  EXPECT_GT(f.mean[2], 2900.0);
}

TEST(LoadForecast, AJumpOfOneExpertIsFollowedAtOnce) {
  // Expert 0 jumps from 100 to 2000 in the last two windows; the mix as a whole barely moves.
  std::vector<LoadMatrix> w;
  for (int k = 0; k < 6; ++k) w.push_back(row_matrix({k >= 4 ? 2000 : 100, 20000 + k * 3, 20000 - k * 3, 20000}));
  const auto f = forecast(w);
  EXPECT_GT(f.mean[0], 1800.0);
}

TEST(LoadForecast, OneWindowIsItsOwnForecast) {
  const std::vector<LoadMatrix> w = {row_matrix({5, 7, 9})};
  const auto f = forecast(w);
  EXPECT_EQ(f.mean, (std::vector<double>{5, 7, 9}));
  ASSERT_EQ(f.scenarios.size(), 1u);
  EXPECT_EQ(f.scenarios[0], f.mean);
}

// Two ranks x 2 slots, 4 experts (no spare slot), one host. In force: rank 0
// holds experts 0 and 1 (1000 tokens each), rank 1 experts 2 and 3 (100
// each): busiest rank 2000, and swapping experts 1 and 2 brings it to 1100,
// 900 tokens per window saved. The swap moves two experts, each priced
// (latency 10 us + bytes / 300 GB/s) / 2 ranks / (1 us per token).
struct PricingCase {
  LoadMatrix load = *LoadMatrix::from_counts(1, 4, {1000, 1000, 100, 100});
  Topology topo = *Topology::single_host(2);
  Placement current = *Placement::create({2, 4, {2}, {{0, 1, 2, 3}}, {}});
  PlanInput input(double expert_bytes) const {
    PlanInput in;
    in.load = &load;
    in.num_ranks = 2;
    in.slots_per_rank = {2};
    in.topology = &topo;
    in.current = &current;
    in.serving.seconds_per_token = 1e-6;
    in.serving.expert_bytes = expert_bytes;
    return in;
  }
};

TEST(OmniInterval, AMoveThatCostsMoreThanItSavesIsNotMade) {
  PricingCase c;
  // 1 GB experts: 2 x (10 + 1e9 / 3e5) / 2 = 3343 tokens > 900 saved.
  auto r = plan_with("omni", c.input(1e9));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->placement, c.current);
  EXPECT_EQ(r->stats.slots_changed, 0);
}

TEST(OmniInterval, AMoveWorthItsPriceIsMade) {
  PricingCase c;
  // 100 MB experts: 2 x (10 + 1e8 / 3e5) / 2 = 343 tokens < 900 saved.
  auto r = plan_with("omni", c.input(1e8));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stats.slots_changed, 2);
  auto bal = placement_balance(r->placement, c.load);
  ASSERT_TRUE(bal.ok());
  EXPECT_DOUBLE_EQ(bal->layers[0].max, 1100.0);
  // A longer interval makes the dear move worth it: 1 GB over 10 windows is 334 tokens per window.
  PlanInput longer = c.input(1e9);
  longer.serving.interval_steps = 10;
  auto r2 = plan_with("omni", longer);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->stats.slots_changed, 2);
}

// A seeded drifting workload: 8 windows of 4 layers x 24 experts.
std::vector<LoadMatrix> drifting_windows(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> base(0.0, 1.0), noise(0.0, 0.2);
  std::vector<double> w(4 * 24);
  for (double& v : w) v = 1000 * base(rng);
  std::vector<LoadMatrix> out;
  for (int k = 0; k < 8; ++k) {
    std::vector<int64_t> c(w.size());
    for (size_t i = 0; i < w.size(); ++i) c[i] = std::llround(w[i] * noise(rng));
    out.push_back(*LoadMatrix::from_counts(4, 24, std::move(c)));
    std::swap(w[static_cast<size_t>(rng() % w.size())], w[static_cast<size_t>(rng() % w.size())]);
  }
  return out;
}

TEST(OmniInterval, DeterministicUnderBothDispatchModes) {
  const auto windows = drifting_windows(3);
  const Topology topo = *Topology::uniform(6, 3);
  PlanInput first;
  first.load = &windows[0];
  first.num_ranks = 6;
  first.slots_per_rank = {5};
  first.topology = &topo;
  auto start = plan_with("eplb", first);
  ASSERT_TRUE(start.ok());
  for (DispatchMode mode : {DispatchMode::kShares, DispatchMode::kPerBatch}) {
    PlanInput in = first;
    in.load = &windows.back();
    in.samples = &windows;
    in.current = &start->placement;
    in.serving.dispatch = mode;
    in.serving.expert_bytes = 1e6;
    auto a = plan_with("omni", in);
    auto b = plan_with("omni", in);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->placement, b->placement);
    EXPECT_EQ(a->placement.checksum(), b->placement.checksum());
    ValidationRules rules;
    rules.forbid_same_rank_duplicates = true;
    EXPECT_TRUE(a->placement.validate(rules).empty());
  }
}

TEST(OmniInterval, HardCapOnMovesPerRankHolds) {
  const auto windows = drifting_windows(5);
  const Topology topo = *Topology::uniform(6, 3);
  PlanInput first;
  first.load = &windows[0];
  first.num_ranks = 6;
  first.slots_per_rank = {5};
  first.topology = &topo;
  auto start = plan_with("omni", first);
  ASSERT_TRUE(start.ok());
  PlanInput in = first;
  in.load = &windows.back();
  in.samples = &windows;
  in.current = &start->placement;
  in.serving.expert_bytes = 0;  // moves free: only the cap limits them
  for (int32_t cap : {0, 1, 2}) {
    auto r = plan_with("omni(max_moves_per_rank=" + std::to_string(cap) + ")", in);
    ASSERT_TRUE(r.ok()) << r.status();
    for (LayerId l = 0; l < 4; ++l)
      for (RankId q = 0; q < 6; ++q) {
        int32_t changed = 0;
        for (SlotId s = 0; s < 5; ++s)
          changed += r->placement.expert_at(l, q, s) >= 0 && r->placement.expert_at(l, q, s) != start->placement.expert_at(l, q, s);
        EXPECT_LE(changed, cap) << "cap " << cap << " layer " << l << " rank " << q;
      }
  }
}

TEST(OmniInterval, BadWindowsAreRefusedWithWindowAndLayerNamed) {
  const auto windows = drifting_windows(7);
  PlanInput in;
  in.load = &windows.back();
  in.num_ranks = 6;
  in.slots_per_rank = {5};
  // A window of another shape.
  std::vector<LoadMatrix> bad = windows;
  bad[2] = *LoadMatrix::zeros(4, 23);
  in.samples = &bad;
  auto r = plan_with("omni", in);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("window 2 of 8"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("4 x 24"), std::string::npos) << r.status();
  // An empty window (no tokens in layer 3).
  bad = windows;
  std::vector<int64_t> c(4 * 24, 5);
  for (int e = 0; e < 24; ++e) c[static_cast<size_t>(3 * 24 + e)] = 0;
  bad[5] = *LoadMatrix::from_counts(4, 24, c);
  r = plan_with("omni", in);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("window 5 of 8"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("empty in layer 3"), std::string::npos) << r.status();
  // NaN never reaches a planner: a LoadMatrix refuses it, naming the element.
  auto nan = LoadMatrix::from_weights(1, 2, {1.0, std::nan("")});
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.status().message().find("1"), std::string::npos) << nan.status();
  // Serving figures out of range.
  in.samples = &windows;
  in.serving.seconds_per_token = 0;
  r = plan_with("omni", in);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("seconds_per_token"), std::string::npos) << r.status();
}

TEST(OmniInterval, DefaultSpecIsTheIntervalPlanner) {
  auto p = make_planner("omni");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->spec(), "omni");
  EXPECT_TRUE(OmniOptions{}.forecast);
  auto fit = make_planner("omni(forecast=false)");
  ASSERT_TRUE(fit.ok());
  EXPECT_EQ((*fit)->spec(), "omni(forecast=false)");
  // The two differ on windows whose mix moved: the forecast plans for the
  // last windows' regime, the fit for `load` alone (here the oldest window).
  const auto windows = drifting_windows(9);
  PlanInput in;
  in.load = &windows.front();
  in.num_ranks = 6;
  in.slots_per_rank = {5};
  in.samples = &windows;
  auto a = (*p)->plan(in);
  auto b = (*fit)->plan(in);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->placement, b->placement);
}

// Max rank load of one layer ([R * S] slots) under the even split of `w`.
double even_split_max(const std::vector<ExpertId>& row, std::span<const double> w, int32_t R) {
  std::vector<int32_t> cnt(w.size(), 0);
  for (ExpertId e : row)
    if (e >= 0) ++cnt[static_cast<size_t>(e)];
  std::vector<double> rank(static_cast<size_t>(R), 0.0);
  const size_t S = row.size() / static_cast<size_t>(R);
  for (size_t g = 0; g < row.size(); ++g)
    if (row[g] >= 0) rank[g / S] += w[static_cast<size_t>(row[g])] / cnt[static_cast<size_t>(row[g])];
  return *std::max_element(rank.begin(), rank.end());
}

// A fit of one window may balance it without the spare slots; the plan fills
// every spare slot whose replica does not raise the expected busiest rank:
// under static shares a slot stays empty only when every replica it could
// take raises the window's busiest rank. (Under the per-batch split the fill
// is tried on the split itself, a water-fill that can rise with another
// replica, so there is no such exact property to check.)
TEST(OmniInterval, SpareSlotsAreFilledWhenAReplicaDoesNotRaiseTheBusiestRank) {
  std::mt19937_64 rng(5);
  int empty_under_shares = 0;
  for (int trial = 0; trial < 6; ++trial) {
    LoadMatrix load = testing::random_load(rng, 3, 64, 1.0);
    PlanInput in;
    in.load = &load;
    in.num_ranks = 8;
    in.slots_per_rank = {9};
    {
      const DispatchMode dispatch = DispatchMode::kShares;
      in.serving.dispatch = dispatch;
      auto o = plan_with("omni", in);
      ASSERT_TRUE(o.ok()) << o.status();
      for (LayerId l = 0; l < 3; ++l) {
        const std::vector<ExpertId> row(o->placement.phy2log(l).begin(), o->placement.phy2log(l).end());
        const auto w = load.row(l);
        const double mx = even_split_max(row, w, 8);
        for (size_t g = 0; g < row.size(); ++g) {
          if (row[g] >= 0) continue;
          ++empty_under_shares;
          const size_t r = g / 9;
          for (ExpertId x = 0; x < 64; ++x) {
            bool on_rank = false;
            for (size_t s = 0; s < 9; ++s) on_rank |= row[r * 9 + s] == x;
            if (on_rank) continue;
            std::vector<ExpertId> filled = row;
            filled[g] = x;
            EXPECT_GT(even_split_max(filled, w, 8), mx * (1 + 1e-12))
                << "trial " << trial << " layer " << l << ": slot " << g << " left empty though expert " << x
                << " would not raise the busiest rank";
          }
        }
      }
    }
  }
  std::printf("  empty slots left under static shares: %d of %d\n", empty_under_shares, 6 * 3 * 72);
  EXPECT_LT(empty_under_shares, 6 * 3 * 8) << "some spare slots must have been filled";
}

// Per-batch busiest rank over mean of window `w`'s layer l under the split
// the runtime uses (balance_batch_loads on the window's totals).
double per_batch_ratio(const Placement& p, const LoadMatrix& w, LayerId l) {
  const auto ranks_of = layer_replica_ranks(p, l);
  const auto row = w.row(l);
  std::vector<int64_t> totals(row.begin(), row.end());
  auto loads = balance_batch_loads(p.num_ranks(), ranks_of, totals);
  EXPECT_TRUE(loads.ok()) << loads.status();
  if (!loads.ok()) return 0;
  double sum = 0, mx = 0;
  for (int64_t v : *loads) {
    sum += static_cast<double>(v);
    mx = std::max(mx, static_cast<double>(v));
  }
  return mx / (sum / static_cast<double>(loads->size()));
}

// Under the per-batch split, layers above 128 slots are searched under static
// shares and each candidate (the placement in force, the search's best
// prefix, the pruned fit from scratch) is judged under the split: the plan
// is deterministic, valid, and on the next window beats both the placement
// in force and eplb from scratch by the margins measured when it was built.
TEST(OmniInterval, PerBatchLayersAbove128SlotsBeatEplbOnTheNextWindow) {
  std::mt19937_64 rng(11);
  constexpr int32_t kLayers = 3, kExperts = 128, kRanks = 16, kSlots = 9;  // 144 slots per layer
  std::lognormal_distribution<double> base(0.0, 1.0), noise(0.0, 0.15);
  std::vector<double> w(static_cast<size_t>(kLayers) * kExperts);
  for (double& v : w) v = 2000 * base(rng);
  std::vector<LoadMatrix> windows;
  for (int k = 0; k < 7; ++k) {
    std::vector<int64_t> c(w.size());
    for (size_t i = 0; i < w.size(); ++i) c[i] = std::llround(w[i] * noise(rng));
    windows.push_back(*LoadMatrix::from_counts(kLayers, kExperts, std::move(c)));
    for (int j = 0; j < 6; ++j) {
      const size_t x = static_cast<size_t>(rng() % w.size()), y = static_cast<size_t>(rng() % w.size());
      std::swap(w[x], w[y]);
    }
  }
  const LoadMatrix& next = windows.back();
  const std::vector<LoadMatrix> recent(windows.begin(), windows.end() - 1);
  const Topology topo = *Topology::uniform(kRanks, 8);
  PlanInput first;
  first.load = &recent.front();
  first.num_ranks = kRanks;
  first.slots_per_rank = {kSlots};
  first.topology = &topo;
  auto start = plan_with("eplb", first);
  ASSERT_TRUE(start.ok()) << start.status();
  PlanInput in = first;
  in.load = &recent.back();
  in.samples = &recent;
  in.current = &start->placement;
  in.serving.dispatch = DispatchMode::kPerBatch;
  in.serving.expert_bytes = 1e6;
  auto a = plan_with("omni", in);
  auto b = plan_with("omni", in);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_EQ(a->placement, b->placement);
  ValidationRules rules;
  rules.forbid_same_rank_duplicates = true;
  EXPECT_TRUE(a->placement.validate(rules).empty());
  PlanInput scratch = first;
  scratch.load = &recent.back();
  auto e = plan_with("eplb", scratch);
  ASSERT_TRUE(e.ok()) << e.status();
  double omni = 0, eplb = 0, kept = 0;
  for (LayerId l = 0; l < kLayers; ++l) {
    omni += per_batch_ratio(a->placement, next, l) / kLayers;
    eplb += per_batch_ratio(e->placement, next, l) / kLayers;
    kept += per_batch_ratio(start->placement, next, l) / kLayers;
  }
  std::printf(
      "  next window, per-batch max/mean: omni %.4f, eplb from scratch %.4f, placement in force %.4f; "
      "slots changed %lld\n",
      omni, eplb, kept, static_cast<long long>(a->stats.slots_changed));
  // Measured when the judged search was built: omni 1.0405, eplb 1.1579, in force 1.2050, 113 of 432 slots
  // changed; the per-batch search it replaced on such layers reached 1.1178 (128 slots), which fails here.
  EXPECT_LT(omni, eplb - 0.08);
  EXPECT_LT(omni, kept - 0.12);
  EXPECT_LE(a->stats.slots_changed, 432 / 3);
}

}  // namespace
}  // namespace omni
