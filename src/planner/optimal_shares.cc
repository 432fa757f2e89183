// optimal_shares (omni_planner.h): per-replica shares minimising the most
// loaded rank of a fixed placement, by bisection on the bound with a max-flow
// feasibility test (max_flow.h).
#include <algorithm>

#include "omniplacement/core/status.h"
#include "omniplacement/planner/omni_planner.h"
#include "max_flow.h"

namespace omni {

std::vector<double> optimal_shares(std::span<const double> w, std::span<const ExpertId> phy2log, int32_t num_ranks) {
  const int32_t E = static_cast<int32_t>(w.size());
  const size_t G = phy2log.size();
  const int32_t S = static_cast<int32_t>(G / static_cast<size_t>(num_ranks));
  std::vector<int32_t> cnt(static_cast<size_t>(E), 0);
  for (ExpertId e : phy2log)
    if (e >= 0) ++cnt[static_cast<size_t>(e)];
  std::vector<double> shares(G, 0.0);
  std::vector<double> even_load(static_cast<size_t>(num_ranks), 0.0);
  double total = 0;
  for (size_t g = 0; g < G; ++g) {
    const ExpertId e = phy2log[g];
    if (e < 0) continue;
    shares[g] = 1.0 / cnt[static_cast<size_t>(e)];
    even_load[g / static_cast<size_t>(S)] += w[static_cast<size_t>(e)] * shares[g];
  }
  for (ExpertId e = 0; e < E; ++e) total += cnt[static_cast<size_t>(e)] > 0 ? w[static_cast<size_t>(e)] : 0.0;
  if (total <= 0) return shares;
  // Nodes: source, experts, ranks, sink.
  const int32_t src = 0, sink = E + num_ranks + 1;
  detail::MaxFlow mf(E + num_ranks + 2);
  for (ExpertId e = 0; e < E; ++e) mf.add_edge(src, 1 + e, cnt[static_cast<size_t>(e)] > 0 ? w[static_cast<size_t>(e)] : 0.0);
  std::vector<int32_t> slot_edge(G, -1);
  for (size_t g = 0; g < G; ++g) {
    const ExpertId e = phy2log[g];
    if (e < 0) continue;
    // Capacity W rather than infinity, so that flow = capacity - residual stays finite.
    slot_edge[g] = mf.add_edge(1 + e, 1 + E + static_cast<int32_t>(g / static_cast<size_t>(S)), total);
  }
  std::vector<int32_t> rank_edge(static_cast<size_t>(num_ranks));
  for (int32_t r = 0; r < num_ranks; ++r) rank_edge[static_cast<size_t>(r)] = mf.add_edge(1 + E + r, sink, 0);
  auto feasible = [&](double T) {
    for (int32_t r = 0; r < num_ranks; ++r) mf.set_capacity(rank_edge[static_cast<size_t>(r)], T);
    mf.reset();
    return mf.run(src, sink) >= total * (1 - 1e-12);
  };
  double hi = *std::max_element(even_load.begin(), even_load.end());
  double lo = total / num_ranks;
  for (ExpertId e = 0; e < E; ++e)
    if (cnt[static_cast<size_t>(e)] > 0) lo = std::max(lo, w[static_cast<size_t>(e)] / static_cast<double>(num_ranks));
  lo = std::min(lo, hi);
  if (!feasible(hi)) return shares;  // numerical trouble: keep the even split
  for (int it = 0; it < 60 && hi - lo > 1e-9 * hi; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (feasible(mid)) hi = mid;
    else lo = mid;
  }
  OMNI_CHECK(feasible(hi));
  std::vector<double> sum(static_cast<size_t>(E), 0.0);
  for (size_t g = 0; g < G; ++g) {
    if (slot_edge[g] < 0) continue;
    sum[static_cast<size_t>(phy2log[g])] += std::max(0.0, mf.flow_on(slot_edge[g]));
  }
  // Two replicas of one expert on one rank (not produced by omni) would get
  // the flow of both edges; normalising per expert keeps the sum at 1.
  for (size_t g = 0; g < G; ++g) {
    const ExpertId e = phy2log[g];
    if (e < 0 || sum[static_cast<size_t>(e)] <= 0) continue;
    shares[g] = std::max(0.0, mf.flow_on(slot_edge[g])) / sum[static_cast<size_t>(e)];
  }
  return shares;
}

}  // namespace omni
