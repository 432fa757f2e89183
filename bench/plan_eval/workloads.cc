#include "plan_eval/workloads.h"

#include <string>

#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/trace.h"
#include "demo/routing_workload.h"
#include "omniplacement/sim/workload.h"

namespace omni::plan_eval {

namespace {

StepCounts to_step(const LoadMatrix& m) {
  StepCounts s(static_cast<size_t>(m.num_layers()) * static_cast<size_t>(m.num_experts()));
  const auto v = m.values();
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<int32_t>(v[i]);
  return s;
}

StatusOr<LoadMatrix> sum_of(const std::vector<StepCounts>& steps, int32_t L, int32_t E) {
  std::vector<int64_t> c(static_cast<size_t>(L) * static_cast<size_t>(E), 0);
  for (const StepCounts& s : steps)
    for (size_t i = 0; i < c.size(); ++i) c[i] += s[i];
  return LoadMatrix::from_counts(L, E, std::move(c));
}

// A synthetic workload: `windows` windows of `steps_per_window` steps.
StatusOr<EvalWorkload> synthetic(std::string name, std::string description, const sim::WorkloadParams& p,
                                 int32_t windows, int64_t steps_per_window, int32_t R, int32_t S, int32_t rph,
                                 int32_t groups, bool held_out) {
  OMNI_ASSIGN_OR_RETURN(sim::SyntheticWorkload gen, sim::SyntheticWorkload::create(p));
  EvalWorkload w;
  w.name = std::move(name);
  w.description = std::move(description);
  w.held_out = held_out;
  w.num_ranks = R;
  w.slots_per_rank = S;
  w.ranks_per_host = rph;
  w.num_groups = groups;
  w.serving.window_steps = steps_per_window;
  w.serving.interval_steps = steps_per_window;
  LoadMatrix step;
  for (int32_t t = 0; t < windows; ++t) {
    std::vector<StepCounts> steps;
    for (int64_t s = 0; s < steps_per_window; ++s) {
      OMNI_RETURN_IF_ERROR(gen.next(&step));
      steps.push_back(to_step(step));
    }
    OMNI_ASSIGN_OR_RETURN(LoadMatrix sum, sum_of(steps, p.num_layers, p.num_experts));
    w.windows.push_back(std::move(sum));
    w.steps.push_back(std::move(steps));
  }
  return w;
}

}  // namespace

StatusOr<std::vector<LoadMatrix>> qwen_trace_windows() {
  OMNI_ASSIGN_OR_RETURN(Trace trace,
                        Trace::read_csv(std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv"));
  OMNI_ASSIGN_OR_RETURN(auto windows, trace.windows({"bookcorpus", "wikitext", "wmt19"}, 0, 19));
  std::vector<LoadMatrix> out;
  for (auto& w : windows) out.push_back(std::move(w.load));
  return out;
}

StatusOr<EvalWorkload> demo_workload() {
  OMNI_ASSIGN_OR_RETURN(std::vector<LoadMatrix> trace, qwen_trace_windows());
  const int32_t L = trace[0].num_layers(), E = trace[0].num_experts();
  const auto T = static_cast<int32_t>(trace.size());
  constexpr int32_t kRanks = 12, kSteps = 10, kTokens = 64, kTopK = 4;
  OMNI_ASSIGN_OR_RETURN(RoutingWorkload routing, RoutingWorkload::create(trace, kSteps, kTokens, kTopK, /*seed=*/1));
  EvalWorkload w;
  w.name = "demo";
  w.description = "omniplace demo defaults: Qwen1.5-MoE series drawn as tokens (10 steps x 12 ranks x 64 tokens x top-4 "
                  "per window), 12 ranks x 6 slots, 3 hosts of 4";
  w.num_ranks = kRanks;
  w.slots_per_rank = 6;
  w.ranks_per_host = 4;
  w.serving.window_steps = kSteps;
  w.serving.interval_steps = kSteps;
  std::vector<ExpertId> ids(static_cast<size_t>(routing.ids_per_step()));
  for (int32_t t = 0; t < T; ++t) {
    std::vector<StepCounts> steps;
    for (int32_t s = 0; s < kSteps; ++s) {
      StepCounts c(static_cast<size_t>(L) * static_cast<size_t>(E), 0);
      const int64_t step = static_cast<int64_t>(t) * kSteps + s;
      for (RankId r = 0; r < kRanks; ++r)
        for (LayerId l = 0; l < L; ++l) {
          routing.topk_ids(step, r, l, ids);
          for (ExpertId e : ids) ++c[static_cast<size_t>(l) * static_cast<size_t>(E) + static_cast<size_t>(e)];
        }
      steps.push_back(std::move(c));
    }
    OMNI_ASSIGN_OR_RETURN(LoadMatrix sum, sum_of(steps, L, E));
    w.windows.push_back(std::move(sum));
    w.steps.push_back(std::move(steps));
  }
  return w;
}

StatusOr<EvalWorkload> qwen_replay_workload() {
  EvalWorkload w;
  w.name = "qwen";
  w.description = "Qwen1.5-MoE trace windows (plan --current replay), 12 ranks x 6 slots, 3 hosts of 4";
  OMNI_ASSIGN_OR_RETURN(w.windows, qwen_trace_windows());
  w.num_ranks = 12;
  w.slots_per_rank = 6;
  w.ranks_per_host = 4;
  return w;
}

StatusOr<EvalWorkload> dsv3_drift_workload() {
  sim::WorkloadParams p;  // the simulator's DeepSeek-V3-like defaults: 58 x 256, top-8, 8192 tokens, Zipf 0.5
  p.phase_period = 550;     // drift: the default 0.0005
  p.phase_fraction = 0.25;
  p.seed = 3;
  return synthetic("dsv3", "DeepSeek-V3 size: 58 x 256, 64 ranks x 5 slots, 8 hosts, Zipf 0.5, drift 0.0005, "
                   "25% of experts reshuffled at step 550; 10 windows of 100 steps",
                   p, 10, 100, 64, 5, 8, 8, false);
}

StatusOr<std::vector<EvalWorkload>> held_out_workloads() {
  struct Shape {
    const char* name;
    int32_t L, E, R, S, rph, groups, top_k;
  };
  const Shape shapes[] = {{"61x256r64", 61, 256, 64, 5, 8, 8, 8},
                          {"48x128r16", 48, 128, 16, 9, 8, 1, 8},
                          {"24x64r8", 24, 64, 8, 9, 4, 1, 6}};
  struct Pattern {
    const char* name;
    double drift, burst_prob;
    int64_t phase_period;
  };
  const Pattern patterns[] = {{"drift", 0.003, 0.0, 0}, {"bursts", 0.001, 0.01, 0}, {"phase", 0.001, 0.0, 125}};
  std::vector<EvalWorkload> out;
  uint64_t seed = 101;
  for (const Shape& s : shapes)
    for (sim::SkewKind skew : {sim::SkewKind::kZipf, sim::SkewKind::kLognormal})
      for (const Pattern& pat : patterns) {
        sim::WorkloadParams p;
        p.num_layers = s.L;
        p.num_experts = s.E;
        p.top_k = s.top_k;
        p.tokens_per_step = int64_t{128} * s.R;
        p.skew = skew;
        p.skew_param = 0.8;
        p.drift_rate = pat.drift;
        p.burst_prob = pat.burst_prob;
        p.burst_factor = 5.0;
        p.burst_steps = 40;
        p.phase_period = pat.phase_period;
        p.phase_fraction = 0.5;
        p.seed = seed++;
        const std::string name = str_cat(s.name, "-", sim::skew_kind_name(skew), "-", pat.name);
        OMNI_ASSIGN_OR_RETURN(
            EvalWorkload w,
            synthetic(name,
                      str_cat(s.L, " x ", s.E, ", ", s.R, " ranks x ", s.S, " slots, ", sim::skew_kind_name(skew),
                              " 0.8, ", pat.name, "; 10 windows of 25 steps"),
                      p, 10, 25, s.R, s.S, s.rph, s.groups, true));
        out.push_back(std::move(w));
      }
  return out;
}

StatusOr<std::vector<EvalWorkload>> workloads_named(const std::string& name) {
  std::vector<EvalWorkload> out;
  if (name == "demo") {
    OMNI_ASSIGN_OR_RETURN(EvalWorkload w, demo_workload());
    out.push_back(std::move(w));
  } else if (name == "qwen") {
    OMNI_ASSIGN_OR_RETURN(EvalWorkload w, qwen_replay_workload());
    out.push_back(std::move(w));
  } else if (name == "dsv3") {
    OMNI_ASSIGN_OR_RETURN(EvalWorkload w, dsv3_drift_workload());
    out.push_back(std::move(w));
  } else {
    OMNI_ASSIGN_OR_RETURN(std::vector<EvalWorkload> all, held_out_workloads());
    for (EvalWorkload& w : all)
      if (name == "held-out" || w.name == name) out.push_back(std::move(w));
    if (out.empty()) {
      std::string names;
      for (const EvalWorkload& w : all) names += " " + w.name;
      return not_found_error(str_cat("plan_eval: no workload '", name, "'; known: demo qwen dsv3 held-out", names));
    }
  }
  return out;
}

}  // namespace omni::plan_eval
