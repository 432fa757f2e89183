#include "omniplacement/runtime/failover.h"

#include <algorithm>
#include <array>

#include "omniplacement/core/placement_ops.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/runtime/migration_executor.h"

namespace omni {

StatusOr<std::vector<RankId>> newly_failed(std::span<const RankId> reported, std::span<const RankId> already,
                                           RankId self, int32_t num_ranks) {
  for (RankId r : reported)
    if (r < 0 || r >= num_ranks || r == self)
      return invalid_argument_error(str_cat("rank ", self, ": cannot fail rank ", r, " (valid: 0..", num_ranks - 1,
                                            " other than this rank)"));
  std::vector<RankId> fresh;
  for (RankId r : reported)
    if (!std::binary_search(already.begin(), already.end(), r) && std::find(fresh.begin(), fresh.end(), r) == fresh.end())
      fresh.push_back(r);
  std::sort(fresh.begin(), fresh.end());
  return fresh;
}

StatusOr<std::optional<RestorePlan>> plan_restore(const Placement& current, std::span<const RankId> failed,
                                                  std::span<const int64_t> slot_bytes) {
  if (static_cast<int32_t>(slot_bytes.size()) != current.num_layers())
    return invalid_argument_error(str_cat("plan_restore: ", slot_bytes.size(), " slot sizes for ",
                                          current.num_layers(), " layers"));
  std::vector<Transfer> transfers;
  const int32_t R = current.num_ranks();
  const int32_t E = current.num_experts();
  std::vector<char> is_failed(static_cast<size_t>(R), 0);
  for (RankId r : failed)
    if (r >= 0 && r < R) is_failed[static_cast<size_t>(r)] = 1;
  PlacementLayout layout = current.layout();
  for (LayerId l = 0; l < current.num_layers(); ++l) {
    auto& row = layout.phy2log[static_cast<size_t>(l)];
    const int32_t S = current.slots_per_rank(l);
    std::vector<int32_t> count(static_cast<size_t>(E), 0);
    for (ExpertId x : row)
      if (x >= 0) ++count[static_cast<size_t>(x)];
    std::vector<int32_t> restored_on(static_cast<size_t>(R), 0);
    bool changed = false;
    for (ExpertId e = 0; e < E; ++e) {
      if (count[static_cast<size_t>(e)] > 0) continue;
      // An empty live slot first, else a replica of the expert with the most
      // replicas; spread over ranks; ties to the lowest slot. Every rank
      // computes the same choice.
      GlobalSlot best = -1;
      std::array<int64_t, 4> best_key{};
      for (GlobalSlot g = 0; g < static_cast<GlobalSlot>(row.size()); ++g) {
        const RankId r = g / S;
        const ExpertId x = row[static_cast<size_t>(g)];
        if (is_failed[static_cast<size_t>(r)] || (x >= 0 && count[static_cast<size_t>(x)] < 2)) continue;
        const std::array<int64_t, 4> key{x < 0 ? 0 : 1, x < 0 ? 0 : -count[static_cast<size_t>(x)],
                                         restored_on[static_cast<size_t>(r)], g};
        if (best < 0 || key < best_key) best = g, best_key = key;
      }
      if (best < 0) continue;  // no room: the expert stays lost
      const ExpertId x = row[static_cast<size_t>(best)];
      if (x >= 0) --count[static_cast<size_t>(x)];
      row[static_cast<size_t>(best)] = e;
      count[static_cast<size_t>(e)] = 1;
      ++restored_on[static_cast<size_t>(best / S)];
      if (!layout.shares.empty()) layout.shares[static_cast<size_t>(l)][static_cast<size_t>(best)] = 1.0;
      Transfer t;
      t.layer = l;
      t.expert = e;
      t.src_rank = kFromBackup;
      t.src_slot = -1;
      t.dst_rank = best / S;
      t.dst_slot = best % S;
      t.replaced = x;
      t.bytes = slot_bytes[static_cast<size_t>(l)];
      transfers.push_back(t);
      changed = true;
    }
    if (changed && !layout.shares.empty()) renormalise_shares(row, layout.shares[static_cast<size_t>(l)], E);
  }
  if (transfers.empty()) return std::nullopt;
  RestorePlan plan;
  OMNI_ASSIGN_OR_RETURN(plan.next, Placement::create(std::move(layout), lost_experts_allowed()));
  plan.transfers = std::move(transfers);
  return plan;
}

StatusOr<PlanResult> plan_on_survivors(const Planner& planner, const LoadMatrix& load, const Placement& current,
                                       const Topology& topology, std::span<const RankId> failed,
                                       int32_t max_moves_per_rank, const ServingModel& serving) {
  const int32_t R = current.num_ranks();
  std::vector<char> is_failed(static_cast<size_t>(R), 0);
  for (RankId r : failed) {
    if (r < 0 || r >= R)
      return invalid_argument_error(str_cat("plan_on_survivors: failed rank ", r, " out of [0, ", R, ")"));
    is_failed[static_cast<size_t>(r)] = 1;
  }
  if (topology.num_ranks() != R)
    return invalid_argument_error(
        str_cat("plan_on_survivors: the topology has ", topology.num_ranks(), " ranks, the placement ", R));
  std::vector<RankId> live;
  for (RankId r = 0; r < R; ++r)
    if (!is_failed[static_cast<size_t>(r)]) live.push_back(r);
  const auto n = static_cast<int32_t>(live.size());
  if (n == 0) return failed_precondition_error(str_cat("plan_on_survivors: all ", R, " ranks have failed"));
  // The live ranks as a group of their own: rows of the placement in force,
  // hosts renumbered densely.
  PlacementLayout small;
  small.num_ranks = n;
  small.num_experts = current.num_experts();
  const PlacementLayout& full = current.layout();
  small.slots_per_rank = full.slots_per_rank;
  std::vector<HostId> hosts;
  std::vector<HostId> renumber(static_cast<size_t>(topology.num_hosts()), -1);
  HostId next_host = 0;
  for (RankId r : live) {
    HostId& h = renumber[static_cast<size_t>(topology.host_of(r))];
    if (h < 0) h = next_host++;
    hosts.push_back(h);
  }
  for (LayerId l = 0; l < current.num_layers(); ++l) {
    const auto S = static_cast<size_t>(current.slots_per_rank(l));
    auto& row = small.phy2log.emplace_back();
    std::vector<double>* sh = full.shares.empty() ? nullptr : &small.shares.emplace_back();
    for (RankId r : live) {
      const auto at = static_cast<size_t>(r) * S;
      row.insert(row.end(), full.phy2log[static_cast<size_t>(l)].begin() + static_cast<std::ptrdiff_t>(at),
                 full.phy2log[static_cast<size_t>(l)].begin() + static_cast<std::ptrdiff_t>(at + S));
      if (sh)
        sh->insert(sh->end(), full.shares[static_cast<size_t>(l)].begin() + static_cast<std::ptrdiff_t>(at),
                   full.shares[static_cast<size_t>(l)].begin() + static_cast<std::ptrdiff_t>(at + S));
    }
  }
  OMNI_ASSIGN_OR_RETURN(Placement small_current, Placement::create(std::move(small), lost_experts_allowed()));
  OMNI_ASSIGN_OR_RETURN(Topology small_topo, Topology::from_host_map(std::move(hosts)));
  PlanInput in;
  in.load = &load;
  in.num_ranks = n;
  for (LayerId l = 0; l < current.num_layers(); ++l) in.slots_per_rank.push_back(current.slots_per_rank(l));
  in.topology = &small_topo;
  in.current = &small_current;
  in.max_moves_per_rank = max_moves_per_rank;
  in.serving = serving;
  auto plan = planner.plan(in);
  if (!plan.ok()) {
    // Hosts are now uneven; a hierarchical planner may refuse them: plan as one host.
    in.topology = nullptr;
    in.num_nodes = 1;
    plan = planner.plan(in);
  }
  OMNI_RETURN_IF_ERROR(plan.status().with_context(str_cat("planning on the ", n, " live ranks")));
  // Back to the full group: the failed ranks' slots stay empty.
  const Placement& p = plan->placement;
  PlacementLayout out = full;
  for (LayerId l = 0; l < current.num_layers(); ++l) {
    const auto S = static_cast<size_t>(current.slots_per_rank(l));
    auto& row = out.phy2log[static_cast<size_t>(l)];
    std::fill(row.begin(), row.end(), kEmptySlot);
    const auto prow = p.phy2log(l);
    for (size_t i = 0; i < live.size(); ++i)
      std::copy(prow.begin() + static_cast<std::ptrdiff_t>(i * S), prow.begin() + static_cast<std::ptrdiff_t>((i + 1) * S),
                row.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(live[i]) * S));
  }
  out.shares.clear();
  if (p.has_shares()) {
    for (LayerId l = 0; l < current.num_layers(); ++l) {
      const auto S = static_cast<size_t>(current.slots_per_rank(l));
      auto& sh = out.shares.emplace_back(out.phy2log[static_cast<size_t>(l)].size(), 0.0);
      for (size_t i = 0; i < live.size(); ++i)
        for (size_t k = 0; k < S; ++k) sh[static_cast<size_t>(live[i]) * S + k] = p.share_of(l, static_cast<GlobalSlot>(i * S + k));
    }
  }
  OMNI_ASSIGN_OR_RETURN(plan->placement, Placement::create(std::move(out)));
  return plan;
}

}  // namespace omni
