// Re-planning for the next interval on the shipped Qwen1.5-MoE time series
// (issue 16's figure, docs/BENCHMARKS.md): bookcorpus, then wikitext, then
// wmt19, iterations 0-19 each; 12 ranks x 6 slots; re-planned after every
// window from the placement in force on the last six windows and measured on
// the next one.
#include <cstdio>
#include <gtest/gtest.h>

#include "omniplacement/core/metrics.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/sim/policies.h"
#include "omniplacement/sim/simulator.h"
#include "omniplacement/sim/trace.h"
#include "omniplacement/sim/trace_files.h"

namespace omni::sim {
namespace {

const std::string kQwen = std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv";
// Margins the docs claim (docs/BENCHMARKS.md, "Re-planning for the next
// interval"), measured on this replay; the assertions allow a little less.
// Measured (2026-12-03, after the spare slots were filled): default figures
// +0.019 realised (1.1949 against 1.1759) at 2.7% of eplb's moves; plans
// serving 5 windows -0.013 (1.1627) at 10.2%; per-batch split -0.010 (1.0834
// against 1.0937) at 0.7%. (Before: +0.018, -0.003, -0.002.)
constexpr double kFewMoves = 0.05;         // default figures and per-batch: at most this share of eplb's moves
constexpr double kMovesOfEplb = 0.2;       // plans serving 5 windows: at most this share
constexpr double kDefaultExcess = 0.025;   // default figures: realised at most this above eplb
constexpr double kMargin = 0.008;          // 5 windows, per-batch: realised at least this below eplb

StatusOr<SimResult> replay(const std::string& policies, size_t max_windows = 0, int32_t samples = 6,
                           DispatchMode dispatch = DispatchMode::kShares, int64_t plan_interval_windows = 1) {
  auto windows = read_trace_windows(kQwen, {.datasets = {"bookcorpus", "wikitext", "wmt19"}});
  if (!windows.ok()) return windows.status();
  if (max_windows > 0 && windows->size() > max_windows) windows->resize(max_windows);
  auto trace = WindowTrace::create(std::move(*windows), /*steps_per_window=*/1);
  if (!trace.ok()) return trace.status();
  PolicyContext ctx;
  ctx.topology = *Topology::uniform(12, 4);
  ctx.num_layers = trace->num_layers();
  ctx.num_experts = trace->num_experts();
  ctx.slots_per_rank = 6;
  // The planner's serving figures are the defaults (DeepSeek-V3 FP8 experts
  // and compute), one window per step, a plan serving plan_interval_windows.
  ctx.serving.dispatch = dispatch == DispatchMode::kPerBatch ? DispatchMode::kPerBatch : DispatchMode::kShares;
  ctx.serving.interval_steps = plan_interval_windows;
  auto specs = make_policies(policies, ctx);
  if (!specs.ok()) return specs.status();
  SimOptions opts;
  opts.interval_steps = 1;  // one window per interval: plan on window t, serve window t + 1
  opts.record_steps = false;
  opts.sample_intervals = samples;
  opts.cost.dispatch = dispatch;
  return simulate(*trace, ctx.topology, *specs, opts);
}

void print(const SimResult& r) {
  for (const PolicySummary& p : r.policies)
    std::printf("  %-40s realised %.4f moved %lld\n", p.name.c_str(), p.mean_max_over_mean_after_first,
                static_cast<long long>(p.moved_experts));
}

// The default planner ("omni", the last six windows, default serving
// figures: 44 MB experts, one window per interval, which prices a move at
// 4-34% of a rank's load in these small windows) against eplb re-planned from
// scratch: a fortieth of the moves, somewhat above eplb's realised balance.
TEST(ReplanQwenTest, DefaultOmniMovesAFortiethOfEplb) {
  auto r = replay("dynamic-eplb,dynamic-omni");
  ASSERT_TRUE(r.ok()) << r.status();
  print(*r);
  ASSERT_EQ(r->num_steps, 60);
  const PolicySummary& eplb = r->policies[0];
  const PolicySummary& omni = r->policies[1];
  EXPECT_EQ(omni.replans, 60);
  // From scratch, EPLB rewrites most of the 864 slots at every one of the 59 re-plans.
  EXPECT_GT(eplb.moved_experts, 59 * 864 / 2);
  EXPECT_GT(omni.moved_experts, 0) << "the dataset shifts must be followed";
  EXPECT_LE(static_cast<double>(omni.moved_experts), kFewMoves * static_cast<double>(eplb.moved_experts));
  EXPECT_LE(omni.mean_max_over_mean_after_first, eplb.mean_max_over_mean_after_first + kDefaultExcess);
}

// The same when each plan serves five windows: its moves pay over longer, and
// it realises a better balance than eplb with a tenth of its moves.
TEST(ReplanQwenTest, OverFiveWindowsOmniMatchesEplbWithATenthOfItsMoves) {
  auto r = replay("dynamic-eplb,dynamic-omni", 0, 6, DispatchMode::kShares, 5);
  ASSERT_TRUE(r.ok()) << r.status();
  print(*r);
  const PolicySummary& eplb = r->policies[0];
  const PolicySummary& omni = r->policies[1];
  EXPECT_LE(static_cast<double>(omni.moved_experts), kMovesOfEplb * static_cast<double>(eplb.moved_experts));
  EXPECT_LE(omni.mean_max_over_mean_after_first, eplb.mean_max_over_mean_after_first - kMargin);
}

// With the runtime's per-batch split in force, omni plans for it: a better
// realised balance than eplb's with under 1% of its moves.
TEST(ReplanQwenTest, UnderPerBatchDispatchOmniMatchesEplbWithFewMoves) {
  auto r = replay("dynamic-eplb,dynamic-omni", 0, 6, DispatchMode::kPerBatch);
  ASSERT_TRUE(r.ok()) << r.status();
  print(*r);
  const PolicySummary& eplb = r->policies[0];
  const PolicySummary& omni = r->policies[1];
  EXPECT_LE(static_cast<double>(omni.moved_experts), kFewMoves * static_cast<double>(eplb.moved_experts));
  EXPECT_LE(omni.mean_max_over_mean_after_first, eplb.mean_max_over_mean_after_first - kMargin);
}

StatusOr<PlanResult> plan_once(const std::string& spec, const PlanInput& in) {
  auto planner = make_planner(spec);
  if (!planner.ok()) return planner.status();
  return (*planner)->plan(in);
}

// The Qwen replay of `omniplace plan --current` (bench/plan_eval, workload
// qwen, static shares): 60 windows of the shipped trace, 12 ranks x 6 slots
// on 3 hosts; eplb re-planned from scratch on window t and the default omni
// from the placement in force on windows t-5..t, both measured on window t+1
// (mean over layers of max/mean rank load), both starting from eplb's plan of
// window 0. Measured: omni 1.1714 against eplb 1.1759 with 2.7% of its moves
// (it was 1.1762 before the spare slots were filled); asserted with a little
// slack: at least 0.003 below eplb, at most 4% of its moves.
TEST(ReplanQwenTest, PlanCurrentReplayUnderSharesBeatsEplbWithAFewPercentOfItsMoves) {
  auto series = read_trace_windows(kQwen, {.datasets = {"bookcorpus", "wikitext", "wmt19"}});
  ASSERT_TRUE(series.ok()) << series.status();
  std::vector<LoadMatrix> windows = std::move(*series);
  ASSERT_EQ(windows.size(), 60u);
  const Topology topo = *Topology::uniform(12, 4);
  PlanInput base;
  base.num_ranks = 12;
  base.slots_per_rank = {6};
  base.topology = &topo;
  PlanInput first = base;
  first.load = &windows[0];
  auto start = plan_once("eplb", first);
  ASSERT_TRUE(start.ok()) << start.status();
  auto next_max_over_mean = [&](const Placement& p, const LoadMatrix& next) {
    auto bal = placement_balance(p, next);
    double sum = 0;
    int layers = 0;
    for (const LayerBalance& b : bal->layers)
      if (b.total > 0) {
        sum += b.max_over_mean;
        ++layers;
      }
    return sum / layers;
  };
  auto moved = [](const Placement& a, const Placement& b) {
    int64_t n = 0;
    for (LayerId l = 0; l < b.num_layers(); ++l) {
      const auto x = a.phy2log(l), y = b.phy2log(l);
      for (size_t g = 0; g < y.size(); ++g) n += y[g] >= 0 && x[g] != y[g];
    }
    return n;
  };
  Placement omni_cur = start->placement, eplb_cur = start->placement;
  double omni_realised = 0, eplb_realised = 0;
  int64_t omni_moves = 0, eplb_moves = 0;
  for (size_t t = 0; t + 1 < windows.size(); ++t) {
    std::vector<LoadMatrix> samples(windows.begin() + static_cast<std::ptrdiff_t>(t >= 5 ? t - 5 : 0),
                                    windows.begin() + static_cast<std::ptrdiff_t>(t + 1));
    PlanInput in = base;
    in.load = &windows[t];
    in.samples = &samples;
    in.current = &omni_cur;
    auto o = plan_once("omni", in);
    ASSERT_TRUE(o.ok()) << o.status() << " window " << t;
    PlanInput scratch = base;
    scratch.load = &windows[t];
    auto e = plan_once("eplb", scratch);
    ASSERT_TRUE(e.ok()) << e.status();
    omni_moves += moved(omni_cur, o->placement);
    eplb_moves += moved(eplb_cur, e->placement);
    omni_cur = o->placement;
    eplb_cur = e->placement;
    omni_realised += next_max_over_mean(omni_cur, windows[t + 1]);
    eplb_realised += next_max_over_mean(eplb_cur, windows[t + 1]);
  }
  omni_realised /= 59;
  eplb_realised /= 59;
  EXPECT_NEAR(eplb_realised, 1.1759, 0.0005) << "the replay itself changed";
  EXPECT_LE(omni_realised, eplb_realised - 0.003);
  EXPECT_LE(static_cast<double>(omni_moves), 0.04 * static_cast<double>(eplb_moves));
  EXPECT_GT(omni_moves, 0) << "the dataset shifts must be followed";
}

}  // namespace
}  // namespace omni::sim
