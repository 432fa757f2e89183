// Activation capture at DeepSeek-V3 scale: 58 MoE layers x 256 experts,
// batches of 256 tokens x top-8 (items = expert ids recorded).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <string>
#include <random>
#include <vector>

#include "recorder_test_peer.h"
#include "omniplacement/capture/activation_recorder.h"

namespace {

constexpr int32_t kLayers = 58;
constexpr int32_t kExperts = 256;
constexpr int32_t kTokens = 256;
constexpr int32_t kTopK = 8;
constexpr int kBatches = 16;  // distinct batches cycled through, so ids are not the same every call

std::unique_ptr<omni::ActivationRecorder> make_recorder(int32_t shards, bool weights) {
  omni::RecorderConfig c;
  c.num_layers = kLayers;
  c.num_ids = kExperts;
  c.num_shards = shards;
  c.track_gate_weights = weights;
  auto r = omni::ActivationRecorder::create(c);
  if (!r.ok()) std::abort();
  return std::move(r).value();
}

// Routed ids as a router produces them: top-8 distinct experts per token,
// drawn with a skewed (Zipf-like) popularity, so hot experts repeat often.
std::vector<std::vector<int32_t>> make_batches(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> popularity(kExperts);
  for (int32_t e = 0; e < kExperts; ++e) popularity[static_cast<size_t>(e)] = 1.0 / (1.0 + e);
  std::shuffle(popularity.begin(), popularity.end(), rng);
  std::discrete_distribution<int32_t> pick(popularity.begin(), popularity.end());
  std::vector<std::vector<int32_t>> batches(kBatches);
  for (auto& b : batches) {
    b.reserve(kTokens * kTopK);
    for (int32_t t = 0; t < kTokens; ++t) {
      std::vector<int32_t> chosen;
      while (static_cast<int32_t>(chosen.size()) < kTopK) {
        const int32_t e = pick(rng);
        if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
      }
      b.insert(b.end(), chosen.begin(), chosen.end());
    }
  }
  return batches;
}

void run_record(benchmark::State& state, omni::ActivationRecorder& r) {
  const auto batches = make_batches(7 + static_cast<uint64_t>(state.thread_index()));
  size_t i = 0;
  int32_t layer = 0;
  for (auto _ : state) {
    r.record(layer, batches[i]);
    if (++i == batches.size()) i = 0;
    if (++layer == kLayers) layer = 0;
  }
  state.SetItemsProcessed(state.iterations() * kTokens * kTopK);
}

// Arg: number of shards (8 = the default on a big machine; 1 with 2 threads
// shows contention on one shard, which falls back to the overflow buffer).
void BM_Record(benchmark::State& state) {
  // One recorder shared by the benchmark's threads (Threads(2): two engine
  // threads recording at once); function statics are initialised thread-safely.
  static auto eight = make_recorder(8, false);
  static auto one = make_recorder(1, false);
  const int32_t shards = static_cast<int32_t>(state.range(0));
  run_record(state, shards == 1 ? *one : *eight);
  state.SetLabel("58 layers x 256 experts, 256 tokens x top-8 per call, " + std::to_string(shards) + " shards");
}
BENCHMARK(BM_Record)->Arg(8)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Record)->Arg(1)->Threads(2)->UseRealTime();

void BM_RecordWeighted(benchmark::State& state) {
  static auto r = make_recorder(8, true);
  const auto batches = make_batches(7);
  std::vector<float> weights(static_cast<size_t>(kTokens * kTopK), 0.125f);
  size_t i = 0;
  int32_t layer = 0;
  for (auto _ : state) {
    r->record(layer, batches[i], weights);
    if (++i == batches.size()) i = 0;
    if (++layer == kLayers) layer = 0;
  }
  state.SetItemsProcessed(state.iterations() * kTokens * kTopK);
  state.SetLabel("gate weights summed too");
}
BENCHMARK(BM_RecordWeighted);

// Every shard reserved: the overflow buffer (relaxed atomic additions), the
// path taken when more threads record at once than there are shards.
void BM_RecordOverflowPath(benchmark::State& state) {
  auto r = make_recorder(2, false);
  omni::ActivationRecorderTestPeer::set_all_shards_busy(*r, true);
  run_record(state, *r);
  state.SetLabel("all shards busy: relaxed atomic adds");
}
BENCHMARK(BM_RecordOverflowPath);

// take_window at 58 x 256: Arg = shards written in the window (each written
// shard's whole [58, 256] buffer is summed and cleared; unwritten ones are skipped).
void BM_TakeWindow(benchmark::State& state) {
  const int32_t touched = static_cast<int32_t>(state.range(0));
  auto r = make_recorder(8, false);
  const std::vector<int32_t> one = {3};
  for (auto _ : state) {
    // Mark `touched` shards as written (one id each; negligible next to the take).
    for (int32_t s = 0; s < touched; ++s) omni::ActivationRecorderTestPeer::record_on_shard(*r, s, 0, one);
    benchmark::DoNotOptimize(r->take_window());
  }
  state.SetLabel("58 layers x 256 experts, " + std::to_string(touched) + " shards written");
}
BENCHMARK(BM_TakeWindow)->Arg(0)->Arg(1)->Arg(2)->Arg(8)->Unit(benchmark::kMicrosecond);

}  // namespace
