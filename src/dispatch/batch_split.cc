#include "omniplacement/dispatch/batch_split.h"

#include <algorithm>

#include "omniplacement/core/str_cat.h"
#include "omniplacement/dispatch/batch_balancer.h"

namespace omni {

namespace {

// Distinct ranks holding a replica of e, ascending.
std::vector<RankId> replica_ranks(const Placement& p, LayerId l, ExpertId e) {
  std::vector<RankId> ranks;
  for (GlobalSlot g : p.replicas(l, e)) ranks.push_back(p.rank_of(l, g));
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  return ranks;
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
  OMNI_ASSIGN_OR_RETURN(BatchBalancer<int64_t> balancer,
                        BatchBalancer<int64_t>::create(num_ranks, static_cast<int32_t>(totals.size())));
  OMNI_RETURN_IF_ERROR(balancer.set_replica_ranks(ranks_of));
  OMNI_RETURN_IF_ERROR(balancer.balance(totals));
  if (amounts != nullptr) {
    amounts->assign(totals.size(), {});
    for (ExpertId e = 0; e < balancer.num_experts(); ++e) {
      const auto a = balancer.amounts(e);
      if (a.size() > 1) (*amounts)[static_cast<size_t>(e)].assign(a.begin(), a.end());
    }
  }
  const auto load = balancer.rank_loads();
  return std::vector<int64_t>(load.begin(), load.end());
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
  OMNI_ASSIGN_OR_RETURN(BatchBalancer<int64_t> balancer, BatchBalancer<int64_t>::create(R, E));
  OMNI_RETURN_IF_ERROR(balancer.set_slots(placement.phy2log(l), placement.slots_per_rank(l)));
  OMNI_RETURN_IF_ERROR(balancer.balance(total));
  const auto rank_load = balancer.rank_loads();
  out.rank_load.assign(rank_load.begin(), rank_load.end());

  // Token flows per expert: origin rank first, then its host, then anywhere.
  out.segment_offset.assign(static_cast<size_t>(E) + 1, 0);
  std::vector<int64_t> supply(static_cast<size_t>(R));
  for (ExpertId e = 0; e < E; ++e) {
    out.segment_offset[static_cast<size_t>(e)] = static_cast<int32_t>(out.segment_slot.size());
    const auto rs = balancer.replica_ranks(e);
    if (rs.empty()) continue;
    std::vector<int64_t> mine(rs.size(), 0);  // my tokens per replica rank
    if (rs.size() == 1) {
      mine[0] = counts[static_cast<size_t>(rank) * static_cast<size_t>(E) + static_cast<size_t>(e)];
    } else {
      const auto amount = balancer.amounts(e);
      std::vector<int64_t> demand(amount.begin(), amount.end());
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
