#include "demo/phase_table.h"

#include <algorithm>

#include "demo/survivor_collective.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/dispatch/batch_split.h"

namespace omni {

WindowLoads::WindowLoads(int32_t num_windows, int32_t num_layers, int32_t num_ranks, int32_t num_experts)
    : windows_(num_windows), layers_(num_layers), ranks_(num_ranks), experts_(num_experts) {
  const size_t rows = static_cast<size_t>(num_windows) * static_cast<size_t>(num_layers);
  dynamic_.assign(rows * static_cast<size_t>(num_ranks), 0);
  static_.assign(rows * static_cast<size_t>(num_ranks), 0);
  counts_.assign(rows * static_cast<size_t>(num_experts), 0);
}

std::span<const int64_t> WindowLoads::dynamic_row(int32_t w, LayerId l) const {
  return std::span<const int64_t>(dynamic_).subspan(row(w, l) * static_cast<size_t>(ranks_), static_cast<size_t>(ranks_));
}
std::span<const int64_t> WindowLoads::static_row(int32_t w, LayerId l) const {
  return std::span<const int64_t>(static_).subspan(row(w, l) * static_cast<size_t>(ranks_), static_cast<size_t>(ranks_));
}
std::span<const int64_t> WindowLoads::counts_row(int32_t w, LayerId l) const {
  return std::span<const int64_t>(counts_).subspan(row(w, l) * static_cast<size_t>(experts_),
                                                   static_cast<size_t>(experts_));
}

int64_t WindowLoads::window_tokens(int32_t w) const {
  int64_t tokens = 0;
  for (LayerId l = 0; l < layers_; ++l)
    for (int64_t v : counts_row(w, l)) tokens += v;
  return tokens;
}

Status WindowLoads::all_reduce(Transport& t, Timeout timeout, bool failures_expected) {
  OMNI_RETURN_IF_ERROR(
      all_reduce_among_survivors(t, std::span<int64_t>(dynamic_), ReduceOp::kSum, timeout, failures_expected));
  OMNI_RETURN_IF_ERROR(
      all_reduce_among_survivors(t, std::span<int64_t>(static_), ReduceOp::kSum, timeout, failures_expected));
  return all_reduce_among_survivors(t, std::span<int64_t>(counts_), ReduceOp::kSum, timeout, failures_expected);
}

double max_over_mean(std::span<const int64_t> loads) {
  int64_t total = 0, mx = 0;
  for (int64_t v : loads) {
    total += v;
    mx = std::max(mx, v);
  }
  if (total == 0) return 1.0;
  return static_cast<double>(mx) * static_cast<double>(loads.size()) / static_cast<double>(total);
}

namespace {

// The oracle's mean max/mean over the layers of window w.
StatusOr<double> oracle_of_window(const WindowLoads& loads, int32_t w, const OraclePricing& oracle) {
  const int32_t L = loads.num_layers(), E = loads.num_experts();
  std::vector<int64_t> wc;
  wc.reserve(static_cast<size_t>(L) * static_cast<size_t>(E));
  for (LayerId l = 0; l < L; ++l) {
    const auto row = loads.counts_row(w, l);
    wc.insert(wc.end(), row.begin(), row.end());
  }
  OMNI_ASSIGN_OR_RETURN(LoadMatrix load, LoadMatrix::from_counts(L, E, std::move(wc)));
  PlanInput in = oracle.input;
  in.load = &load;
  OMNI_ASSIGN_OR_RETURN(PlanResult plan, oracle.planner->plan(in));
  if (oracle.mode == DispatchMode::kShares) {
    OMNI_ASSIGN_OR_RETURN(auto bal, placement_balance(plan.placement, load));
    return bal.mean_max_over_mean;
  }
  // Priced as the served columns are: the per-batch split of the window's counts.
  double o = 0;
  for (LayerId l = 0; l < L; ++l) {
    OMNI_ASSIGN_OR_RETURN(std::vector<int64_t> rl, balance_batch_loads(loads.num_ranks(),
                                                                        layer_replica_ranks(plan.placement, l),
                                                                        loads.counts_row(w, l)));
    o += max_over_mean(rl);
  }
  return o / L;
}

}  // namespace

StatusOr<PhaseTable> make_phase_table(const WindowLoads& loads, const std::vector<std::string>& window_names,
                                      const OraclePricing& oracle) {
  const int32_t W = loads.num_windows(), L = loads.num_layers();
  if (static_cast<int32_t>(window_names.size()) != W)
    return invalid_argument_error(str_cat("demo: ", window_names.size(), " window names for ", W, " windows"));
  PhaseTable table;
  double sum_dyn = 0, sum_static = 0, sum_oracle = 0;
  int32_t used = 0;
  for (int32_t w = 0; w < W; ++w) {
    if (loads.window_tokens(w) == 0) continue;  // not reached within the run's steps
    double d = 0, s = 0;
    for (LayerId l = 0; l < L; ++l) {
      d += max_over_mean(loads.dynamic_row(w, l));
      s += max_over_mean(loads.static_row(w, l));
    }
    d /= L;
    s /= L;
    double o = 0;
    if (oracle.planner != nullptr) {
      OMNI_ASSIGN_OR_RETURN(o, oracle_of_window(loads, w, oracle));
    }
    const std::string& name = window_names[static_cast<size_t>(w)];
    if (table.phases.empty() || table.phases.back().name != name) table.phases.push_back(DemoPhase{name, 0, 0, 0, 0});
    DemoPhase& ph = table.phases.back();
    ++ph.num_windows;
    ph.dynamic += d;
    ph.static_ += s;
    ph.oracle += o;
    sum_dyn += d;
    sum_static += s;
    sum_oracle += o;
    ++used;
  }
  for (auto& ph : table.phases) {
    ph.dynamic /= ph.num_windows;
    ph.static_ /= ph.num_windows;
    ph.oracle /= ph.num_windows;
  }
  table.overall = DemoPhase{"all", used, used ? sum_dyn / used : 1.0, used ? sum_static / used : 1.0,
                            used ? sum_oracle / used : 1.0};
  return table;
}

}  // namespace omni
