#include "omniplacement/dispatch/dispatch_table.h"

#include <algorithm>
#include <numeric>

#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

// Below this a remaining supply or demand counts as exhausted (fractions of one
// expert's tokens; the sums involved are of at most a few hundred terms).
constexpr double kEps = 1e-12;

Status check_inputs(const char* what, const Placement& placement, LayerId l, const Topology& topology, RankId rank) {
  if (l < 0 || l >= placement.num_layers()) {
    return out_of_range_error(str_cat(what, ": layer ", l, " out of [0, ", placement.num_layers(), ")"));
  }
  if (topology.num_ranks() != placement.num_ranks()) {
    return invalid_argument_error(str_cat(what, ": topology has ", topology.num_ranks(), " ranks, placement has ",
                                          placement.num_ranks()));
  }
  if (rank < 0 || rank >= placement.num_ranks()) {
    return out_of_range_error(str_cat(what, ": rank ", rank, " out of [0, ", placement.num_ranks(), ")"));
  }
  return ok_status();
}

// Flow of one expert's tokens from every origin rank to its replicas; returns
// the row of `origin` (fractions of that rank's tokens, summing to 1).
std::vector<double> split_one_expert(const Placement& placement, LayerId l, ExpertId e, const Topology& topology,
                                     RankId origin, std::vector<double>& supply) {
  const auto reps = placement.replicas(l, e);
  const size_t n = reps.size();
  std::vector<double> row(n, 0.0);
  if (n == 0) return row;
  if (n == 1) {
    row[0] = 1.0;
    return row;
  }
  const int32_t R = placement.num_ranks();
  std::fill(supply.begin(), supply.end(), 1.0 / R);
  std::vector<double> demand(n);
  std::vector<RankId> at(n);
  for (size_t k = 0; k < n; ++k) {
    demand[k] = placement.share_of(l, reps[k]);
    at[k] = placement.rank_of(l, reps[k]);
  }
  auto add = [&](RankId q, size_t k, double amount) {
    if (q == origin) row[k] += amount;
  };
  // 1. Each rank serves its own tokens on its own replicas.
  for (size_t k = 0; k < n; ++k) {
    auto& s = supply[static_cast<size_t>(at[k])];
    const double take = std::min(s, demand[k]);
    if (take <= 0) continue;
    add(at[k], k, take);
    s -= take;
    demand[k] -= take;
  }
  // 2. Within each host, remaining supply is spread over the host's remaining
  //    demand in proportion (every origin reaches every host replica).
  for (HostId h = 0; h < topology.num_hosts(); ++h) {
    double S = 0, D = 0;
    for (RankId q : topology.ranks_of_host(h)) S += supply[static_cast<size_t>(q)];
    for (size_t k = 0; k < n; ++k)
      if (topology.host_of(at[k]) == h) D += demand[k];
    const double T = std::min(S, D);
    if (T <= kEps) continue;
    const double fs = T / S, fd = T / D;
    for (RankId q : topology.ranks_of_host(h)) {
      const double sq = supply[static_cast<size_t>(q)];
      if (sq <= 0) continue;
      if (q == origin)
        for (size_t k = 0; k < n; ++k)
          if (topology.host_of(at[k]) == h) row[k] += sq * fs * demand[k] / D;
      supply[static_cast<size_t>(q)] = sq * (1 - fs);
    }
    for (size_t k = 0; k < n; ++k)
      if (topology.host_of(at[k]) == h) demand[k] *= (1 - fd);
  }
  // 3. What is left crosses hosts, again in proportion.
  const double so = supply[static_cast<size_t>(origin)];
  if (so > kEps) {
    double D = 0;
    for (double d : demand) D += std::max(d, 0.0);
    if (D > kEps) {
      for (size_t k = 0; k < n; ++k) row[k] += so * std::max(demand[k], 0.0) / D;
    } else {
      // Rounding left supply but no demand: spread evenly.
      for (size_t k = 0; k < n; ++k) row[k] += so / static_cast<double>(n);
    }
  }
  double sum = 0;
  for (double v : row) sum += v;
  for (double& v : row) v /= sum;
  return row;
}

}  // namespace

StatusOr<std::vector<std::vector<double>>> replica_split(const Placement& placement, LayerId l,
                                                         const Topology& topology, RankId origin) {
  OMNI_RETURN_IF_ERROR(check_inputs("replica_split", placement, l, topology, origin));
  std::vector<double> supply(static_cast<size_t>(placement.num_ranks()));
  std::vector<std::vector<double>> out(static_cast<size_t>(placement.num_experts()));
  for (ExpertId e = 0; e < placement.num_experts(); ++e)
    out[static_cast<size_t>(e)] = split_one_expert(placement, l, e, topology, origin, supply);
  return out;
}

std::vector<int32_t> apportion(std::span<const double> weights, int32_t total) {
  const size_t n = weights.size();
  std::vector<int32_t> out(n, 0);
  double sum = 0;
  for (double w : weights) sum += std::max(w, 0.0);
  if (n == 0 || sum <= 0 || total <= 0) return out;
  std::vector<double> frac(n);
  int32_t given = 0;
  for (size_t k = 0; k < n; ++k) {
    const double exact = std::max(weights[k], 0.0) / sum * total;
    out[k] = static_cast<int32_t>(exact);
    frac[k] = exact - out[k];
    given += out[k];
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return frac[a] > frac[b]; });
  for (size_t i = 0; given < total; i = (i + 1) % n, ++given) ++out[order[i]];
  return out;
}

void LayerDispatch::append_expert(const Placement& placement, LayerId l, ExpertId e, std::span<const double> w) {
  const auto reps = placement.replicas(l, e);
  auto& entry = entries_[static_cast<size_t>(e)];
  entry.offset = static_cast<uint32_t>(table_.size());
  size_t nonzero = 0, last = 0;
  for (size_t k = 0; k < w.size(); ++k)
    if (w[k] * kDispatchPeriod >= 0.5) ++nonzero, last = k;
  if (reps.empty() || nonzero <= 1) {
    entry.mask = 0;
    table_.push_back(reps.empty() ? kLostExpertSlot : reps[nonzero == 1 ? last : 0]);
    return;
  }
  // Smooth weighted round robin over the apportioned counts: each replica's
  // turns are spread evenly through the period (deterministic, ties to the
  // lowest replica).
  const auto counts = apportion(w, kDispatchPeriod);
  std::vector<int64_t> credit(counts.size(), 0);
  entry.mask = static_cast<uint32_t>(kDispatchPeriod - 1);
  for (int32_t t = 0; t < kDispatchPeriod; ++t) {
    size_t best = 0;
    for (size_t k = 0; k < counts.size(); ++k) {
      credit[k] += counts[k];
      if (credit[k] > credit[best]) best = k;
    }
    credit[best] -= kDispatchPeriod;
    table_.push_back(reps[best]);
  }
}

StatusOr<LayerDispatch> LayerDispatch::build(const Placement& placement, LayerId l, const Topology& topology,
                                             RankId rank) {
  OMNI_ASSIGN_OR_RETURN(auto split, replica_split(placement, l, topology, rank));
  LayerDispatch d;
  d.entries_.resize(split.size());
  for (ExpertId e = 0; e < placement.num_experts(); ++e) d.append_expert(placement, l, e, split[static_cast<size_t>(e)]);
  return d;
}

StatusOr<LayerDispatch> LayerDispatch::rebuild(const LayerDispatch& base, const Placement& placement, LayerId l,
                                               const Topology& topology, RankId rank,
                                               std::span<const ExpertId> changed) {
  OMNI_RETURN_IF_ERROR(check_inputs("LayerDispatch::rebuild", placement, l, topology, rank));
  if (base.num_experts() != placement.num_experts())
    return invalid_argument_error(str_cat("LayerDispatch::rebuild: base has ", base.num_experts(),
                                          " experts, placement ", placement.num_experts()));
  std::vector<char> is_changed(static_cast<size_t>(placement.num_experts()), 0);
  for (ExpertId e : changed) {
    if (e < 0 || e >= placement.num_experts())
      return out_of_range_error(str_cat("LayerDispatch::rebuild: expert ", e, " out of [0, ", placement.num_experts(), ")"));
    is_changed[static_cast<size_t>(e)] = 1;
  }
  LayerDispatch d;
  d.entries_.resize(base.entries_.size());
  d.table_.reserve(base.table_.size());
  std::vector<double> supply(static_cast<size_t>(placement.num_ranks()));
  const auto E = static_cast<size_t>(placement.num_experts());
  for (size_t e = 0; e < E;) {
    if (is_changed[e]) {
      const auto x = static_cast<ExpertId>(e);
      d.append_expert(placement, l, x, split_one_expert(placement, l, x, topology, rank, supply));
      ++e;
      continue;
    }
    // A run of unchanged experts whose sequences lie back to back in base's
    // table: one copy, offsets shifted (a failover keeps most experts).
    const Entry first = base.entries_[e];
    uint32_t end = first.offset;
    const auto shift = static_cast<int64_t>(d.table_.size()) - static_cast<int64_t>(first.offset);
    size_t b = e;
    for (; b < E && !is_changed[b] && base.entries_[b].offset == end; ++b) {
      d.entries_[b] = {static_cast<uint32_t>(base.entries_[b].offset + shift), base.entries_[b].mask};
      end = base.entries_[b].offset + base.entries_[b].mask + 1;
    }
    d.table_.insert(d.table_.end(), base.table_.begin() + first.offset, base.table_.begin() + end);
    e = b;
  }
  return d;
}

std::span<const GlobalSlot> LayerDispatch::sequence(ExpertId e) const {
  OMNI_CHECK(e >= 0 && e < num_experts());
  const Entry en = entries_[static_cast<size_t>(e)];
  return std::span<const GlobalSlot>(table_).subspan(en.offset, en.mask + 1);
}

std::vector<GlobalSlot> LayerDispatch::targets() const {
  std::vector<GlobalSlot> t;
  for (GlobalSlot g : table_)
    if (g >= 0) t.push_back(g);
  std::sort(t.begin(), t.end());
  t.erase(std::unique(t.begin(), t.end()), t.end());
  return t;
}

}  // namespace omni
