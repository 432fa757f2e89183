// Runtime engine-thread costs: dispatch (ids per second) and, once the
// PlacementManager is built, step_boundary on steps without a commit.
#include <benchmark/benchmark.h>

#include <random>

#include "common/random_placement.h"
#include "omniplacement/core/core.h"
#include "omniplacement/runtime/batch_split.h"
#include "omniplacement/runtime/dispatch_table.h"

namespace {

// DeepSeek-V3-like layer: 256 experts, 64 ranks on 8 hosts, 5 slots per rank
// (64 redundant replicas), batches of 256 tokens x top-8 drawn from a skewed
// (lognormal) expert popularity.
struct DispatchFixture {
  omni::Placement placement;
  omni::Topology topology;
  omni::LayerDispatch table;
  std::vector<omni::ExpertId> ids;
  DispatchFixture() {
    std::mt19937_64 rng(3);
    placement = *omni::Placement::create(omni::testing::random_layout(rng, 1, 64, 256, 1, 1, true, 0.0));
    topology = *omni::Topology::uniform(64, 8);
    table = *omni::LayerDispatch::build(placement, 0, topology, 5);
    std::lognormal_distribution<double> ln(0, 1);
    std::vector<double> w(256);
    for (auto& x : w) x = ln(rng);
    std::discrete_distribution<int> pick(w.begin(), w.end());
    ids.resize(256 * 8);
    for (auto& id : ids) id = pick(rng);
  }
};

const DispatchFixture& dispatch_fixture() {
  static DispatchFixture f;
  return f;
}

void BM_Dispatch(benchmark::State& state) {
  const auto& f = dispatch_fixture();
  std::vector<omni::GlobalSlot> out(f.ids.size());
  std::vector<uint32_t> counters(256, 0);
  for (auto _ : state) {
    f.table.dispatch(f.ids, out, counters);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(f.ids.size()));
  state.SetLabel("256 tokens x top-8, 256 experts, 64 ranks x 5 slots");
}
BENCHMARK(BM_Dispatch);

void BM_DispatchTableBuild(benchmark::State& state) {
  const auto& f = dispatch_fixture();
  for (auto _ : state) benchmark::DoNotOptimize(omni::LayerDispatch::build(f.placement, 0, f.topology, 5));
  state.SetLabel("one layer: 256 experts, 64 ranks x 5 slots");
}
BENCHMARK(BM_DispatchTableBuild)->Unit(benchmark::kMicrosecond);

void BM_SplitBatch(benchmark::State& state) {
  const auto& f = dispatch_fixture();
  // Every rank's counts of one 256 x top-8 batch (the all-gathered matrix).
  std::vector<int64_t> counts(64 * 256, 0);
  std::mt19937_64 rng(5);
  for (int q = 0; q < 64; ++q)
    for (int i = 0; i < 2048; ++i) ++counts[static_cast<size_t>(q * 256 + f.ids[(static_cast<size_t>(i) * 7 + q) % f.ids.size()])];
  for (auto _ : state) benchmark::DoNotOptimize(omni::split_batch(f.placement, 0, f.topology, 5, counts));
  state.SetLabel("per-batch split of one layer: 64 ranks x 2048 ids, 256 experts");
}
BENCHMARK(BM_SplitBatch)->Unit(benchmark::kMicrosecond);

}  // namespace

#if __has_include("omniplacement/runtime/placement_manager.h")
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/local_transport.h"

namespace {

// step_boundary on steps without a commit: dynamic placement on, one rank
// (LocalTransport), re-plan interval far away, so every step takes the fast
// path (no collective).
void BM_StepBoundaryNoCommit(benchmark::State& state) {
  auto group = omni::LocalTransport::create_group(1);
  auto placement = *omni::Placement::contiguous(58, 1, 256, 256);
  auto store = *omni::HostWeightStore::create(std::vector<int64_t>(58, 64), std::vector<int32_t>(58, 256), 0);
  omni::PlacementManagerOptions opt;
  opt.replan_interval_steps = int64_t{1} << 60;
  opt.planner_spec = "eplb";
  auto pm = omni::PlacementManager::create(*(*group)[0], *omni::Topology::single_host(1), placement, *store, opt);
  if (!pm.ok()) {
    state.SkipWithError(pm.status().to_string().c_str());
    return;
  }
  int64_t step = 0;
  for (auto _ : state) benchmark::DoNotOptimize((*pm)->step_boundary(step++));
  state.SetLabel("dynamic on, no round due (58 layers x 256 experts)");
}
BENCHMARK(BM_StepBoundaryNoCommit);

}  // namespace
#endif
