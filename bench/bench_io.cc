// io module: reading and writing DeepSeek-V3-sized placements (58 layers x 256
// experts) and loads, from memory (no disk I/O in the timed loop).
#include <benchmark/benchmark.h>

#include <fstream>
#include <iterator>
#include <string>

#include "omniplacement/io/load_file.h"
#include "omniplacement/io/pattern.h"
#include "omniplacement/io/placement_file.h"
#include "omniplacement/io/trace.h"

namespace {

std::string slurp(const std::string& rel) {
  std::ifstream in(std::string(OMNI_SOURCE_DIR) + "/data/" + rel, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The GSM8K decode pattern: int32 [32, 58, 256], 8-9 slots per rank (1.9 MB).
const std::string& gsm_npy() {
  static const std::string s =
      slurp("patterns/DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy");
  return s;
}

void BM_PatternNpyToPlacement(benchmark::State& state) {
  for (auto _ : state) {
    auto t = omni::parse_pattern(gsm_npy(), omni::PatternFormat::kNpy);
    benchmark::DoNotOptimize(omni::placement_from_pattern(*t));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(gsm_npy().size()));
  state.SetLabel("GSM8K decode pattern, int32 [32, 58, 256]");
}
BENCHMARK(BM_PatternNpyToPlacement)->Unit(benchmark::kMillisecond);

void BM_PlacementToPatternNpy(benchmark::State& state) {
  auto p = omni::placement_from_pattern(*omni::parse_pattern(gsm_npy(), omni::PatternFormat::kNpy));
  for (auto _ : state) {
    auto t = omni::pattern_from_placement(*p);
    benchmark::DoNotOptimize(omni::encode_pattern(*t, omni::PatternFormat::kNpy));
  }
  state.SetLabel("GSM8K decode pattern -> int32 .npy");
}
BENCHMARK(BM_PlacementToPatternNpy)->Unit(benchmark::kMillisecond);

void BM_PlacementJsonEncode(benchmark::State& state) {
  omni::PlacementFile f;
  f.placement = *omni::placement_from_pattern(*omni::parse_pattern(gsm_npy(), omni::PatternFormat::kNpy));
  for (auto _ : state) benchmark::DoNotOptimize(omni::encode_placement_json(f));
  state.SetLabel("58 layers, 32 ranks, 8-9 slots per rank");
}
BENCHMARK(BM_PlacementJsonEncode)->Unit(benchmark::kMillisecond);

void BM_PlacementJsonParse(benchmark::State& state) {
  omni::PlacementFile f;
  f.placement = *omni::placement_from_pattern(*omni::parse_pattern(gsm_npy(), omni::PatternFormat::kNpy));
  const std::string text = *omni::encode_placement_json(f);
  for (auto _ : state) benchmark::DoNotOptimize(omni::parse_placement_json(text));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
  state.SetLabel("58 layers, 32 ranks, 8-9 slots per rank");
}
BENCHMARK(BM_PlacementJsonParse)->Unit(benchmark::kMillisecond);

void BM_PatternTextToPlacement(benchmark::State& state) {
  static const std::string txt = slurp("patterns/placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.txt");
  for (auto _ : state) {
    auto t = omni::parse_pattern(txt, omni::PatternFormat::kText);
    benchmark::DoNotOptimize(omni::placement_from_pattern(*t));
  }
  state.SetLabel("[4, 58, 64] .txt pattern");
}
BENCHMARK(BM_PatternTextToPlacement)->Unit(benchmark::kMillisecond);

void BM_QwenTraceParse(benchmark::State& state) {
  static const std::string csv = slurp("traces/qwen15moe_expert_freq_by_iteration.csv");
  for (auto _ : state) benchmark::DoNotOptimize(omni::Trace::parse_csv(csv));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(csv.size()));
  state.SetLabel("80 windows of 12 x 60, 252 KB");
}
BENCHMARK(BM_QwenTraceParse)->Unit(benchmark::kMillisecond);

}  // namespace
