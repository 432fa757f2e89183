// omniplace_plan_eval checksums: one line per (workload, planner spec, mode)
// with the plan's Placement::checksum() and the planner's deterministic
// statistics, so that a behaviour-neutral change of the planners can be
// checked bit for bit (run before and after, diff the outputs).
#include "plan_eval/checksums.h"

#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <string>
#include <vector>

#include "omniplacement/core/core.h"
#include "omniplacement/planner/omni_planner.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/planner/redundancy_budget.h"
#include "omniplacement/sim/workload.h"
#include "plan_eval/workloads.h"

namespace omni::plan_eval {

namespace {

struct Case {
  std::string name;
  std::vector<LoadMatrix> windows;  // oldest first; the last is the load planned on
  int32_t num_ranks;
  int32_t slots_per_rank;
  int32_t ranks_per_host;
  int32_t num_groups;
};

// Co-activation [L, E, E] derived deterministically from the load (for
// omni(locality=coactivation)): independent pairs plus a block structure.
std::vector<double> synthetic_coactivation(const LoadMatrix& load) {
  const int32_t L = load.num_layers(), E = load.num_experts();
  std::vector<double> c(static_cast<size_t>(L) * static_cast<size_t>(E) * static_cast<size_t>(E), 0.0);
  for (LayerId l = 0; l < L; ++l) {
    const auto w = load.row(l);
    const double total = load.layer_total(l);
    for (int32_t a = 0; a < E; ++a)
      for (int32_t b = 0; b < E; ++b) {
        if (a == b) continue;
        double v = total > 0 ? w[static_cast<size_t>(a)] * w[static_cast<size_t>(b)] / total : 0.0;
        if ((a / 4) == (b / 4)) v *= 3.0;
        c[(static_cast<size_t>(l) * static_cast<size_t>(E) + static_cast<size_t>(a)) * static_cast<size_t>(E) +
          static_cast<size_t>(b)] = v;
      }
  }
  return c;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  {
    auto qwen = qwen_trace_windows();
    if (!qwen.ok()) {
      std::fprintf(stderr, "checksums: %s\n", qwen.status().to_string().c_str());
      std::exit(1);
    }
    // Windows 17..22: the bookcorpus -> wikitext shift in the middle.
    std::vector<LoadMatrix> w(qwen->begin() + 17, qwen->begin() + 23);
    out.push_back({"qwen_12r_6s", std::move(w), 12, 6, 4, 1});
  }
  auto synthetic = [&](const std::string& name, int32_t L, int32_t E, int32_t R, int32_t S, int32_t rph, int32_t groups,
                       sim::SkewKind skew, double skew_param) {
    sim::WorkloadParams p;
    p.num_layers = L;
    p.num_experts = E;
    p.top_k = 8;
    p.tokens_per_step = 128 * R;
    p.skew = skew;
    p.skew_param = skew_param;
    p.drift_rate = 0.002;
    p.phase_period = 250;
    p.phase_fraction = 0.3;
    p.burst_prob = 0.001;
    p.seed = 7;
    auto gen = sim::SyntheticWorkload::create(p);
    if (!gen.ok()) std::exit(1);
    std::vector<LoadMatrix> w;
    for (int k = 0; k < 6; ++k) {
      LoadMatrix m;
      if (!gen->next_window(50, &m).ok()) std::exit(1);
      w.push_back(std::move(m));
    }
    out.push_back({name, std::move(w), R, S, rph, groups});
  };
  synthetic("zipf_24x64_8r_9s", 24, 64, 8, 9, 4, 8, sim::SkewKind::kZipf, 0.9);
  synthetic("lognormal_58x256_64r_5s", 58, 256, 64, 5, 8, 8, sim::SkewKind::kLognormal, 1.0);
  return out;
}

void line(const std::string& what, const StatusOr<PlanResult>& r) {
  if (!r.ok()) {
    std::printf("%s error %s\n", what.c_str(), r.status().to_string().c_str());
    return;
  }
  std::printf("%s %016" PRIx64 " moves=%" PRId64 " changed=%" PRId64 " dups=%" PRId64 "\n", what.c_str(),
              r->placement.checksum(), r->stats.local_search_moves, r->stats.slots_changed,
              r->stats.same_rank_duplicates);
}

}  // namespace

int run_checksums() {
  const std::vector<std::string> scratch_specs = {
      "omni",
      "omni(shares=true)",
      "omni(locality=groups)",
      "omni(locality=spread)",
      "omni(locality=coactivation)",
      "omni(spread_hosts=true,protect=0.5)",
      "omni(max_replicas_per_expert=2)",
      "omni(reallocate=false)",
      "omni(forecast=false)",
      "eplb",
  };
  const std::vector<std::string> incremental_specs = {
      "omni",
      "omni(max_moves_per_rank=1)",
      "omni(forecast=false)",
      "omni(forecast=false,max_moves_per_rank=1)",
      "omni(forecast=false,max_moves_per_rank=2)",
      "omni(locality=spread,max_moves_per_rank=2)",
      "omni(spread_hosts=true,protect=0.3,max_moves_per_rank=2)",
  };
  for (const Case& c : cases()) {
    const LoadMatrix& load = c.windows.back();
    auto topo = Topology::uniform(c.num_ranks, c.ranks_per_host);
    if (!topo.ok()) return 1;
    const std::vector<double> coact = synthetic_coactivation(load);
    PlanInput in;
    in.load = &load;
    in.num_ranks = c.num_ranks;
    in.slots_per_rank = {c.slots_per_rank};
    in.topology = &*topo;
    in.num_groups = c.num_groups;
    in.coactivation = &coact;
    for (const std::string& spec : scratch_specs) {
      auto p = make_planner(spec);
      if (!p.ok()) {
        std::printf("%s %s error %s\n", c.name.c_str(), spec.c_str(), p.status().to_string().c_str());
        continue;
      }
      line(c.name + " scratch " + spec, (*p)->plan(in));
    }
    // Incremental: the placement in force is eplb's plan of the oldest window.
    PlanInput first = in;
    first.load = &c.windows.front();
    auto eplb = make_planner("eplb");
    auto cur = (*eplb)->plan(first);
    if (!cur.ok()) return 1;
    PlanInput inc = in;
    inc.current = &cur->placement;
    inc.samples = &c.windows;
    for (const std::string& spec : incremental_specs) {
      auto p = make_planner(spec);
      if (!p.ok()) {
        std::printf("%s %s error %s\n", c.name.c_str(), spec.c_str(), p.status().to_string().c_str());
        continue;
      }
      line(c.name + " incremental " + spec, (*p)->plan(inc));
    }
    // omni_plan_layer and optimal_shares directly.
    uint64_t h = 1469598103934665603ULL;
    auto mix = [&](uint64_t v) {
      for (int b = 0; b < 8; ++b) {
        h ^= (v >> (8 * b)) & 0xff;
        h *= 1099511628211ULL;
      }
    };
    OmniOptions opt;
    for (LayerId l = 0; l < load.num_layers(); ++l) {
      const auto row = omni_plan_layer(load.row(l), c.num_ranks, c.slots_per_rank, opt);
      for (ExpertId e : row) mix(static_cast<uint64_t>(static_cast<int64_t>(e)));
      for (double s : optimal_shares(load.row(l), row, c.num_ranks)) {
        uint64_t bits;
        std::memcpy(&bits, &s, sizeof bits);
        mix(bits);
      }
    }
    std::printf("%s omni_plan_layer+optimal_shares %016" PRIx64 "\n", c.name.c_str(), h);
    // Layer-wise redundancy budget (plans every layer with omni at several sizes).
    auto omni = make_planner("omni");
    const int32_t base = (load.num_experts() + c.num_ranks - 1) / c.num_ranks;
    auto alloc = allocate_redundancy(load, c.num_ranks, static_cast<int64_t>(load.num_layers()) * (c.slots_per_rank - base),
                                     **omni, BudgetRule::kOptimal);
    if (alloc.ok()) {
      std::printf("%s redundancy_budget", c.name.c_str());
      for (int32_t k : alloc->redundant_per_rank) std::printf(" %d", k);
      std::printf("\n");
    } else {
      std::printf("%s redundancy_budget error %s\n", c.name.c_str(), alloc.status().to_string().c_str());
    }
  }
  return 0;
}

}  // namespace omni::plan_eval
