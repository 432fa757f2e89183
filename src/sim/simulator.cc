#include "omniplacement/sim/simulator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <optional>

#include "omniplacement/core/str_cat.h"

namespace omni::sim {

const char* migration_mode_name(MigrationMode m) { return m == MigrationMode::kStall ? "stall" : "background"; }

StatusOr<MigrationMode> parse_migration_mode(const std::string& name) {
  if (name == "stall") return MigrationMode::kStall;
  if (name == "background") return MigrationMode::kBackground;
  return invalid_argument_error(str_cat("simulate: migration mode '", name, "' is not one of stall, background"));
}

const char* policy_kind_name(PolicyKind k) {
  switch (k) {
    case PolicyKind::kFixed: return "fixed";
    case PolicyKind::kStatic: return "static";
    case PolicyKind::kDynamic: return "dynamic";
    case PolicyKind::kOracle: return "oracle";
  }
  return "?";
}

PolicySpec PolicySpec::fixed(std::string name, Placement placement) {
  PolicySpec p;
  p.name = std::move(name);
  p.kind = PolicyKind::kFixed;
  p.placement = std::move(placement);
  return p;
}
PolicySpec PolicySpec::static_plan(std::string name, PlanFn plan) {
  PolicySpec p;
  p.name = std::move(name);
  p.kind = PolicyKind::kStatic;
  p.plan = std::move(plan);
  return p;
}
PolicySpec PolicySpec::dynamic(std::string name, PlanFn plan) {
  PolicySpec p = static_plan(std::move(name), std::move(plan));
  p.kind = PolicyKind::kDynamic;
  return p;
}
PolicySpec PolicySpec::oracle(std::string name, PlanFn plan) {
  PolicySpec p = static_plan(std::move(name), std::move(plan));
  p.kind = PolicyKind::kOracle;
  p.charge_migration = false;
  return p;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// State of one policy during the run.
struct PolicyState {
  const PolicySpec* spec = nullptr;
  Placement placement;
  CostModel model;
  double pending_stall_s = 0;   // migration charged on the next step
  double pending_moved = 0;     // bytes moved by the switch before the next step
  int64_t pending_experts = 0;  // expert copies of that switch
  // Background migration: the plan waiting for its weights, and the link time
  // (seconds at full bandwidth, slowest rank) still needed.
  std::optional<Placement> staged;
  std::optional<CostModel> staged_model;
  double staged_expected = 1;
  double staged_link_s = 0;
  double staged_bytes = 0;
  int64_t staged_experts = 0;
  std::vector<double> times;    // per step, for the percentile
  PolicySummary summary;
  double sum_ratio = 0;
  double sum_ratio_after_first = 0;
  // Shift detection: the max/mean the placement in force had on the load it
  // was planned on, and the index in the current interval from which the
  // next regular re-plan reads (0, or the step after a shift re-plan).
  double expected = 1;
  int64_t shift_from = 0;
  // Dynamic policies: the loads of the last intervals (since the last shift),
  // oldest first; the last history_intervals are summed for the plan and the
  // last sample_intervals are its samples.
  std::deque<LoadMatrix> windows;
};

Status check_plan(const Placement& p, const TraceSource& trace, const Topology& topo, const std::string& name,
                  int64_t step) {
  if (p.num_layers() != trace.num_layers() || p.num_experts() != trace.num_experts() ||
      p.num_ranks() != topo.num_ranks()) {
    return invalid_argument_error(str_cat("simulate: policy '", name, "' at step ", step, " gave a placement of ",
                                          p.summary(), "; the trace is ", trace.num_layers(), " layers x ",
                                          trace.num_experts(), " experts on ", topo.num_ranks(), " ranks"));
  }
  return ok_status();
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  const size_t k = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  const size_t idx = std::min(v.size() - 1, k == 0 ? 0 : k - 1);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(idx), v.end());
  return v[idx];
}

void install(PolicyState& st, Placement next, CostModel model, double expected) {
  st.model = std::move(model);
  st.placement = std::move(next);
  st.expected = expected;
}

// Plans with the policy's planner, timing it, and installs the placement (or,
// for a charged migration in background mode, stages it until its weights
// have arrived).
Status replan(PolicyState& st, const LoadMatrix& window, const std::vector<LoadMatrix>& samples,
              const TraceSource& trace, const Topology& topo, const SimOptions& options, int64_t step, bool first) {
  const CostParams& cost = options.cost;
  const auto t0 = Clock::now();
  StatusOr<Placement> next = st.spec->plan(window, first ? nullptr : &st.placement, samples);
  st.summary.plan_wall_s += seconds_since(t0);
  if (!next.ok()) {
    return next.status().with_context(str_cat("simulate: policy '", st.spec->name, "' at step ", step));
  }
  OMNI_RETURN_IF_ERROR(check_plan(*next, trace, topo, st.spec->name, step));
  ++st.summary.replans;
  OMNI_ASSIGN_OR_RETURN(CostModel model, CostModel::create(*next, topo, cost));
  // What the plan promises on the load it was planned on: the shift
  // detection's reference.
  OMNI_ASSIGN_OR_RETURN(StepCost promised, model.step_cost(window));
  if (first) {
    install(st, std::move(next).value(), std::move(model), promised.mean_max_over_mean);
    return ok_status();
  }
  if (st.staged) {
    // A newer plan replaces one still in flight; the bytes already sent are spent.
    st.pending_moved += st.staged_bytes;
    st.pending_experts += st.staged_experts;
    st.staged.reset();
    st.staged_model.reset();
  }
  OMNI_ASSIGN_OR_RETURN(MigrationCost mig, migration_cost(st.placement, *next, topo, cost, options.staging_bytes_per_rank,
                                                          options.layers_per_commit));
  if (st.spec->charge_migration && options.migration_mode == MigrationMode::kBackground && mig.transfers > 0) {
    st.staged = std::move(next).value();
    st.staged_model = std::move(model);
    st.staged_expected = promised.mean_max_over_mean;
    st.staged_link_s = mig.time_s;
    st.staged_bytes = mig.bytes;
    st.staged_experts = mig.transfers;
    return ok_status();
  }
  st.pending_moved += mig.bytes;
  st.pending_experts += mig.transfers;
  if (st.spec->charge_migration) st.pending_stall_s += mig.time_s;
  install(st, std::move(next).value(), std::move(model), promised.mean_max_over_mean);
  return ok_status();
}

// Background mode: the links are free for weights while the step computes;
// once the staged plan's link time is used up it comes into force.
void advance_staged(PolicyState& st, const StepCost& c) {
  if (!st.staged) return;
  st.staged_link_s -= c.time_s - c.comm_s;
  if (st.staged_link_s > 0) return;
  st.pending_moved += st.staged_bytes;
  st.pending_experts += st.staged_experts;
  install(st, std::move(*st.staged), std::move(*st.staged_model), st.staged_expected);
  st.staged.reset();
  st.staged_model.reset();
}

// Sum of chunk[from, to).
Status sum_steps(const std::vector<LoadMatrix>& chunk, int64_t from, int64_t to, LoadMatrix* out) {
  *out = chunk[static_cast<size_t>(from)];
  for (int64_t i = from + 1; i < to; ++i) OMNI_RETURN_IF_ERROR(out->add(chunk[static_cast<size_t>(i)]));
  return ok_status();
}

}  // namespace

StatusOr<SimResult> simulate(TraceSource& trace, const Topology& topology, const std::vector<PolicySpec>& policies,
                             const SimOptions& options) {
  const auto t_start = Clock::now();
  OMNI_RETURN_IF_ERROR(options.cost.validate());
  if (options.interval_steps < 1) {
    return invalid_argument_error(str_cat("simulate: interval_steps ", options.interval_steps, " must be >= 1"));
  }
  if (options.history_intervals < 1) {
    return invalid_argument_error(str_cat("simulate: history_intervals ", options.history_intervals, " must be >= 1"));
  }
  if (options.sample_intervals < 1) {
    return invalid_argument_error(str_cat("simulate: sample_intervals ", options.sample_intervals, " must be >= 1"));
  }
  if (options.max_steps < 0) return invalid_argument_error("simulate: max_steps must be >= 0");
  if (options.staging_bytes_per_rank < 0 || options.layers_per_commit < 0) {
    return invalid_argument_error(str_cat("simulate: staging_bytes_per_rank (", options.staging_bytes_per_rank,
                                          ") and layers_per_commit (", options.layers_per_commit,
                                          ") must be >= 0 (0 = no limit)"));
  }
  if (options.shift_check_steps < 0 || !(options.shift_threshold >= 0) || !std::isfinite(options.shift_threshold)) {
    return invalid_argument_error(str_cat("simulate: shift_check_steps (", options.shift_check_steps,
                                          ") and shift_threshold (", options.shift_threshold,
                                          ") must be >= 0 and finite"));
  }
  if (policies.empty()) return invalid_argument_error("simulate: no policies");
  for (const PolicySpec& p : policies) {
    if (p.kind != PolicyKind::kFixed && !p.plan) {
      return invalid_argument_error(str_cat("simulate: policy '", p.name, "' (", policy_kind_name(p.kind),
                                            ") has no planner"));
    }
  }
  int64_t total = trace.num_steps();
  if (options.max_steps > 0) total = std::min(total, options.max_steps);

  std::vector<PolicyState> states(policies.size());
  for (size_t i = 0; i < policies.size(); ++i) {
    states[i].spec = &policies[i];
    states[i].summary.name = policies[i].name;
    states[i].summary.kind = policy_kind_name(policies[i].kind);
    if (policies[i].kind == PolicyKind::kFixed) {
      OMNI_RETURN_IF_ERROR(check_plan(policies[i].placement, trace, topology, policies[i].name, 0));
      states[i].placement = policies[i].placement;
      OMNI_ASSIGN_OR_RETURN(states[i].model, CostModel::create(states[i].placement, topology, options.cost));
    }
  }
  PolicySummary bound;
  bound.name = "lower bound";
  bound.kind = "bound";
  std::vector<double> bound_times;
  double bound_ratio = 0;
  double bound_ratio_after_first = 0;
  std::vector<int64_t> bound_slots;  // per layer: the most slots of any policy (a bound for all)

  SimResult result;
  result.num_layers = trace.num_layers();
  result.num_experts = trace.num_experts();
  result.num_ranks = topology.num_ranks();

  std::vector<LoadMatrix> chunk;
  LoadMatrix window;
  LoadMatrix observed;
  std::vector<LoadMatrix> samples;
  LoadMatrix recent;  // shift detection: the last shift_check_steps steps
  int64_t step = 0;
  bool first = true;
  // Steps before this one belong to the first interval.
  const int64_t first_interval_end = std::min(options.interval_steps, total);
  while (step < total) {
    // Read one interval.
    const int64_t n = std::min(options.interval_steps, total - step);
    chunk.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      OMNI_ASSIGN_OR_RETURN(bool more, trace.next(&chunk[static_cast<size_t>(i)]));
      if (!more) return data_loss_error(str_cat("simulate: the trace ended at step ", step + i, " of ", total));
      if (chunk[static_cast<size_t>(i)].num_layers() != trace.num_layers() ||
          chunk[static_cast<size_t>(i)].num_experts() != trace.num_experts()) {
        return invalid_argument_error(str_cat("simulate: step ", step + i, " has a load of the wrong shape"));
      }
    }
    window = chunk.front();
    for (int64_t i = 1; i < n; ++i) OMNI_RETURN_IF_ERROR(window.add(chunk[static_cast<size_t>(i)]));

    for (PolicyState& st : states) {
      const PolicyKind k = st.spec->kind;
      if (k == PolicyKind::kOracle || (first && (k == PolicyKind::kStatic || k == PolicyKind::kDynamic))) {
        samples.assign(1, window);
        OMNI_RETURN_IF_ERROR(replan(st, window, samples, trace, topology, options, step, first));
      }
    }
    if (first) {
      bound_slots.assign(static_cast<size_t>(trace.num_layers()), 0);
      for (const PolicyState& st : states)
        for (LayerId l = 0; l < trace.num_layers(); ++l)
          bound_slots[static_cast<size_t>(l)] = std::max<int64_t>(bound_slots[static_cast<size_t>(l)],
                                                                  st.placement.num_slots(l));
    }
    first = false;

    for (int64_t i = 0; i < n; ++i, ++step) {
      const LoadMatrix& load = chunk[static_cast<size_t>(i)];
      for (size_t p = 0; p < states.size(); ++p) {
        PolicyState& st = states[p];
        OMNI_ASSIGN_OR_RETURN(StepCost c, st.model.step_cost(load));
        StepRecord rec;
        rec.step = step;
        rec.policy = static_cast<int32_t>(p);
        rec.migration_s = st.pending_stall_s;
        rec.moved_bytes = st.pending_moved;
        rec.moved_experts = st.pending_experts;
        rec.time_s = c.time_s + st.pending_stall_s;
        rec.compute_s = c.compute_s;
        rec.comm_s = c.comm_s;
        rec.max_over_mean = c.mean_max_over_mean;
        rec.cross_host_bytes = c.cross_host_bytes;
        st.pending_stall_s = 0;
        st.pending_moved = 0;
        st.pending_experts = 0;
        st.times.push_back(rec.time_s);
        st.sum_ratio += rec.max_over_mean;
        if (step >= first_interval_end) st.sum_ratio_after_first += rec.max_over_mean;
        st.summary.cross_host_bytes += rec.cross_host_bytes;
        st.summary.moved_bytes += rec.moved_bytes;
        st.summary.moved_experts += rec.moved_experts;
        st.summary.migration_s += rec.migration_s;
        if (options.record_steps) result.steps.push_back(rec);
        advance_staged(st, c);
      }
      // Shift detection (dynamic policies, within the interval): the last
      // shift_check_steps steps summed, priced under the placement in force;
      // far above what the plan promised on its own load means the workload
      // moved away from it, so the policy re-plans now on those steps.
      const int64_t k = options.shift_check_steps;
      if (k > 0 && (i + 1) % k == 0 && i + 1 < n) {
        bool summed = false;
        for (PolicyState& st : states) {
          if (st.spec->kind != PolicyKind::kDynamic || st.staged) continue;
          if (!summed) OMNI_RETURN_IF_ERROR(sum_steps(chunk, i + 1 - k, i + 1, &recent));
          summed = true;
          OMNI_ASSIGN_OR_RETURN(StepCost now, st.model.step_cost(recent));
          if (now.mean_max_over_mean <= st.expected + options.shift_threshold) continue;
          ++st.summary.shift_replans;
          samples.assign(1, recent);
          OMNI_RETURN_IF_ERROR(replan(st, recent, samples, trace, topology, options, step + 1, false));
          st.shift_from = i + 1;
        }
      }
      OMNI_ASSIGN_OR_RETURN(StepBound lb, step_lower_bound(load, topology.num_ranks(), bound_slots, options.cost));
      bound_times.push_back(lb.time_s);
      bound_ratio += lb.bound_over_mean;
      if (step >= first_interval_end) bound_ratio_after_first += lb.bound_over_mean;
      if (options.record_steps) {
        StepRecord rec;
        rec.step = step;
        rec.policy = static_cast<int32_t>(states.size());
        rec.time_s = rec.compute_s = lb.time_s;
        rec.max_over_mean = lb.bound_over_mean;
        result.steps.push_back(rec);
      }
    }
    // Dynamic policies re-plan on the interval(s) just served.
    const auto keep = static_cast<size_t>(std::max(options.history_intervals, options.sample_intervals));
    for (PolicyState& st : states) {
      if (st.spec->kind != PolicyKind::kDynamic) continue;
      if (st.shift_from > 0) {
        // After a shift only the steps since its re-plan describe the workload.
        OMNI_RETURN_IF_ERROR(sum_steps(chunk, st.shift_from, n, &recent));
        st.windows.assign(1, recent);
      } else {
        st.windows.push_back(window);
      }
      while (st.windows.size() > keep) st.windows.pop_front();
      if (step >= total) continue;
      const size_t h = std::min(st.windows.size(), static_cast<size_t>(options.history_intervals));
      observed = st.windows[st.windows.size() - h];
      for (size_t i = st.windows.size() - h + 1; i < st.windows.size(); ++i)
        OMNI_RETURN_IF_ERROR(observed.add(st.windows[i]));
      const size_t m = std::min(st.windows.size(), static_cast<size_t>(options.sample_intervals));
      samples.assign(st.windows.end() - static_cast<std::ptrdiff_t>(m), st.windows.end());
      OMNI_RETURN_IF_ERROR(replan(st, observed, samples, trace, topology, options, step, false));
    }
    for (PolicyState& st : states) st.shift_from = 0;
    if (options.progress) options.progress(step, total);
  }

  result.num_steps = step;
  const double steps = static_cast<double>(std::max<int64_t>(step, 1));
  // The first interval alone when the run is no longer than it.
  const bool one_interval = step <= first_interval_end;
  const double later_steps = static_cast<double>(std::max<int64_t>(step - first_interval_end, 1));
  for (PolicyState& st : states) {
    double sum = 0;
    for (double t : st.times) sum += t;
    st.summary.mean_step_s = sum / steps;
    st.summary.p99_step_s = percentile(st.times, 0.99);
    st.summary.mean_max_over_mean = st.sum_ratio / steps;
    st.summary.mean_max_over_mean_after_first =
        one_interval ? st.summary.mean_max_over_mean : st.sum_ratio_after_first / later_steps;
    result.policies.push_back(st.summary);
  }
  double sum = 0;
  for (double t : bound_times) sum += t;
  bound.mean_step_s = sum / steps;
  bound.p99_step_s = percentile(bound_times, 0.99);
  bound.mean_max_over_mean = bound_ratio / steps;
  bound.mean_max_over_mean_after_first = one_interval ? bound.mean_max_over_mean : bound_ratio_after_first / later_steps;
  result.policies.push_back(bound);
  result.wall_s = seconds_since(t_start);
  return result;
}

}  // namespace omni::sim
