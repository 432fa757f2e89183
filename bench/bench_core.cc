// Core metrics at DeepSeek-V3 scale: 58 layers x 256 experts, 64 ranks, 5 slots per rank.
#include <benchmark/benchmark.h>

#include <random>

#include "common/random_placement.h"
#include "omniplacement/core/core.h"

namespace {

struct Fixture {
  omni::Placement placement;
  omni::LoadMatrix load;
  omni::Topology topology;
  Fixture() {
    std::mt19937_64 rng(1);
    placement = *omni::Placement::create(omni::testing::random_layout(rng, 58, 64, 256, 1, 1, true, 0.0));
    load = omni::testing::random_load(rng, 58, 256);
    topology = *omni::Topology::uniform(64, 8);
  }
};

const Fixture& fixture() {
  static Fixture f;
  return f;
}

void BM_PlacementBalance(benchmark::State& state) {
  const auto& f = fixture();
  for (auto _ : state) benchmark::DoNotOptimize(omni::placement_balance(f.placement, f.load));
  state.SetLabel("58 layers x 256 experts, 64 ranks, 320 slots");
}
BENCHMARK(BM_PlacementBalance)->Unit(benchmark::kMicrosecond);

void BM_DispatchTraffic(benchmark::State& state) {
  const auto& f = fixture();
  for (auto _ : state) benchmark::DoNotOptimize(omni::dispatch_traffic(f.placement, f.load, f.topology));
  state.SetLabel("58 layers x 256 experts, 64 ranks on 8 hosts");
}
BENCHMARK(BM_DispatchTraffic)->Unit(benchmark::kMicrosecond);

void BM_Validate(benchmark::State& state) {
  const auto& f = fixture();
  omni::ValidationRules rules;
  rules.forbid_same_rank_duplicates = true;
  for (auto _ : state) benchmark::DoNotOptimize(omni::validate(f.placement.layout(), rules));
}
BENCHMARK(BM_Validate)->Unit(benchmark::kMicrosecond);

}  // namespace
