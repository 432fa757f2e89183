// Simulator at DeepSeek-V3 scale: 58 layers x 256 experts, 64 ranks on 8 hosts, 5 slots per rank.
#include <benchmark/benchmark.h>

#include <random>

#include "common/random_placement.h"
#include "omniplacement/sim/sim.h"

namespace {

struct SimFixture {
  omni::Placement placement;
  omni::LoadMatrix load;
  omni::Topology topology;
  SimFixture() {
    std::mt19937_64 rng(1);
    placement = *omni::Placement::create(omni::testing::random_layout(rng, 58, 64, 256, 1, 1, true, 0.0));
    load = omni::testing::random_load(rng, 58, 256);
    topology = *omni::Topology::uniform(64, 8);
  }
};

const SimFixture& sim_fixture() {
  static SimFixture f;
  return f;
}

void BM_SimStepCost(benchmark::State& state) {
  const auto& f = sim_fixture();
  const auto model = *omni::sim::CostModel::create(f.placement, f.topology, omni::sim::CostParams{});
  for (auto _ : state) benchmark::DoNotOptimize(model.step_cost(f.load));
  state.SetLabel("one step, 58 layers x 256 experts, 64 ranks, 320 slots");
}
BENCHMARK(BM_SimStepCost)->Unit(benchmark::kMicrosecond);

void BM_SimCostModelCreate(benchmark::State& state) {
  const auto& f = sim_fixture();
  for (auto _ : state) benchmark::DoNotOptimize(omni::sim::CostModel::create(f.placement, f.topology, {}));
  state.SetLabel("routing tables of one placement (done once per re-plan)");
}
BENCHMARK(BM_SimCostModelCreate)->Unit(benchmark::kMicrosecond);

void BM_SimWorkloadStep(benchmark::State& state) {
  omni::sim::WorkloadParams p;  // DeepSeek-V3-like defaults
  auto gen = *omni::sim::SyntheticWorkload::create(p);
  omni::LoadMatrix m;
  for (auto _ : state) benchmark::DoNotOptimize(gen.next(&m));
  state.SetLabel("one synthetic step, 58 x 256, 8192 tokens x top-8");
}
BENCHMARK(BM_SimWorkloadStep)->Unit(benchmark::kMicrosecond);

void BM_SimMigrationCost(benchmark::State& state) {
  const auto& f = sim_fixture();
  std::mt19937_64 rng(2);
  const auto other = *omni::Placement::create(omni::testing::random_layout(rng, 58, 64, 256, 1, 1, true, 0.0));
  for (auto _ : state) benchmark::DoNotOptimize(omni::sim::migration_cost(f.placement, other, f.topology, {}));
  state.SetLabel("full reshuffle between two random placements");
}
BENCHMARK(BM_SimMigrationCost)->Unit(benchmark::kMicrosecond);

}  // namespace
