#include "omniplacement/core/metrics.h"

#include <algorithm>
#include <cmath>
#include <queue>

#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

Status check_layer_args(const Placement& p, LayerId l, std::span<const double> expert_loads,
                        std::span<const double> slot_shares) {
  if (l < 0 || l >= p.num_layers()) {
    return out_of_range_error(str_cat("metrics: layer ", l, " out of [0, ", p.num_layers(), ")"));
  }
  if (static_cast<int64_t>(expert_loads.size()) != p.num_experts()) {
    return invalid_argument_error(str_cat("metrics: layer ", l, ": ", expert_loads.size(),
                                          " expert loads for a placement of ", p.num_experts(), " experts"));
  }
  for (size_t e = 0; e < expert_loads.size(); ++e) {
    if (!(std::isfinite(expert_loads[e]) && expert_loads[e] >= 0)) {
      return invalid_argument_error(
          str_cat("metrics: layer ", l, ", expert ", e, ": load ", expert_loads[e], " must be finite and >= 0"));
    }
  }
  if (!slot_shares.empty() && static_cast<int64_t>(slot_shares.size()) != p.num_slots(l)) {
    return invalid_argument_error(str_cat("metrics: layer ", l, ": ", slot_shares.size(), " shares for ",
                                          p.num_slots(l), " global slots"));
  }
  return ok_status();
}

Status check_shapes(const Placement& p, const LoadMatrix& m) {
  if (p.num_layers() != m.num_layers() || p.num_experts() != m.num_experts()) {
    return invalid_argument_error(str_cat("metrics: placement has ", p.num_layers(), " layers x ", p.num_experts(),
                                          " experts but the load is ", m.num_layers(), " x ", m.num_experts()));
  }
  return ok_status();
}

}  // namespace

StatusOr<std::vector<double>> rank_loads(const Placement& p, LayerId l, std::span<const double> expert_loads,
                                         std::span<const double> slot_shares) {
  OMNI_RETURN_IF_ERROR(check_layer_args(p, l, expert_loads, slot_shares));
  std::vector<double> out(static_cast<size_t>(p.num_ranks()), 0.0);
  const int32_t spr = p.slots_per_rank(l);
  auto row = p.phy2log(l);
  for (size_t g = 0; g < row.size(); ++g) {
    const ExpertId e = row[g];
    if (e < 0) continue;
    const double share = slot_shares.empty() ? 1.0 / static_cast<double>(p.replica_count(l, e)) : slot_shares[g];
    out[g / static_cast<size_t>(spr)] += expert_loads[static_cast<size_t>(e)] * share;
  }
  return out;
}

StatusOr<std::vector<double>> rank_loads(const Placement& p, const LoadMatrix& load, LayerId l, SplitMode mode) {
  OMNI_RETURN_IF_ERROR(check_shapes(p, load));
  if (l < 0 || l >= p.num_layers()) {
    return out_of_range_error(str_cat("metrics: layer ", l, " out of [0, ", p.num_layers(), ")"));
  }
  return rank_loads(p, l, load.row(l), mode == SplitMode::kShares ? p.shares(l) : std::span<const double>{});
}

std::vector<int32_t> water_fill_counts(std::span<const double> w, int64_t num_slots) {
  const size_t E = w.size();
  std::vector<int32_t> cnt(E, 1);
  if (E == 0) return cnt;
  // Max-heap on load / count; ties to the lowest expert id.
  auto less = [&](size_t a, size_t b) {
    const double ra = w[a] / cnt[a], rb = w[b] / cnt[b];
    if (ra != rb) return ra < rb;
    return a > b;
  };
  std::priority_queue<size_t, std::vector<size_t>, decltype(less)> heap(less);
  for (size_t e = 0; e < E; ++e) heap.push(e);
  for (int64_t extra = num_slots - static_cast<int64_t>(E); extra > 0; --extra) {
    const size_t e = heap.top();
    heap.pop();
    ++cnt[e];
    heap.push(e);
  }
  return cnt;
}

double lower_bound(std::span<const double> w, int32_t num_ranks, int64_t num_slots) {
  double total = 0;
  for (double v : w) total += v;
  const double mean = num_ranks > 0 ? total / num_ranks : total;
  const auto cnt = water_fill_counts(w, num_slots);
  double per_replica = 0;
  for (size_t e = 0; e < w.size(); ++e) per_replica = std::max(per_replica, w[e] / cnt[e]);
  return std::max(mean, per_replica);
}

LayerBalance balance_of(std::span<const double> loads, double bound) {
  LayerBalance b;
  for (size_t r = 0; r < loads.size(); ++r) {
    b.total += loads[r];
    if (loads[r] > b.max) {
      b.max = loads[r];
      b.max_rank = static_cast<RankId>(r);
    }
  }
  b.lower_bound = bound;
  if (loads.empty() || b.total <= 0) return b;
  b.mean = b.total / static_cast<double>(loads.size());
  b.max_over_mean = b.max / b.mean;
  b.imbalance = (b.max - b.mean) / b.mean;
  b.balancedness = b.mean / b.max;
  b.bound_over_mean = bound / b.mean;
  b.excess = (b.max - bound) / b.mean;
  return b;
}

StatusOr<LayerBalance> layer_balance(const Placement& p, const LoadMatrix& load, LayerId l, SplitMode mode) {
  OMNI_ASSIGN_OR_RETURN(std::vector<double> loads, rank_loads(p, load, l, mode));
  return balance_of(loads, lower_bound(load.row(l), p.num_ranks(), p.num_slots(l)));
}

StatusOr<PlacementBalance> placement_balance(const Placement& p, const LoadMatrix& load, SplitMode mode) {
  OMNI_RETURN_IF_ERROR(check_shapes(p, load));
  PlacementBalance out;
  double sum_mean = 0;
  double sum_ratio = 0, sum_imb = 0, sum_excess = 0;
  for (LayerId l = 0; l < p.num_layers(); ++l) {
    OMNI_ASSIGN_OR_RETURN(LayerBalance b, layer_balance(p, load, l, mode));
    sum_mean += b.mean;
    out.sum_max += b.max;
    out.sum_lower_bound += b.lower_bound;
    sum_ratio += b.max_over_mean;
    sum_imb += b.imbalance;
    sum_excess += b.excess;
    out.layers.push_back(b);
  }
  const double L = static_cast<double>(p.num_layers());
  out.mean_max_over_mean = sum_ratio / L;
  out.mean_imbalance = sum_imb / L;
  out.mean_excess = sum_excess / L;
  out.balancedness = out.sum_max > 0 ? sum_mean / out.sum_max : 1.0;
  return out;
}

int64_t same_rank_duplicates(const Placement& p, LayerId l) {
  const int32_t spr = p.slots_per_rank(l);
  auto row = p.phy2log(l);
  int64_t dups = 0;
  std::vector<ExpertId> on_rank;
  for (RankId r = 0; r < p.num_ranks(); ++r) {
    on_rank.clear();
    for (int32_t s = 0; s < spr; ++s) {
      const ExpertId e = row[static_cast<size_t>(r) * static_cast<size_t>(spr) + static_cast<size_t>(s)];
      if (e >= 0) on_rank.push_back(e);
    }
    std::sort(on_rank.begin(), on_rank.end());
    for (size_t i = 1; i < on_rank.size(); ++i)
      if (on_rank[i] == on_rank[i - 1]) ++dups;
  }
  return dups;
}

int64_t same_rank_duplicates(const Placement& p) {
  int64_t d = 0;
  for (LayerId l = 0; l < p.num_layers(); ++l) d += same_rank_duplicates(p, l);
  return d;
}

namespace {
// Accumulates absolute token amounts for layer l into acc (total, same_rank, same_host, cross_host).
void accumulate_traffic(const Placement& p, std::span<const double> w, const Topology& t, LayerId l, double acc[4]) {
  const int32_t R = p.num_ranks();
  const int32_t H = t.num_hosts();
  const int32_t spr = p.slots_per_rank(l);
  std::vector<char> on_rank(static_cast<size_t>(R));
  std::vector<char> on_host(static_cast<size_t>(H));
  for (ExpertId e = 0; e < p.num_experts(); ++e) {
    const double load = w[static_cast<size_t>(e)];
    if (load <= 0) continue;
    std::fill(on_rank.begin(), on_rank.end(), 0);
    std::fill(on_host.begin(), on_host.end(), 0);
    for (GlobalSlot g : p.replicas(l, e)) {
      const RankId r = g / spr;
      on_rank[static_cast<size_t>(r)] = 1;
      on_host[static_cast<size_t>(t.host_of(r))] = 1;
    }
    const double per_origin = load / R;
    for (RankId q = 0; q < R; ++q) {
      if (on_rank[static_cast<size_t>(q)]) acc[1] += per_origin;
      else if (on_host[static_cast<size_t>(t.host_of(q))]) acc[2] += per_origin;
      else acc[3] += per_origin;
    }
    acc[0] += load;
  }
}

TrafficSplit to_split(const double acc[4]) {
  TrafficSplit s;
  s.total = acc[0];
  if (acc[0] > 0) {
    s.same_rank = acc[1] / acc[0];
    s.same_host = acc[2] / acc[0];
    s.cross_host = acc[3] / acc[0];
  }
  return s;
}
}  // namespace

StatusOr<TrafficSplit> dispatch_traffic(const Placement& p, const LoadMatrix& load, const Topology& t, LayerId l) {
  OMNI_RETURN_IF_ERROR(check_shapes(p, load));
  if (t.num_ranks() != p.num_ranks()) {
    return invalid_argument_error(str_cat("metrics: topology has ", t.num_ranks(), " ranks, placement has ",
                                          p.num_ranks()));
  }
  if (l < 0 || l >= p.num_layers()) {
    return out_of_range_error(str_cat("metrics: layer ", l, " out of [0, ", p.num_layers(), ")"));
  }
  double acc[4] = {0, 0, 0, 0};
  accumulate_traffic(p, load.row(l), t, l, acc);
  return to_split(acc);
}

StatusOr<TrafficSplit> dispatch_traffic(const Placement& p, const LoadMatrix& load, const Topology& t) {
  OMNI_RETURN_IF_ERROR(check_shapes(p, load));
  if (t.num_ranks() != p.num_ranks()) {
    return invalid_argument_error(str_cat("metrics: topology has ", t.num_ranks(), " ranks, placement has ",
                                          p.num_ranks()));
  }
  double acc[4] = {0, 0, 0, 0};
  for (LayerId l = 0; l < p.num_layers(); ++l) accumulate_traffic(p, load.row(l), t, l, acc);
  return to_split(acc);
}

}  // namespace omni
