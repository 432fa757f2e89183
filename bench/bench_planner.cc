// Planner speed (DeepSeek-V3 scale) and balance on real and synthetic loads.
//
// Speed:   BM_Plan/<planner>/<workload>   wall time of one plan() call, one thread.
// Balance: BM_Balance/<workload>/<planner> counters, one plan per iteration:
//   max_over_mean  mean over layers of max / mean rank load (1.0 is perfect)
//   bound          mean over layers of lower bound / mean (docs/REFERENCES.md §6)
//   excess         mean over layers of (max - bound) / mean
//   even_*         the same with every expert's load split evenly (differs with shares)
//   dups           same-rank duplicate replicas in the plan
//   cross_host     fraction of dispatched tokens crossing hosts (core's dispatch_traffic)
// Co-activation: BM_Coactivation/<planner> on a seeded synthetic per-token
//   routing (hidden clusters of co-chosen experts), 32 ranks on 4 hosts:
//   cross_host (dispatch_traffic) and remote_hosts (mean number of other hosts
//   a token is sent to when each of its experts is served by the nearest replica).
// Failure coverage: BM_Coverage/<workload>/<planner>: core/coverage.h shares of
//   experts and load that survive any single rank / host failure.
//
// The trace CSVs are parsed here with a minimal reader until the io module's
// readers are used (see docs/BENCHMARKS.md, "Planners").
#include <benchmark/benchmark.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <string>

#include "omniplacement/core/core.h"
#include "omniplacement/core/coverage.h"
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

// A synthetic per-token routing with co-activation structure: each layer's
// experts fall into hidden clusters (a seeded random partition, unrelated to
// expert ids, so id-contiguous expert groups do not capture them); a token
// picks a cluster by popularity and takes `in_cluster` of its top-k there, the
// rest anywhere, experts weighted by a lognormal(0, 1) popularity.
struct TokenRouting {
  omni::LoadMatrix load;
  std::vector<double> coactivation;                 // [L, E, E], tokens routed to both
  std::vector<std::vector<std::vector<int32_t>>> tokens;  // [L][token][top_k]
};

const TokenRouting& coactivation_workload() {
  static const TokenRouting t = [] {
    constexpr int32_t L = 4, E = 256, kTopK = 8, kClusters = 16, kInCluster = 6, kTokens = 4096;
    std::mt19937_64 rng(4242);
    TokenRouting out;
    out.tokens.resize(L);
    out.coactivation.assign(static_cast<size_t>(L) * E * E, 0.0);
    std::vector<int64_t> counts(static_cast<size_t>(L) * E, 0);
    std::lognormal_distribution<double> pop(0.0, 1.0);
    for (int32_t l = 0; l < L; ++l) {
      std::vector<int32_t> perm(E);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      std::vector<double> w(E);
      for (auto& v : w) v = pop(rng);
      std::vector<double> cluster_w(kClusters, 0.0);
      for (int32_t i = 0; i < E; ++i) cluster_w[static_cast<size_t>(i % kClusters)] += w[static_cast<size_t>(perm[static_cast<size_t>(i)])];
      std::discrete_distribution<int32_t> pick_cluster(cluster_w.begin(), cluster_w.end());
      for (int32_t tk = 0; tk < kTokens; ++tk) {
        const int32_t c = pick_cluster(rng);
        std::vector<double> wc(E, 0.0), wr = w;
        for (int32_t i = c; i < E; i += kClusters) wc[static_cast<size_t>(perm[static_cast<size_t>(i)])] = w[static_cast<size_t>(perm[static_cast<size_t>(i)])];
        std::vector<int32_t> chosen;
        for (int32_t k = 0; k < kTopK; ++k) {
          auto& weights = k < kInCluster ? wc : wr;
          std::discrete_distribution<int32_t> d(weights.begin(), weights.end());
          const int32_t e = d(rng);
          chosen.push_back(e);
          wc[static_cast<size_t>(e)] = 0;  // a token picks an expert at most once
          wr[static_cast<size_t>(e)] = 0;
        }
        for (int32_t a : chosen) {
          ++counts[static_cast<size_t>(l) * E + static_cast<size_t>(a)];
          for (int32_t b : chosen)
            if (a != b) out.coactivation[(static_cast<size_t>(l) * E + static_cast<size_t>(a)) * E + static_cast<size_t>(b)] += 1;
        }
        out.tokens[static_cast<size_t>(l)].push_back(std::move(chosen));
      }
    }
    out.load = *omni::LoadMatrix::from_counts(L, E, std::move(counts));
    return out;
  }();
  return t;
}

// Mean number of hosts other than its own that a token is sent to. Token t
// starts on rank t % R; each expert goes to a replica on that rank, else on its
// host, else on a host the token already visits, else its first replica's host.
double remote_hosts_per_token(const omni::Placement& p, const TokenRouting& t, const omni::Topology& topo) {
  int64_t total = 0, n = 0;
  for (omni::LayerId l = 0; l < p.num_layers(); ++l) {
    const auto& toks = t.tokens[static_cast<size_t>(l)];
    for (size_t i = 0; i < toks.size(); ++i) {
      const omni::RankId origin = static_cast<omni::RankId>(i % static_cast<size_t>(p.num_ranks()));
      const omni::HostId home = topo.host_of(origin);
      std::vector<omni::HostId> visited;
      for (int32_t e : toks[i]) {
        bool local = false;
        std::vector<omni::HostId> hosts;
        for (omni::GlobalSlot g : p.replicas(l, e)) {
          const omni::HostId h = topo.host_of(p.rank_of(l, g));
          local |= h == home;
          hosts.push_back(h);
        }
        if (local) continue;
        bool reused = false;
        for (omni::HostId h : hosts) reused |= std::find(visited.begin(), visited.end(), h) != visited.end();
        if (!reused) visited.push_back(hosts.front());
      }
      total += static_cast<int64_t>(visited.size());
      ++n;
    }
  }
  return n ? static_cast<double>(total) / static_cast<double>(n) : 0.0;
}

void BM_Coactivation(benchmark::State& state, std::string spec) {
  const TokenRouting& t = coactivation_workload();
  auto planner = omni::make_planner(spec);
  if (!planner.ok()) return state.SkipWithError(planner.status().to_string().c_str());
  auto topo = omni::Topology::uniform(32, 8);
  omni::PlanInput in;
  in.load = &t.load;
  in.num_ranks = 32;
  in.num_replicas = 288;
  in.num_nodes = 4;
  in.num_groups = 8;
  in.topology = &*topo;
  in.coactivation = &t.coactivation;
  omni::StatusOr<omni::PlanResult> r = omni::internal_error("not run");
  for (auto _ : state) r = (*planner)->plan(in);
  if (!r.ok()) return state.SkipWithError(r.status().to_string().c_str());
  auto b = omni::placement_balance(r->placement, t.load);
  auto x = omni::dispatch_traffic(r->placement, t.load, *topo);
  state.counters["max_over_mean"] = b->mean_max_over_mean;
  state.counters["cross_host"] = x->cross_host;
  state.counters["remote_hosts"] = remote_hosts_per_token(r->placement, t, *topo);
  state.SetLabel("synthetic clusters 4x256 top-8, 32 ranks / 4 hosts, 288 slots");
}

// Coverage on the shipped traces with hosts: what survives any single rank / host failure.
void BM_Coverage(benchmark::State& state, std::string spec, size_t workload, int32_t ranks_per_host) {
  const Workload& w = workloads()[workload];
  auto planner = omni::make_planner(spec);
  if (!planner.ok()) return state.SkipWithError(planner.status().to_string().c_str());
  auto topo = omni::Topology::uniform(w.num_ranks, ranks_per_host);
  omni::PlanInput in = input_of(w);
  in.num_nodes = topo->num_hosts();
  in.topology = &*topo;
  omni::StatusOr<omni::PlanResult> r = omni::internal_error("not run");
  for (auto _ : state) r = (*planner)->plan(in);
  if (!r.ok()) return state.SkipWithError(r.status().to_string().c_str());
  auto b = omni::placement_balance(r->placement, w.load);
  auto c = omni::failure_coverage(r->placement, *topo, &w.load);
  state.counters["max_over_mean"] = b->mean_max_over_mean;
  state.counters["rank_experts"] = c->rank.expert_share;
  state.counters["rank_load"] = c->rank.load_share;
  state.counters["host_experts"] = c->host.expert_share;
  state.counters["host_load"] = c->host.load_share;
  state.counters["dups"] = static_cast<double>(r->stats.same_rank_duplicates);
  state.SetLabel(w.name + " on " + topo->to_string());
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

// A re-plan from the placement in force (eplb's plan of the oldest window) on
// six recent windows (PlanInput::samples), under the dispatch given. Qwen:
// bookcorpus iterations 0-5, 12 ranks, 72 slots. DeepSeek-V3 scale: six
// noisy copies of the lognormal workload, 64 ranks, 320 slots.
void BM_PlanInterval(benchmark::State& state, std::string spec, bool deepseek, omni::DispatchMode dispatch) {
  std::vector<omni::LoadMatrix> samples;
  if (deepseek) {
    const omni::LoadMatrix base = workloads()[3].load;
    std::mt19937_64 rng(7);
    std::lognormal_distribution<double> noise(0.0, 0.2);
    for (int k = 0; k < 6; ++k) {
      std::vector<int64_t> c(base.values().size());
      for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<int64_t>(base.values()[i] * noise(rng));
      samples.push_back(*omni::LoadMatrix::from_counts(base.num_layers(), base.num_experts(), std::move(c)));
    }
  } else {
    for (int it = 0; it < 6; ++it) {
      const std::string iteration = std::to_string(it);
      samples.push_back(read_trace("qwen15moe_expert_freq_by_iteration.csv", 4, [&](const std::vector<std::string>& f) {
        return f[1] == "bookcorpus" && f[2] == iteration;
      }));
    }
  }
  auto planner = omni::make_planner(spec);
  if (!planner.ok()) return state.SkipWithError(planner.status().to_string().c_str());
  omni::PlanInput in;
  in.load = &samples.back();
  in.num_ranks = deepseek ? 64 : 12;
  in.num_replicas = deepseek ? 320 : 72;
  omni::PlanInput first = in;
  first.load = &samples.front();
  auto eplb = omni::make_planner("eplb");
  auto current = (*eplb)->plan(first);
  if (!current.ok()) return state.SkipWithError(current.status().to_string().c_str());
  in.current = &current->placement;
  in.samples = &samples;
  in.serving.dispatch = dispatch;
  for (auto _ : state) {
    auto r = (*planner)->plan(in);
    if (!r.ok()) return state.SkipWithError(r.status().to_string().c_str());
    benchmark::DoNotOptimize(r);
  }
  state.SetLabel(std::string(deepseek ? "lognormal_58x256_64r_320s" : "qwen bookcorpus 0-5, 12r_72s") +
                 ", 6 samples, from eplb's plan, dispatch " +
                 (dispatch == omni::DispatchMode::kPerBatch ? "per-batch" : "shares"));
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
  for (bool deepseek : {false, true})
    for (omni::DispatchMode d : {omni::DispatchMode::kShares, omni::DispatchMode::kPerBatch})
      benchmark::RegisterBenchmark((std::string("BM_PlanInterval/omni/") + (deepseek ? "deepseek" : "qwen") + "/" +
                                    (d == omni::DispatchMode::kPerBatch ? "per-batch" : "shares"))
                                       .c_str(),
                                   BM_PlanInterval, std::string("omni"), deepseek, d)
          ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_Plan/omni(shares=true)/lognormal_58x256_64r_320s", BM_Plan,
                               std::string("omni(shares=true)"), size_t{3})
      ->Unit(benchmark::kMillisecond);
  // Failure-aware options on the workload with hosts.
  for (const std::string spec : {"omni(spread_hosts=true)", "omni(spread_hosts=true,protect=0.5)"})
    benchmark::RegisterBenchmark(("BM_Plan/" + spec + "/" + workloads()[4].name).c_str(), BM_Plan, spec, size_t{4})
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
  for (const std::string spec : {"omni", "omni(locality=coactivation)", "omni(locality=coactivation,locality_slack=0.1)",
                                 "omni(locality=coactivation,locality_slack=0.25)", "omni(locality=groups)",
                                 "omni(locality=groups,locality_slack=0.25)", "omni(locality=spread)",
                                 "eplb(hierarchical)", "eplb(global)"}) {
    benchmark::RegisterBenchmark(("BM_Coactivation/" + spec).c_str(), BM_Coactivation, spec)
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  // Qwen (index 1): 12 ranks on 3 hosts; OLMoE (index 0): 16 ranks on 4 hosts.
  for (auto [wi, per_host] : {std::pair<size_t, int32_t>{1, 4}, std::pair<size_t, int32_t>{0, 4}})
    for (const std::string spec : {"eplb", "omni", "omni(spread_hosts=true)", "omni(protect=0.5)",
                                    "omni(spread_hosts=true,protect=0.5)"}) {
      benchmark::RegisterBenchmark(("BM_Coverage/" + workloads()[wi].name + "/" + spec).c_str(), BM_Coverage, spec, wi,
                                   per_host)
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
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
