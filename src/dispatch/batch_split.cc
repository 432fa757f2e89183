#include "omniplacement/dispatch/batch_split.h"

#include <algorithm>
#include <numeric>

#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

constexpr int kMaxRefinePasses = 8;

// Distinct ranks holding a replica of e, ascending.
std::vector<RankId> replica_ranks(const Placement& p, LayerId l, ExpertId e) {
  std::vector<RankId> ranks;
  for (GlobalSlot g : p.replicas(l, e)) ranks.push_back(p.rank_of(l, g));
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  return ranks;
}

// Adds `count` tokens over `ranks` so that the least loaded are filled to a
// common level; amounts are integers summing to count. Returns them per rank
// (same order as `ranks`) and adds them to `load`.
std::vector<int64_t> water_fill(std::span<const RankId> ranks, int64_t count, std::vector<int64_t>& load) {
  const size_t n = ranks.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return load[static_cast<size_t>(ranks[a])] < load[static_cast<size_t>(ranks[b])];
  });
  // Level L with sum over the i lowest of (L - load) = count.
  double level = 0;
  size_t used = 0;
  double acc = static_cast<double>(count);
  for (size_t i = 0; i < n; ++i) {
    acc += static_cast<double>(load[static_cast<size_t>(ranks[order[i]])]);
    level = acc / static_cast<double>(i + 1);
    used = i + 1;
    if (i + 1 == n || level <= static_cast<double>(load[static_cast<size_t>(ranks[order[i + 1]])])) break;
  }
  std::vector<int64_t> amount(n, 0);
  std::vector<double> frac(n, -1.0);
  int64_t given = 0;
  for (size_t i = 0; i < used; ++i) {
    const size_t k = order[i];
    const double exact = std::max(0.0, level - static_cast<double>(load[static_cast<size_t>(ranks[k])]));
    amount[k] = std::min<int64_t>(static_cast<int64_t>(exact), count - given);
    frac[k] = exact - static_cast<double>(amount[k]);
    given += amount[k];
  }
  // Rounding: remaining tokens to the largest fractions (ties: least loaded first).
  std::vector<size_t> by_frac(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(used));
  std::stable_sort(by_frac.begin(), by_frac.end(), [&](size_t a, size_t b) { return frac[a] > frac[b]; });
  for (size_t i = 0; given < count; i = (i + 1) % used, ++given) ++amount[by_frac[i]];
  for (size_t k = 0; k < n; ++k) load[static_cast<size_t>(ranks[k])] += amount[k];
  return amount;
}

}  // namespace

std::vector<std::vector<RankId>> layer_replica_ranks(const Placement& placement, LayerId l) {
  std::vector<std::vector<RankId>> out(static_cast<size_t>(placement.num_experts()));
  for (ExpertId e = 0; e < placement.num_experts(); ++e) out[static_cast<size_t>(e)] = replica_ranks(placement, l, e);
  return out;
}

StatusOr<std::vector<int64_t>> balance_batch_loads(int32_t num_ranks,
                                                   std::span<const std::vector<RankId>> ranks_of,
                                                   std::span<const int64_t> totals,
                                                   std::vector<std::vector<int64_t>>* amounts) {
  const size_t E = totals.size();
  if (num_ranks <= 0) return invalid_argument_error(str_cat("balance_batch_loads: num_ranks ", num_ranks, " must be > 0"));
  if (ranks_of.size() != E)
    return invalid_argument_error(str_cat("balance_batch_loads: ", ranks_of.size(), " replica rank lists for ",
                                          E, " expert totals"));
  std::vector<int64_t> rank_load(static_cast<size_t>(num_ranks), 0);
  std::vector<ExpertId> flexible;
  for (size_t e = 0; e < E; ++e) {
    if (totals[e] < 0 || totals[e] > (int64_t{1} << 50))
      return invalid_argument_error(str_cat("balance_batch_loads: expert ", e, ": total ", totals[e],
                                            " outside [0, 2^50]"));
    for (RankId r : ranks_of[e])
      if (r < 0 || r >= num_ranks)
        return out_of_range_error(str_cat("balance_batch_loads: expert ", e, ": replica rank ", r, " out of [0, ",
                                          num_ranks, ")"));
    const auto& rs = ranks_of[e];
    if (rs.size() == 1) rank_load[static_cast<size_t>(rs[0])] += totals[e];
    if (rs.size() > 1) flexible.push_back(static_cast<ExpertId>(e));
  }
  std::stable_sort(flexible.begin(), flexible.end(), [&](ExpertId a, ExpertId b) {
    return totals[static_cast<size_t>(a)] > totals[static_cast<size_t>(b)];
  });
  std::vector<std::vector<int64_t>> local;
  std::vector<std::vector<int64_t>>& amount = amounts ? *amounts : local;
  amount.assign(E, {});
  for (ExpertId e : flexible)
    amount[static_cast<size_t>(e)] = water_fill(ranks_of[static_cast<size_t>(e)], totals[static_cast<size_t>(e)],
                                                rank_load);
  // Refinement: re-fill each expert with all others in place, until a pass
  // changes nothing (a block-coordinate descent on the max; a few passes).
  for (int pass = 0; pass < kMaxRefinePasses; ++pass) {
    bool changed = false;
    for (ExpertId e : flexible) {
      const auto& rs = ranks_of[static_cast<size_t>(e)];
      auto& a = amount[static_cast<size_t>(e)];
      for (size_t k = 0; k < rs.size(); ++k) rank_load[static_cast<size_t>(rs[k])] -= a[k];
      auto refilled = water_fill(rs, totals[static_cast<size_t>(e)], rank_load);
      changed |= refilled != a;
      a = std::move(refilled);
    }
    if (!changed) break;
  }
  return rank_load;
}

StatusOr<BatchSplit> split_batch(const Placement& placement, LayerId l, const Topology& topology, RankId rank,
                                 std::span<const int64_t> counts) {
  const int32_t R = placement.num_ranks();
  const int32_t E = placement.num_experts();
  if (l < 0 || l >= placement.num_layers())
    return out_of_range_error(str_cat("split_batch: layer ", l, " out of [0, ", placement.num_layers(), ")"));
  if (topology.num_ranks() != R)
    return invalid_argument_error(
        str_cat("split_batch: topology has ", topology.num_ranks(), " ranks, placement has ", R));
  if (rank < 0 || rank >= R) return out_of_range_error(str_cat("split_batch: rank ", rank, " out of [0, ", R, ")"));
  if (counts.size() != static_cast<size_t>(R) * static_cast<size_t>(E))
    return invalid_argument_error(str_cat("split_batch: counts has ", counts.size(), " elements, expected ", R,
                                          " ranks x ", E, " experts = ", int64_t{R} * E));
  std::vector<int64_t> total(static_cast<size_t>(E), 0);
  for (int32_t q = 0; q < R; ++q) {
    for (ExpertId e = 0; e < E; ++e) {
      const int64_t c = counts[static_cast<size_t>(q) * static_cast<size_t>(E) + static_cast<size_t>(e)];
      if (c < 0 || c > (int64_t{1} << 40))
        return invalid_argument_error(str_cat("split_batch: layer ", l, ", rank ", q, ", expert ", e, ": count ", c,
                                              " outside [0, 2^40]"));
      total[static_cast<size_t>(e)] += c;
    }
  }
  BatchSplit out;
  std::vector<std::vector<RankId>> ranks_of = layer_replica_ranks(placement, l);
  std::vector<std::vector<int64_t>> amount;
  OMNI_ASSIGN_OR_RETURN(out.rank_load, balance_batch_loads(R, ranks_of, total, &amount));

  // Token flows per expert: origin rank first, then its host, then anywhere.
  out.segment_offset.assign(static_cast<size_t>(E) + 1, 0);
  std::vector<int64_t> supply(static_cast<size_t>(R));
  for (ExpertId e = 0; e < E; ++e) {
    out.segment_offset[static_cast<size_t>(e)] = static_cast<int32_t>(out.segment_slot.size());
    const auto& rs = ranks_of[static_cast<size_t>(e)];
    if (rs.empty()) continue;
    std::vector<int64_t> mine(rs.size(), 0);  // my tokens per replica rank
    if (rs.size() == 1) {
      mine[0] = counts[static_cast<size_t>(rank) * static_cast<size_t>(E) + static_cast<size_t>(e)];
    } else {
      std::vector<int64_t> demand = amount[static_cast<size_t>(e)];
      for (int32_t q = 0; q < R; ++q)
        supply[static_cast<size_t>(q)] = counts[static_cast<size_t>(q) * static_cast<size_t>(E) + static_cast<size_t>(e)];
      auto move = [&](RankId q, size_t k) {
        const int64_t t = std::min(supply[static_cast<size_t>(q)], demand[k]);
        if (t <= 0) return;
        supply[static_cast<size_t>(q)] -= t;
        demand[k] -= t;
        if (q == rank) mine[k] += t;
      };
      for (size_t k = 0; k < rs.size(); ++k) move(rs[k], k);
      for (size_t k = 0; k < rs.size(); ++k)
        for (RankId q : topology.ranks_of_host(topology.host_of(rs[k]))) move(q, k);
      for (size_t k = 0; k < rs.size(); ++k)
        for (RankId q = 0; q < R && demand[k] > 0; ++q) move(q, k);
    }
    // A rank holding several replicas of e splits its amount evenly over them.
    const auto reps = placement.replicas(l, e);
    for (size_t k = 0; k < rs.size(); ++k) {
      if (mine[k] == 0) continue;
      std::vector<GlobalSlot> on_rank;
      for (GlobalSlot g : reps)
        if (placement.rank_of(l, g) == rs[k]) on_rank.push_back(g);
      const auto m = static_cast<int64_t>(on_rank.size());
      for (int64_t j = 0; j < m; ++j) {
        const int64_t c = mine[k] / m + (j < mine[k] % m ? 1 : 0);
        if (c == 0) continue;
        out.segment_slot.push_back(on_rank[static_cast<size_t>(j)]);
        out.segment_count.push_back(c);
      }
    }
  }
  out.segment_offset[static_cast<size_t>(E)] = static_cast<int32_t>(out.segment_slot.size());
  return out;
}

BatchDispatch::BatchDispatch(const BatchSplit& split)
    : split_(split),
      segment_(split.segment_offset.begin(), split.segment_offset.end() - (split.segment_offset.empty() ? 0 : 1)),
      used_(segment_.size(), 0) {}

void BatchDispatch::dispatch(std::span<const ExpertId> ids, std::span<GlobalSlot> out) {
  const auto E = static_cast<uint32_t>(segment_.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto e = static_cast<uint32_t>(ids[i]);
    if (e >= E) {
      out[i] = -1;
      continue;
    }
    int32_t& seg = segment_[e];
    const int32_t end = split_.segment_offset[e + 1];
    if (seg >= end) {
      // No segment (no replica, or none of my tokens were counted): -1 when the
      // expert has no segment at all, else stay on the last one.
      out[i] = seg > split_.segment_offset[e] ? split_.segment_slot[static_cast<size_t>(seg - 1)] : -1;
      continue;
    }
    out[i] = split_.segment_slot[static_cast<size_t>(seg)];
    if (++used_[e] == split_.segment_count[static_cast<size_t>(seg)] && seg + 1 < end) {
      ++seg;
      used_[e] = 0;
    }
  }
}

}  // namespace omni
