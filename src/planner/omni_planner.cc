// The omni planner: per layer, a BlockSolver (block_solver.h) on the whole
// layer, on each host's experts (host_sets.h) or from the placement in force,
// optional exact shares (optimal_shares.cc) and the per-batch reshaping
// (batch_refine.h). See omni_planner.h for the method.
#include "omniplacement/planner/omni_planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "omniplacement/core/metrics.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/planner/rank_matching.h"
#include "batch_refine.h"
#include "block_solver.h"
#include "host_sets.h"
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

// budget; with no budget, a from-scratch plan relabelled onto the current ranks
// (maximum overlap) is taken instead when it is better by more than min_gain.
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
  if (opt.max_moves_per_rank >= 0) {
    if (opt.escalate_gain <= 0) return out;
    // Escalation: the layer is planned again without the move budget, and that
    // plan is taken when the budget leaves more than escalate_gain x mean rank
    // load of max rank load on the table (a phase shift), so that a shift is
    // followed at once instead of over many budgeted re-plans that chase noise.
    OmniOptions free_opt = opt;
    free_opt.max_moves_per_rank = -1;
    free_opt.escalate_gain = 0;
    LayerOut free = plan_incremental(w, cur, l, S, cap, host, free_opt, deadline);
    double total = 0;
    for (double v : w) total += v;
    free.moves += out.moves;
    free.budget_hit |= out.budget_hit;
    if (max_rank_load(w, free.phy2log, R) < max_rank_load(w, out.phy2log, R) - opt.escalate_gain * total / R) {
      return free;
    }
    out.moves = free.moves;
    out.budget_hit = free.budget_hit;
    return out;
  }
  LayerOut scratch = plan_flat(w, R, S, cap, host, opt, deadline);
  const std::vector<RankId> to = match_ranks(old_row, scratch.phy2log, R);
  scratch.phy2log = relabel_and_align(old_row, scratch.phy2log, R, to);
  double total = 0;
  for (double v : w) total += v;
  const double margin = opt.min_gain * total / R;
  scratch.moves += out.moves;
  scratch.budget_hit |= out.budget_hit;
  // The relabelling ignores hosts: with spread_hosts a relabelled plan that
  // leaves a replicated expert on one host is not taken.
  const bool scratch_spread = !opt.spread_hosts || host.empty() || spread_over_hosts(scratch.phy2log, host, S);
  if (scratch_spread && max_rank_load(w, scratch.phy2log, R) < max_rank_load(w, out.phy2log, R) - margin) return scratch;
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

namespace {

// omni(per_batch=true): reshapes layer l's plan for the per-batch split
// (batch_refine.h), on the samples (spread around their mean) or the load.
// Mean over layers of the total variation distance between two loads'
// per-layer shares of tokens (0: same mix, 1: disjoint experts).
double load_distance(const LoadMatrix& a, const LoadMatrix& b) {
  double sum = 0;
  for (LayerId l = 0; l < a.num_layers(); ++l) {
    const double ta = a.layer_total(l), tb = b.layer_total(l);
    if (ta <= 0 || tb <= 0) continue;
    const auto ra = a.row(l), rb = b.row(l);
    double d = 0;
    for (size_t e = 0; e < ra.size(); ++e) d += std::abs(ra[e] / ta - rb[e] / tb);
    sum += 0.5 * d;
  }
  return a.num_layers() > 0 ? sum / a.num_layers() : 0.0;
}

// The samples omni(per_batch=true) scores on: those whose distance to the
// newest is within per_batch_shift x the median distance between
// consecutive samples (older ones describe a workload that has moved on).
std::vector<const LoadMatrix*> current_samples(const std::vector<LoadMatrix>& samples, double shift) {
  std::vector<const LoadMatrix*> out;
  if (samples.empty()) return out;
  const LoadMatrix& newest = samples.back();
  if (shift <= 0 || samples.size() < 3) {
    for (const LoadMatrix& m : samples) out.push_back(&m);
    return out;
  }
  std::vector<double> steps;
  for (size_t k = 1; k < samples.size(); ++k) steps.push_back(load_distance(samples[k - 1], samples[k]));
  std::nth_element(steps.begin(), steps.begin() + static_cast<std::ptrdiff_t>(steps.size() / 2), steps.end());
  const double noise = steps[steps.size() / 2];
  for (size_t k = 0; k + 1 < samples.size(); ++k)
    if (load_distance(samples[k], newest) <= shift * noise) out.push_back(&samples[k]);
  out.push_back(&newest);
  return out;
}

void refine_layer_for_batch_split(const PlanInput& in, const std::vector<const LoadMatrix*>& kept, LayerId l,
                                  int32_t S, int32_t cap, const OmniOptions& opt, const Clock::time_point* deadline,
                                  LayerOut& lo) {
  const LoadMatrix& load = *in.load;
  const int32_t E = load.num_experts(), R = in.num_ranks;
  std::vector<std::vector<double>> samples;
  if (!kept.empty()) {
    for (const LoadMatrix* m : kept) samples.emplace_back(m->row(l).begin(), m->row(l).end());
    std::vector<double> mean(static_cast<size_t>(E), 0.0);
    for (const auto& x : samples)
      for (size_t e = 0; e < x.size(); ++e) mean[e] += x[e] / static_cast<double>(samples.size());
    for (auto& x : samples)
      for (size_t e = 0; e < x.size(); ++e) x[e] = std::max(0.0, mean[e] + opt.per_batch_spread * (x[e] - mean[e]));
  } else {
    samples.emplace_back(load.row(l).begin(), load.row(l).end());
  }
  std::span<const ExpertId> current;
  if (in.current != nullptr && in.current->slots_per_rank(l) == S) {
    current = in.current->phy2log(l);
    // Only a placement holding every expert can be a starting point.
    std::vector<char> held(static_cast<size_t>(E), 0);
    for (ExpertId e : current)
      if (e >= 0) held[static_cast<size_t>(e)] = 1;
    if (std::find(held.begin(), held.end(), 0) != held.end()) current = {};
  }
  detail::BatchRefineOptions bo;
  bo.num_ranks = R;
  bo.slots_per_rank = S;
  bo.max_replicas_per_expert = cap;
  bo.move_cost = current.empty() ? 0.0 : opt.per_batch_move_cost;
  bo.max_moves_per_rank = current.empty() ? -1 : opt.max_moves_per_rank;
  bo.max_evals = opt.per_batch_evals > 0 ? opt.per_batch_evals : int64_t{400} * R * S;
  bo.seed = 0x5EEDULL + static_cast<uint64_t>(l);
  detail::BatchRefineResult r = detail::refine_for_batch_split(lo.phy2log, current, samples, bo, deadline);
  lo.phy2log = std::move(r.phy2log);
  lo.moves += r.moves;
  lo.budget_hit |= r.budget_hit;
}

}  // namespace

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
  if (opt.per_batch && (opt.locality != Locality::kNone || opt.spread_hosts)) {
    return invalid_argument_error(str_cat("omni(per_batch=true) reshapes layers for the per-batch split without host "
                                          "constraints; it needs locality=none and spread_hosts=false (got locality=",
                                          locality_name(opt.locality), ", spread_hosts=",
                                          opt.spread_hosts ? "true" : "false", ")"));
  }
  if (in.samples != nullptr) {
    for (size_t k = 0; k < in.samples->size(); ++k) {
      const LoadMatrix& m = (*in.samples)[k];
      if (m.num_layers() != L || m.num_experts() != E) {
        return invalid_argument_error(str_cat("omni: sample ", k, " has ", m.num_layers(), " layers x ",
                                              m.num_experts(), " experts; the load has ", L, " x ", E));
      }
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

  std::vector<const LoadMatrix*> kept_samples;
  if (opt.per_batch && in.samples != nullptr) kept_samples = current_samples(*in.samples, opt.per_batch_shift);

  PlanResult result;
  PlacementLayout layout;
  layout.num_ranks = R;
  layout.num_experts = E;
  layout.slots_per_rank = spr;
  layout.phy2log.resize(static_cast<size_t>(L));
  if (opt.shares) layout.shares.resize(static_cast<size_t>(L));
  for (LayerId l = 0; l < L; ++l) {
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
    if (opt.per_batch) refine_layer_for_batch_split(in, kept_samples, l, S, cap, opt, deadline, lo);
    result.stats.local_search_moves += lo.moves;
    result.stats.time_budget_hit |= lo.budget_hit;
    if (opt.shares) layout.shares[static_cast<size_t>(l)] = optimal_shares(w, lo.phy2log, R);
    layout.phy2log[static_cast<size_t>(l)] = std::move(lo.phy2log);
  }
  OMNI_ASSIGN_OR_RETURN(result.placement, Placement::create(std::move(layout)));
  if (in.current != nullptr) {
    // min_gain: keep the placement in force when the plan would not improve
    // the mean over layers of max / mean rank load by at least that much.
    const Placement& cur = *in.current;
    bool same_shape = true;
    for (LayerId l = 0; l < L; ++l) same_shape &= cur.slots_per_rank(l) == spr[static_cast<size_t>(l)];
    if (same_shape && opt.min_gain > 0) {
      OMNI_ASSIGN_OR_RETURN(PlacementBalance before, placement_balance(cur, load));
      OMNI_ASSIGN_OR_RETURN(PlacementBalance after, placement_balance(result.placement, load));
      if (before.mean_max_over_mean - after.mean_max_over_mean < opt.min_gain) {
        result.placement = cur;
        result.stats.skipped = true;
      }
    }
    result.stats.slots_changed = slots_changed(cur, result.placement);
  }
  result.replica_rank = replica_rank_by_slot(result.placement.layout());
  result.stats.same_rank_duplicates = same_rank_duplicates(result.placement);
  result.stats.policy = locality_name(opt.locality);
  result.stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace omni
