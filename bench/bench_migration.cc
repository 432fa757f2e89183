// Migration plans at DeepSeek-V3 scale: 58 layers x 256 experts, 64 ranks on 8 hosts,
// 5 slots per rank, between two independent random placements (almost every slot changes).
#include <benchmark/benchmark.h>

#include <random>

#include "common/random_placement.h"
#include "omniplacement/core/core.h"
#include "omniplacement/planner/migration_plan.h"

namespace {

struct MigrationFixture {
  omni::Placement current;
  omni::Placement next;
  omni::Topology topology;
  MigrationFixture() {
    std::mt19937_64 rng(2);
    current = *omni::Placement::create(omni::testing::random_layout(rng, 58, 64, 256, 1, 1, true, 0.0));
    next = *omni::Placement::create(omni::testing::random_layout(rng, 58, 64, 256, 1, 1, true, 0.0));
    topology = *omni::Topology::uniform(64, 8);
    // Baseline source rule: every changed slot reads the expert's first replica (lowest global
    // slot) of the current placement, wherever it is.
    for (omni::LayerId l = 0; l < current.num_layers(); ++l) {
      for (omni::GlobalSlot g = 0; g < next.num_slots(l); ++g) {
        const omni::ExpertId e = next.phy2log(l)[static_cast<size_t>(g)];
        if (e == omni::kEmptySlot || current.phy2log(l)[static_cast<size_t>(g)] == e) continue;
        const omni::RankId src = current.rank_of(l, current.replicas(l, e).front());
        if (topology.link(src, next.rank_of(l, g)) == omni::LinkClass::kCrossHost) ++first_replica_cross_host;
      }
    }
  }
  int64_t first_replica_cross_host = 0;
};

const MigrationFixture& migration_fixture() {
  static MigrationFixture f;
  return f;
}

// Argument: max_per_round (0 = no limit).
void BM_MigrationDiff(benchmark::State& state) {
  const auto& f = migration_fixture();
  omni::MigrationOptions options;
  options.max_per_round = static_cast<int32_t>(state.range(0));
  omni::MigrationPlan plan;
  for (auto _ : state) {
    auto p = omni::diff(f.current, f.next, f.topology, options);
    if (!p.ok()) {
      state.SkipWithError(p.status().to_string().c_str());
      return;
    }
    plan = *std::move(p);
    benchmark::DoNotOptimize(plan);
  }
  state.counters["transfers"] = static_cast<double>(plan.num_transfers);
  state.counters["rounds"] = plan.num_rounds();
  state.counters["over_limit_rounds"] = plan.num_over_limit_rounds();
  state.counters["GB"] = static_cast<double>(plan.total_bytes) / 1e9;
  state.counters["est_s"] = plan.total_seconds;
  state.counters["cross_host"] = static_cast<double>(plan.transfers_by_link[2]);
  state.counters["first_replica_cross_host"] = static_cast<double>(f.first_replica_cross_host);
  state.SetLabel("58 layers x 256 experts, 64 ranks on 8 hosts, 5 slots per rank");
}
BENCHMARK(BM_MigrationDiff)->Arg(0)->Arg(4)->Arg(8)->Unit(benchmark::kMillisecond);

void BM_VerifyMigration(benchmark::State& state) {
  const auto& f = migration_fixture();
  const omni::MigrationPlan plan = *omni::diff(f.current, f.next, f.topology, {});
  for (auto _ : state) {
    omni::Status s = omni::verify_migration(f.current, plan, f.next);
    if (!s.ok()) {
      state.SkipWithError(s.to_string().c_str());
      return;
    }
  }
  state.SetLabel("plan of BM_MigrationDiff/8");
}
BENCHMARK(BM_VerifyMigration)->Unit(benchmark::kMillisecond);

}  // namespace
