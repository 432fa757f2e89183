// Planner speed (DeepSeek-V3 scale) and balance on real and synthetic loads.
//
// Speed:   BM_Plan/<planner>/<workload>   wall time of one plan() call, one thread.
// Balance: BM_Balance/<workload>/<planner> counters, one plan per iteration:
//   max_over_mean  mean over layers of max / mean rank load (1.0 is perfect)
//   bound          mean over layers of lower bound / mean (ANCHORS.md §6)
//   excess         mean over layers of (max - bound) / mean
//   even_*         the same with every expert's load split evenly (differs with shares)
//   dups           same-rank duplicate replicas in the plan
//   cross_host     fraction of dispatched tokens crossing hosts (core's dispatch_traffic)
//
// The trace CSVs are parsed here with a minimal reader until the io module's
// readers are used (see docs/BENCHMARKS.md, "Planners").
#include <benchmark/benchmark.h>

#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>

#include "omniplacement/core/core.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/planner/redundancy_budget.h"

namespace {

// Rows of a trace CSV whose key columns match, as a [rows, experts] load matrix.
// key_cols: number of leading non-count columns; select(row fields) picks rows.
template <typename Select>
omni::LoadMatrix read_trace(const std::string& file, int key_cols, Select select) {
  std::ifstream in(std::string(OMNI_SOURCE_DIR) + "/data/traces/" + file);
  std::string line;
  std::getline(in, line);  // header
  std::vector<int64_t> counts;
  int32_t rows = 0, experts = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) f.push_back(cell);
    if (static_cast<int>(f.size()) <= key_cols || !select(f)) continue;
    experts = static_cast<int32_t>(f.size()) - key_cols;
    for (size_t i = static_cast<size_t>(key_cols); i < f.size(); ++i) counts.push_back(std::stoll(f[i]));
    ++rows;
  }
  auto m = omni::LoadMatrix::from_counts(rows, experts, std::move(counts));
  if (!m.ok()) std::abort();
  return *m;
}

omni::LoadMatrix lognormal(int32_t L, int32_t E, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> d(0.0, 1.0);
  std::vector<int64_t> c(static_cast<size_t>(L) * static_cast<size_t>(E));
  for (auto& v : c) v = static_cast<int64_t>(d(rng) * 1000.0);
  return *omni::LoadMatrix::from_counts(L, E, std::move(c));
}

struct Workload {
  std::string name;
  omni::LoadMatrix load;
  int32_t num_ranks;
  int64_t num_replicas;
  int32_t num_nodes;
  int32_t num_groups;
};

const std::vector<Workload>& workloads() {
  static const std::vector<Workload> w = [] {
    std::vector<Workload> v;
    // OLMoE: 6 domains x 3 layers, each (domain, layer) planned on its own.
    v.push_back({"olmoe_16r_80s", read_trace("olmoe_expert_counts.csv", 3, [](auto&) { return true; }), 16, 80, 1, 1});
    // Qwen1.5-MoE iteration 0 of three real corpora, 12 layers each.
    auto qwen_it0 = [](const std::vector<std::string>& f) {
      return f[2] == "0" && (f[1] == "bookcorpus" || f[1] == "wikitext" || f[1] == "wmt19");
    };
    const omni::LoadMatrix qwen = read_trace("qwen15moe_expert_freq_by_iteration.csv", 4, qwen_it0);
    v.push_back({"qwen_it0_12r_72s", qwen, 12, 72, 1, 1});
    v.push_back({"qwen_it0_12r_60s_rearrange", qwen, 12, 60, 1, 1});
    v.push_back({"lognormal_58x256_64r_320s", lognormal(58, 256, 2026), 64, 320, 1, 1});
    v.push_back({"lognormal_58x256_32r_4h_288s_8g", lognormal(58, 256, 2027), 32, 288, 4, 8});
    return v;
  }();
  return w;
}

omni::PlanInput input_of(const Workload& w) {
  omni::PlanInput in;
  in.load = &w.load;
  in.num_ranks = w.num_ranks;
  in.num_replicas = w.num_replicas;
  in.num_nodes = w.num_nodes;
  in.num_groups = w.num_groups;
  return in;
}

void BM_Plan(benchmark::State& state, std::string spec, size_t workload) {
  const Workload& w = workloads()[workload];
  auto planner = omni::make_planner(spec);
  if (!planner.ok()) return state.SkipWithError(planner.status().to_string().c_str());
  const omni::PlanInput in = input_of(w);
  for (auto _ : state) {
    auto r = (*planner)->plan(in);
    if (!r.ok()) return state.SkipWithError(r.status().to_string().c_str());
    benchmark::DoNotOptimize(r);
  }
  state.SetLabel(w.name);
}

void BM_Balance(benchmark::State& state, std::string spec, size_t workload) {
  const Workload& w = workloads()[workload];
  auto planner = omni::make_planner(spec);
  if (!planner.ok()) return state.SkipWithError(planner.status().to_string().c_str());
  const omni::PlanInput in = input_of(w);
  omni::StatusOr<omni::PlanResult> r = omni::internal_error("not run");
  for (auto _ : state) r = (*planner)->plan(in);
  if (!r.ok()) return state.SkipWithError(r.status().to_string().c_str());
  auto b = omni::placement_balance(r->placement, w.load, omni::SplitMode::kShares);
  auto even = omni::placement_balance(r->placement, w.load, omni::SplitMode::kEven);
  double bound = 0;
  for (const auto& l : b->layers) bound += l.bound_over_mean;
  state.counters["max_over_mean"] = b->mean_max_over_mean;
  state.counters["bound"] = bound / static_cast<double>(b->layers.size());
  state.counters["excess"] = b->mean_excess;
  state.counters["even_max_over_mean"] = even->mean_max_over_mean;
  state.counters["even_excess"] = even->mean_excess;
  state.counters["sum_max"] = b->sum_max;
  state.counters["dups"] = static_cast<double>(r->stats.same_rank_duplicates);
  if (w.num_nodes > 1) {
    auto topo = omni::Topology::uniform(w.num_ranks, w.num_ranks / w.num_nodes);
    auto t = omni::dispatch_traffic(r->placement, w.load, *topo);
    state.counters["cross_host"] = t->cross_host;
  }
  state.SetLabel(w.name);
}

// Layer-wise budget on the Qwen traces: B redundant slots per rank over all
// layers, split by each rule; sum_max is the sum over layers of max rank load.
void BM_Budget(benchmark::State& state, omni::BudgetRule rule, int64_t budget) {
  const Workload& w = workloads()[1];
  auto planner = omni::make_planner("omni");
  omni::StatusOr<omni::BudgetAllocation> a = omni::internal_error("not run");
  for (auto _ : state) a = omni::allocate_redundancy(w.load, w.num_ranks, budget, **planner, rule);
  if (!a.ok()) return state.SkipWithError(a.status().to_string().c_str());
  state.counters["sum_max"] = a->sum_max;
  state.SetLabel(w.name + " budget " + std::to_string(budget));
}

// Registered at start-up: every planner on every workload.
const bool kRegistered = [] {
  const std::vector<std::string> timed = {"eplb", "omni"};
  // Index 3: DeepSeek-V3 scale, 64 ranks, 320 slots; index 4: 32 ranks on 4 hosts.
  for (size_t wi : {size_t{3}, size_t{4}})
    for (const std::string& spec : timed) {
      benchmark::RegisterBenchmark(("BM_Plan/" + spec + "/" + workloads()[wi].name).c_str(), BM_Plan, spec, wi)
          ->Unit(benchmark::kMillisecond);
    }
  benchmark::RegisterBenchmark("BM_Plan/omni(shares=true)/lognormal_58x256_64r_320s", BM_Plan,
                               std::string("omni(shares=true)"), size_t{3})
      ->Unit(benchmark::kMillisecond);
  const std::vector<std::string> compared = {"contiguous", "eplb", "omni", "omni(shares=true)"};
  for (size_t wi = 0; wi < workloads().size(); ++wi) {
    std::vector<std::string> specs = compared;
    if (workloads()[wi].num_nodes > 1) {
      specs.push_back("omni(locality=groups)");
      specs.push_back("omni(locality=spread)");
    }
    for (const std::string& spec : specs) {
      benchmark::RegisterBenchmark(("BM_Balance/" + workloads()[wi].name + "/" + spec).c_str(), BM_Balance, spec, wi)
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
    }
  }
  for (int64_t budget : {12, 36}) {
    for (omni::BudgetRule rule : {omni::BudgetRule::kOptimal, omni::BudgetRule::kUniform, omni::BudgetRule::kHeaviestLayers}) {
      benchmark::RegisterBenchmark(("BM_Budget/" + std::string(omni::budget_rule_name(rule)) + "/" + std::to_string(budget)).c_str(),
                                   BM_Budget, rule, budget)
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
    }
  }
  return true;
}();

}  // namespace
