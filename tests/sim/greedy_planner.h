// A small, deterministic planner for the simulator's own tests, so that they
// do not depend on the planner module: water-filling replica counts, then
// replicas in descending load / count onto the least loaded rank with a free
// slot that does not hold the expert yet.
#pragma once

#include <algorithm>
#include <numeric>
#include <vector>

#include "omniplacement/core/metrics.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/sim/simulator.h"

namespace omni::sim::testing {

inline PlanFn greedy_planner(int32_t num_ranks, int32_t slots_per_rank) {
  return [=](const LoadMatrix& load, const Placement*, const std::vector<LoadMatrix>&) -> StatusOr<Placement> {
    PlacementLayout out;
    out.num_ranks = num_ranks;
    out.num_experts = load.num_experts();
    const int64_t S = int64_t{num_ranks} * slots_per_rank;
    for (LayerId l = 0; l < load.num_layers(); ++l) {
      auto w = load.row(l);
      const auto cnt = water_fill_counts(w, S);
      std::vector<std::pair<double, ExpertId>> items;
      for (ExpertId e = 0; e < load.num_experts(); ++e)
        for (int32_t k = 0; k < cnt[static_cast<size_t>(e)]; ++k)
          items.emplace_back(w[static_cast<size_t>(e)] / cnt[static_cast<size_t>(e)], e);
      std::stable_sort(items.begin(), items.end(), [](auto& a, auto& b) { return a.first > b.first; });
      std::vector<double> rank_load(static_cast<size_t>(num_ranks), 0);
      std::vector<int32_t> used(static_cast<size_t>(num_ranks), 0);
      std::vector<ExpertId> row(static_cast<size_t>(S), kEmptySlot);
      for (const auto& [v, e] : items) {
        RankId best = -1;
        for (RankId r = 0; r < num_ranks; ++r) {
          if (used[static_cast<size_t>(r)] == slots_per_rank) continue;
          bool dup = false;
          for (int32_t s = 0; s < used[static_cast<size_t>(r)]; ++s)
            dup |= row[static_cast<size_t>(r * slots_per_rank + s)] == e;
          if (dup) continue;
          if (best < 0 || rank_load[static_cast<size_t>(r)] < rank_load[static_cast<size_t>(best)]) best = r;
        }
        if (best < 0) return internal_error("greedy test planner: no rank can take a replica");
        row[static_cast<size_t>(best * slots_per_rank + used[static_cast<size_t>(best)]++)] = e;
        rank_load[static_cast<size_t>(best)] += v;
      }
      out.slots_per_rank.push_back(slots_per_rank);
      out.phy2log.push_back(std::move(row));
    }
    return Placement::create(std::move(out));
  };
}

}  // namespace omni::sim::testing
