// The omni planner: per layer, a BlockSolver (block_solver.h) on the whole
// layer, on each host's experts (host_sets.h) or from the placement in force,
// optional exact shares (optimal_shares.cc); by default the plan for the next
// interval (interval_planner.h). See omni_planner.h for the method.
#include "omniplacement/planner/omni_planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "omniplacement/core/metrics.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/planner/rank_matching.h"
#include "block_solver.h"
#include "host_sets.h"
#include "interval_planner.h"
#include "planner_common.h"

namespace omni {

const char* locality_name(Locality l) {
  switch (l) {
    case Locality::kNone: return "none";
    case Locality::kGroups: return "groups";
    case Locality::kCoactivation: return "coactivation";
    case Locality::kSpread: return "spread";
  }
  return "none";
}

namespace {

using detail::BlockSolver;
using detail::Clock;
using detail::coactivation_hosts;
using detail::group_hosts;
using detail::HostSets;
using detail::spread_over_hosts;

struct LayerOut {
  std::vector<ExpertId> phy2log;
  int64_t moves = 0;
  bool budget_hit = false;
};

double max_rank_load(std::span<const double> w, const std::vector<ExpertId>& phy2log, int32_t R) {
  const size_t S = phy2log.size() / static_cast<size_t>(R);
  std::vector<int32_t> cnt(w.size(), 0);
  for (ExpertId e : phy2log)
    if (e >= 0) ++cnt[static_cast<size_t>(e)];
  double mx = 0;
  for (size_t r = 0; r < static_cast<size_t>(R); ++r) {
    double s = 0;
    for (size_t k = 0; k < S; ++k) {
      const ExpertId e = phy2log[r * S + k];
      if (e >= 0) s += w[static_cast<size_t>(e)] / cnt[static_cast<size_t>(e)];
    }
    mx = std::max(mx, s);
  }
  return mx;
}

LayerOut plan_flat(std::span<const double> w, int32_t R, int32_t S, int32_t cap, const std::vector<int32_t>& host,
                   const OmniOptions& opt, const Clock::time_point* deadline) {
  BlockSolver solver(std::vector<double>(w.begin(), w.end()), R, S, cap, host, opt, deadline);
  solver.solve();
  return {solver.slots(), solver.moves(), solver.budget_hit()};
}

// Each host planned on its own ranks with its own experts.
LayerOut plan_by_host(std::span<const double> w, int32_t S, int32_t cap, const Topology& topo, const HostSets& sets,
                      const OmniOptions& opt, const Clock::time_point* deadline) {
  const int32_t R = topo.num_ranks();
  LayerOut out;
  out.phy2log.assign(static_cast<size_t>(R) * static_cast<size_t>(S), kEmptySlot);
  for (HostId h = 0; h < topo.num_hosts(); ++h) {
    const auto ranks = topo.ranks_of_host(h);
    const auto& experts = sets[static_cast<size_t>(h)];
    std::vector<double> sub(experts.size());
    for (size_t i = 0; i < experts.size(); ++i) sub[i] = w[static_cast<size_t>(experts[i])];
    BlockSolver solver(std::move(sub), static_cast<int32_t>(ranks.size()), S, cap, {}, opt, deadline);
    solver.solve();
    for (size_t lr = 0; lr < ranks.size(); ++lr)
      for (int32_t s = 0; s < S; ++s) {
        const int32_t le = solver.slots()[lr * static_cast<size_t>(S) + static_cast<size_t>(s)];
        out.phy2log[static_cast<size_t>(ranks[lr]) * static_cast<size_t>(S) + static_cast<size_t>(s)] =
            le < 0 ? kEmptySlot : experts[static_cast<size_t>(le)];
      }
    out.moves += solver.moves();
    out.budget_hit |= solver.budget_hit();
  }
  return out;
}

// Incremental (forecast=false): local search from the layer's current slots
// under the move budget; with no budget, a from-scratch plan relabelled onto
// the current ranks (maximum overlap) is taken instead when it is better.
LayerOut plan_incremental(std::span<const double> w, const Placement& cur, LayerId l, int32_t S, int32_t cap,
                          const std::vector<int32_t>& host, const OmniOptions& opt, const Clock::time_point* deadline) {
  const int32_t R = cur.num_ranks();
  const int32_t So = cur.slots_per_rank(l);
  const auto old_row = cur.phy2log(l);
  std::vector<int32_t> start(static_cast<size_t>(R) * static_cast<size_t>(S), kEmptySlot);
  for (int32_t r = 0; r < R; ++r)
    for (int32_t s = 0; s < std::min(S, So); ++s)
      start[static_cast<size_t>(r) * static_cast<size_t>(S) + static_cast<size_t>(s)] =
          old_row[static_cast<size_t>(r) * static_cast<size_t>(So) + static_cast<size_t>(s)];
  BlockSolver solver(std::vector<double>(w.begin(), w.end()), R, S, cap, host, opt, deadline);
  solver.solve_from(start, opt.max_moves_per_rank);
  LayerOut out{solver.slots(), solver.moves(), solver.budget_hit()};
  if (opt.max_moves_per_rank >= 0) return out;
  LayerOut scratch = plan_flat(w, R, S, cap, host, opt, deadline);
  const std::vector<RankId> to = match_ranks(old_row, scratch.phy2log, R);
  scratch.phy2log = relabel_and_align(old_row, scratch.phy2log, R, to);
  scratch.moves += out.moves;
  scratch.budget_hit |= out.budget_hit;
  // The relabelling ignores hosts: with spread_hosts a relabelled plan that
  // leaves a replicated expert on one host is not taken.
  const bool scratch_spread = !opt.spread_hosts || host.empty() || spread_over_hosts(scratch.phy2log, host, S);
  if (scratch_spread && max_rank_load(w, scratch.phy2log, R) < max_rank_load(w, out.phy2log, R)) return scratch;
  out.moves = scratch.moves;
  out.budget_hit = scratch.budget_hit;
  return out;
}

}  // namespace

std::vector<ExpertId> omni_plan_layer(std::span<const double> expert_loads, int32_t num_ranks, int32_t slots_per_rank,
                                      const OmniOptions& options) {
  OMNI_CHECK(static_cast<int64_t>(expert_loads.size()) <= static_cast<int64_t>(num_ranks) * slots_per_rank);
  const int32_t cap = options.max_replicas_per_expert > 0 ? options.max_replicas_per_expert : num_ranks;
  return plan_flat(expert_loads, num_ranks, slots_per_rank, cap, {}, options, nullptr).phy2log;
}

StatusOr<PlanResult> omni_plan(const PlanInput& in, const OmniOptions& opt) {
  const auto start = Clock::now();
  OMNI_ASSIGN_OR_RETURN(std::vector<int32_t> spr, in.resolve_slots_per_rank());
  OMNI_ASSIGN_OR_RETURN(int32_t num_nodes, in.resolve_num_nodes());
  const LoadMatrix& load = *in.load;
  const int32_t L = load.num_layers(), E = load.num_experts(), R = in.num_ranks;
  const int32_t cap = opt.max_replicas_per_expert > 0 ? std::min(opt.max_replicas_per_expert, R) : R;

  // Topology for locality.
  if (opt.spread_hosts && (opt.locality == Locality::kGroups || opt.locality == Locality::kCoactivation)) {
    return invalid_argument_error(str_cat("omni(spread_hosts=true) keeps an expert's replicas on different hosts; it "
                                          "combines with locality=none or spread, not ", locality_name(opt.locality)));
  }
  const bool needs_topology = opt.locality != Locality::kNone || opt.spread_hosts;
  Topology topo;
  if (needs_topology) {
    if (in.topology) {
      topo = *in.topology;
    } else {
      if (R % num_nodes != 0) {
        return invalid_argument_error(str_cat("omni(", opt.spread_hosts ? "spread_hosts" : "locality=",
                                              opt.spread_hosts ? "" : locality_name(opt.locality), "): num_ranks (", R,
                                              ") must be a multiple of num_nodes (", num_nodes,
                                              ") or a topology must be given"));
      }
      OMNI_ASSIGN_OR_RETURN(topo, Topology::uniform(R, R / num_nodes));
    }
  }
  const int32_t H = needs_topology ? topo.num_hosts() : 1;
  if (opt.locality == Locality::kGroups) {
    if (in.num_groups < 1 || E % in.num_groups != 0 || in.num_groups % H != 0) {
      return invalid_argument_error(str_cat("omni(locality=groups): needs num_experts (", E,
                                            ") a multiple of num_groups (", in.num_groups,
                                            ") and num_groups a multiple of the number of hosts (", H, ")"));
    }
  }
  if (opt.locality == Locality::kCoactivation) {
    if (in.coactivation == nullptr) {
      return invalid_argument_error("omni(locality=coactivation): PlanInput::coactivation is required");
    }
    const size_t need = static_cast<size_t>(L) * static_cast<size_t>(E) * static_cast<size_t>(E);
    if (in.coactivation->size() != need) {
      return invalid_argument_error(str_cat("omni(locality=coactivation): coactivation has ", in.coactivation->size(),
                                            " elements, expected num_layers x num_experts x num_experts = ", need));
    }
    if (E % H != 0) {
      return invalid_argument_error(str_cat("omni(locality=coactivation): num_experts (", E,
                                            ") must be a multiple of the number of hosts (", H, ")"));
    }
  }
  // The windows: each like the load, finite, >= 0, and with tokens in every
  // layer that the load has tokens in (an empty window says nothing of the
  // next one and would read as a shift).
  if (in.samples != nullptr) {
    const size_t n = in.samples->size();
    for (size_t k = 0; k < n; ++k) {
      const LoadMatrix& m = (*in.samples)[k];
      const std::string which = str_cat("omni: window ", k, " of ", n, " (PlanInput::samples, oldest first)");
      if (m.num_layers() != L || m.num_experts() != E) {
        return invalid_argument_error(str_cat(which, " has ", m.num_layers(), " layers x ", m.num_experts(),
                                              " experts; the load has ", L, " x ", E));
      }
      for (LayerId l = 0; l < L; ++l) {
        const auto row = m.row(l);
        for (ExpertId e = 0; e < E; ++e) {
          const double v = row[static_cast<size_t>(e)];
          if (!std::isfinite(v) || v < 0) {
            return invalid_argument_error(str_cat(which, ", layer ", l, ", expert ", e, ": load ", v,
                                                  " (must be finite and >= 0)"));
          }
        }
        if (m.layer_total(l) <= 0 && load.layer_total(l) > 0) {
          return invalid_argument_error(str_cat(which, " is empty in layer ", l, " (no tokens) while the load has ",
                                                load.layer_total(l), "; leave empty windows out"));
        }
      }
    }
  }
  for (LayerId l = 0; l < L; ++l)
    for (ExpertId e = 0; e < E; ++e) {
      const double v = load.row(l)[static_cast<size_t>(e)];
      if (!std::isfinite(v) || v < 0) {
        return invalid_argument_error(str_cat("omni: load, layer ", l, ", expert ", e, ": ", v,
                                              " (must be finite and >= 0)"));
      }
    }
  std::vector<int32_t> host;
  if (opt.locality == Locality::kSpread || opt.spread_hosts) host = topo.host_of_rank();
  if (in.current != nullptr) {
    const Placement& cur = *in.current;
    if (cur.num_layers() != L || cur.num_experts() != E || cur.num_ranks() != R) {
      return invalid_argument_error(str_cat("omni: the current placement (", cur.summary(),
                                            ") does not match the load (", L, " layers, ", E, " experts) and ", R,
                                            " ranks"));
    }
    if (opt.locality == Locality::kGroups || opt.locality == Locality::kCoactivation) {
      return invalid_argument_error(str_cat("omni: incremental planning (a current placement) supports locality=none "
                                            "or spread, not ", locality_name(opt.locality)));
    }
  }

  Clock::time_point deadline_value{};
  const Clock::time_point* deadline = nullptr;
  if (opt.time_budget_ms > 0) {
    deadline_value = start + std::chrono::microseconds(static_cast<int64_t>(opt.time_budget_ms * 1000.0));
    deadline = &deadline_value;
  }

  PlanResult result;
  PlacementLayout layout;
  layout.num_ranks = R;
  layout.num_experts = E;
  layout.slots_per_rank = spr;
  layout.phy2log.resize(static_cast<size_t>(L));
  if (opt.shares) layout.shares.resize(static_cast<size_t>(L));
  const bool for_interval = opt.forecast && opt.locality == Locality::kNone && !opt.spread_hosts && opt.protect <= 0;
  if (for_interval) {
    OMNI_ASSIGN_OR_RETURN(detail::IntervalPlan ip, detail::plan_for_interval(in, opt, spr, cap, deadline));
    layout.phy2log = std::move(ip.phy2log);
    if (opt.shares) layout.shares = std::move(ip.shares);
    result.stats.local_search_moves = ip.moves;
    result.stats.time_budget_hit = ip.budget_hit;
  }
  for (LayerId l = 0; l < L && !for_interval; ++l) {
    const auto w = load.row(l);
    const int32_t S = spr[static_cast<size_t>(l)];
    LayerOut lo;
    if (opt.locality == Locality::kGroups || opt.locality == Locality::kCoactivation) {
      const HostSets sets =
          opt.locality == Locality::kGroups
              ? group_hosts(w, in.num_groups, H)
              : coactivation_hosts(w, in.coactivation->data() + static_cast<size_t>(l) * static_cast<size_t>(E) *
                                                                    static_cast<size_t>(E),
                                   H, opt.locality_slack);
      bool fits = true;
      for (HostId h = 0; h < H; ++h) {
        fits &= static_cast<int64_t>(sets[static_cast<size_t>(h)].size()) <=
                static_cast<int64_t>(topo.ranks_of_host(h).size()) * S;
      }
      LayerOut flat = plan_flat(w, R, S, cap, {}, opt, deadline);
      if (fits) {
        lo = plan_by_host(w, S, cap, topo, sets, opt, deadline);
        const double mean = load.layer_total(l) / R;
        if (max_rank_load(w, lo.phy2log, R) > max_rank_load(w, flat.phy2log, R) + opt.locality_slack * mean) {
          flat.moves += lo.moves;
          flat.budget_hit |= lo.budget_hit;
          lo = std::move(flat);
        } else {
          lo.moves += flat.moves;
          lo.budget_hit |= flat.budget_hit;
        }
      } else {
        lo = std::move(flat);
      }
    } else if (in.current != nullptr) {
      lo = plan_incremental(w, *in.current, l, S, cap, host, opt, deadline);
    } else {
      lo = plan_flat(w, R, S, cap, host, opt, deadline);
    }
    result.stats.local_search_moves += lo.moves;
    result.stats.time_budget_hit |= lo.budget_hit;
    if (opt.shares) layout.shares[static_cast<size_t>(l)] = optimal_shares(w, lo.phy2log, R);
    layout.phy2log[static_cast<size_t>(l)] = std::move(lo.phy2log);
  }
  OMNI_ASSIGN_OR_RETURN(result.placement, Placement::create(std::move(layout)));
  if (in.current != nullptr) result.stats.slots_changed = slots_changed(*in.current, result.placement);
  result.replica_rank = replica_rank_by_slot(result.placement.layout());
  result.stats.same_rank_duplicates = same_rank_duplicates(result.placement);
  result.stats.policy = locality_name(opt.locality);
  result.stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace omni
