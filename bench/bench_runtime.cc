// Runtime engine-thread costs: dispatch (ids per second) and, once the
// PlacementManager is built, step_boundary on steps without a commit.
#include <benchmark/benchmark.h>

#include <random>

#include "common/random_placement.h"
#include "omniplacement/core/core.h"
#include "omniplacement/dispatch/batch_split.h"
#include "omniplacement/dispatch/dispatch_table.h"

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

#if __has_include("omniplacement/runtime/local_cluster.h")
#include "omniplacement/runtime/local_cluster.h"

namespace {

// step_boundary on steps without a commit: dynamic placement on, one rank
// (a LocalCluster of one), re-plan interval far away, so every step takes the
// fast path (no collective). This thread acts as the rank's engine thread.
void BM_StepBoundaryNoCommit(benchmark::State& state) {
  auto placement = *omni::Placement::contiguous(58, 1, 256, 256);
  omni::LocalClusterOptions opt;
  opt.manager.replan_interval_steps = int64_t{1} << 60;
  opt.manager.planner_spec = "eplb";
  auto cluster = omni::LocalCluster::create(placement, *omni::Topology::single_host(1), std::vector<int64_t>(58, 64), opt);
  if (!cluster.ok()) return state.SkipWithError(cluster.status().to_string().c_str());
  omni::PlacementManager& pm = (*cluster)->manager(0);
  int64_t step = 0;
  for (auto _ : state) benchmark::DoNotOptimize(pm.step_boundary(step++));
  state.SetLabel("dynamic on, no round due (58 layers x 256 experts)");
}
BENCHMARK(BM_StepBoundaryNoCommit);

// step_boundary with shift detection every range(0) steps (0: off), no round
// due: the engine thread's part of a check (take the recorder's window, queue
// it; on the next step the two-word verdict collective, here of one rank).
// The planner thread's aggregation and pricing are not in this thread's CPU time.
void BM_StepBoundaryShiftCheck(benchmark::State& state) {
  auto placement = *omni::Placement::contiguous(58, 1, 256, 256);
  omni::LocalClusterOptions opt;
  opt.manager.replan_interval_steps = int64_t{1} << 60;
  opt.manager.shift_check_steps = state.range(0);
  opt.manager.planner_spec = "eplb";
  auto cluster = omni::LocalCluster::create(placement, *omni::Topology::single_host(1), std::vector<int64_t>(58, 64), opt);
  if (!cluster.ok()) return state.SkipWithError(cluster.status().to_string().c_str());
  omni::PlacementManager& pm = (*cluster)->manager(0);
  std::vector<omni::ExpertId> ids(1024);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<omni::ExpertId>((i * 37) % 256);
  int64_t step = 0;
  for (auto _ : state) {
    for (omni::LayerId l = 0; l < 58; ++l) pm.record(l, ids);
    benchmark::DoNotOptimize(pm.step_boundary(step++));
  }
  state.SetLabel("58 layers x 256 experts, 1024 ids per layer and step recorded");
}
BENCHMARK(BM_StepBoundaryShiftCheck)->Arg(0)->Arg(1)->Arg(10)->Unit(benchmark::kMicrosecond);

}  // namespace
#endif

#if __has_include("omniplacement/runtime/backup_source.h")
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <filesystem>

#include "omniplacement/runtime/backup_source.h"

namespace {

// The engine's PlacementManager::dispatch (shares mode): the table lookup of
// BM_Dispatch plus the check for a map published by another thread (failover).
void BM_ManagerDispatch(benchmark::State& state) {
  const auto& f = dispatch_fixture();
  // Only rank 5's manager is used (this thread acts as its engine thread);
  // the cluster creates all 64 (creation is collective).
  omni::LocalClusterOptions opt;
  opt.manager.dynamic = false;
  opt.manager.planner_spec = "eplb";
  auto cluster = omni::LocalCluster::create(f.placement, f.topology, {64}, opt);
  if (!cluster.ok()) return state.SkipWithError(cluster.status().to_string().c_str());
  omni::PlacementManager& pm = (*cluster)->manager(5);
  std::vector<omni::GlobalSlot> out(f.ids.size());
  for (auto _ : state) {
    benchmark::DoNotOptimize(pm.dispatch(0, f.ids, out));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(f.ids.size()));
  state.SetLabel("PlacementManager::dispatch, same layer as BM_Dispatch");
}
BENCHMARK(BM_ManagerDispatch);

// Failover: every survivor's fail_ranks() (mark the transports, drop the
// failed rank's slots, rebuild the routing of the experts that had a replica
// there, publish), all survivors told at the same moment, each on its own
// thread (as each survivor's detector thread would call it). Manual time: from
// the signal to the last survivor's new map published. All N local ranks share
// this machine's cores, so it is bounded below by (N - 1) x per_rank_us / cores;
// per_rank_us is one survivor's own cost (what a survivor on its own host pays).
void BM_Failover(benchmark::State& state) {
  const auto R = static_cast<int32_t>(state.range(0));
  const auto L = static_cast<int32_t>(state.range(1));
  const auto E = static_cast<int32_t>(state.range(2));
  const bool only_rank0 = state.range(3) != 0;  // one survivor's own cost, the others idle
  const int32_t S = std::max((E + E / 4) / R, (E + R - 1) / R);  // about 25% redundant slots
  auto placement = omni::Placement::contiguous(L, R, E, S);
  auto topo = omni::Topology::uniform(R, 8);
  if (!placement.ok() || !topo.ok()) return state.SkipWithError("setup");
  double per_rank = 0;
  int64_t n = 0;
  for (auto _ : state) {
    omni::LocalClusterOptions opt;
    opt.manager.planner_spec = "eplb";
    opt.manager.replan_interval_steps = int64_t{1} << 60;
    auto cluster = omni::LocalCluster::create(*placement, *topo, std::vector<int64_t>(static_cast<size_t>(L), 64), opt);
    if (!cluster.ok()) return state.SkipWithError(cluster.status().to_string().c_str());
    omni::LocalCluster& c = **cluster;
    const omni::RankId dead[] = {R / 2};
    c.kill(dead[0]);  // it takes no part below; closing the cluster cuts it off
    const int32_t survivors = R - 1;
    std::mutex mu;
    std::condition_variable cv;
    int32_t ready = 0;
    bool go = false;
    std::chrono::steady_clock::time_point t_go;
    std::vector<int64_t> published(static_cast<size_t>(R), 0);
    // Gives the signal once every survivor waits for it.
    std::thread starter([&] {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return ready == survivors; });
      t_go = std::chrono::steady_clock::now();
      go = true;
      cv.notify_all();
    });
    const omni::Status s = c.run([&](omni::RankId q) -> omni::Status {
      {
        std::unique_lock<std::mutex> lock(mu);
        ++ready;
        cv.notify_all();
        cv.wait(lock, [&] { return go; });
      }
      if (only_rank0 && q != 0) return omni::ok_status();
      OMNI_RETURN_IF_ERROR(c.manager(q).fail_ranks(dead));
      published[static_cast<size_t>(q)] = c.manager(q).stats().failover_published_ns;
      return omni::ok_status();
    });
    starter.join();
    if (!s.ok()) return state.SkipWithError(s.to_string().c_str());
    const int64_t last = *std::max_element(published.begin(), published.end());
    for (omni::RankId q = 0; q < R; ++q)
      if (q != dead[0] && (!only_rank0 || q == 0)) {
        per_rank += c.manager(q).stats().last_failover_seconds;
        ++n;
      }
    const int64_t go_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t_go.time_since_epoch()).count();
    state.SetIterationTime(static_cast<double>(last - go_ns) / 1e9);
  }
  state.counters["per_rank_us"] = n ? per_rank / static_cast<double>(n) * 1e6 : 0.0;
  state.SetLabel(std::string(only_rank0 ? "one survivor of " : "") + std::to_string(R) + " ranks" +
                 (only_rank0 ? "" : " on their own threads") + ", " + std::to_string(L) + " layers x " +
                 std::to_string(E) + " experts, " + std::to_string(S) + " slots per rank");
}
// Args: ranks, layers, experts (DeepSeek-V3: 58 x 256; Qwen1.5-MoE: 24 x 60),
// and 1 to time one survivor alone (its own cost, no contention for cores).
BENCHMARK(BM_Failover)
    ->Args({16, 58, 256, 0})
    ->Args({64, 58, 256, 0})
    ->Args({16, 24, 60, 0})
    ->Args({64, 24, 60, 0})
    ->Args({16, 58, 256, 1})
    ->Args({64, 58, 256, 1})
    ->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);

// Restore of one expert: read it from the backup source and write it into a
// staging buffer (what a restore round does per lost expert before the commit).
// Arg 0: host memory, 1: safetensors checkpoint (a file just written, so read
// from the page cache); arg 1: expert bytes.
void BM_RestoreExpert(benchmark::State& state) {
  const bool from_file = state.range(0) == 1;
  const int64_t bytes = state.range(1);
  const int32_t E = 8;
  auto fill = [](omni::LayerId, omni::ExpertId e, std::span<std::byte> out) {
    std::memset(out.data(), e + 1, out.size());
    return omni::ok_status();
  };
  std::unique_ptr<omni::BackupSource> backup;
  const std::string path =
      (std::filesystem::temp_directory_path() / ("omni_bench_restore_" + std::to_string(::getpid()) + ".safetensors")).string();
  if (from_file) {
    if (!omni::write_expert_checkpoint(path, {bytes}, E, fill).ok()) return state.SkipWithError("write checkpoint");
    auto b = omni::SafetensorsBackup::open(path, 1, E);
    if (!b.ok()) return state.SkipWithError(b.status().to_string().c_str());
    backup = std::move(*b);
  } else {
    auto b = omni::HostMemoryBackup::create({bytes}, E);
    std::vector<std::byte> w(static_cast<size_t>(bytes));
    for (omni::ExpertId e = 0; e < E; ++e) {
      (void)fill(0, e, w);
      (void)(*b)->set(0, e, w);
    }
    backup = std::move(*b);
  }
  auto store = *omni::HostWeightStore::create({bytes}, {1}, bytes);
  std::vector<std::byte> buf(static_cast<size_t>(bytes));
  omni::ExpertId e = 0;
  for (auto _ : state) {
    auto id = store->acquire_staging(0, 0);
    benchmark::DoNotOptimize(backup->read_expert(0, e, buf));
    benchmark::DoNotOptimize(store->write_staging(*id, 0, buf));
    store->release_staging(*id);
    e = (e + 1) % E;
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.SetLabel(std::string(from_file ? "safetensors (page cache)" : "host memory") + ", " +
                 std::to_string(bytes >> 20) + " MiB per expert");
  if (from_file) std::filesystem::remove(path);
}
BENCHMARK(BM_RestoreExpert)->Args({0, 1 << 20})->Args({1, 1 << 20})->Args({0, 16 << 20})->Args({1, 16 << 20})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
#endif
