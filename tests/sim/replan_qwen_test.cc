// Re-planning for the next interval on the shipped Qwen1.5-MoE time series
// (issue 16's figure, docs/BENCHMARKS.md): bookcorpus, then wikitext, then
// wmt19, iterations 0-19 each; 12 ranks x 6 slots; re-planned after every
// window from the placement in force on the last six windows and measured on
// the next one.
#include <cstdio>
#include <gtest/gtest.h>

#include "omniplacement/sim/policies.h"
#include "omniplacement/sim/simulator.h"
#include "omniplacement/sim/trace.h"
#include "omniplacement/sim/trace_files.h"

namespace omni::sim {
namespace {

const std::string kQwen = std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv";
// Margins the docs claim (docs/BENCHMARKS.md, "Re-planning for the next
// interval"), measured on this replay; the assertions allow a little less.
// Measured (main + this change, 2026-12-03): default figures +0.018 realised
// at 2.6% of eplb's moves; plans serving 5 windows -0.003 at 10.4%; per-batch
// split -0.002 at 0.8%.
constexpr double kFewMoves = 0.05;         // default figures and per-batch: at most this share of eplb's moves
constexpr double kMovesOfEplb = 0.2;       // plans serving 5 windows: at most this share
constexpr double kDefaultExcess = 0.025;   // default figures: realised at most this above eplb
constexpr double kLevel = 0.001;           // 5 windows, per-batch: realised at most this above eplb

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
// it realises eplb's balance with a tenth of its moves.
TEST(ReplanQwenTest, OverFiveWindowsOmniMatchesEplbWithATenthOfItsMoves) {
  auto r = replay("dynamic-eplb,dynamic-omni", 0, 6, DispatchMode::kShares, 5);
  ASSERT_TRUE(r.ok()) << r.status();
  print(*r);
  const PolicySummary& eplb = r->policies[0];
  const PolicySummary& omni = r->policies[1];
  EXPECT_LE(static_cast<double>(omni.moved_experts), kMovesOfEplb * static_cast<double>(eplb.moved_experts));
  EXPECT_LE(omni.mean_max_over_mean_after_first, eplb.mean_max_over_mean_after_first + kLevel);
}

// With the runtime's per-batch split in force, omni plans for it: eplb's
// realised balance with under 1% of its moves.
TEST(ReplanQwenTest, UnderPerBatchDispatchOmniMatchesEplbWithFewMoves) {
  auto r = replay("dynamic-eplb,dynamic-omni", 0, 6, DispatchMode::kPerBatch);
  ASSERT_TRUE(r.ok()) << r.status();
  print(*r);
  const PolicySummary& eplb = r->policies[0];
  const PolicySummary& omni = r->policies[1];
  EXPECT_LE(static_cast<double>(omni.moved_experts), kFewMoves * static_cast<double>(eplb.moved_experts));
  EXPECT_LE(omni.mean_max_over_mean_after_first, eplb.mean_max_over_mean_after_first + kLevel);
}

}  // namespace
}  // namespace omni::sim
