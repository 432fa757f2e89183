// Internal (not installed): MaxFlow, Dinic's maximum flow on a small directed
// graph with double capacities. optimal_shares() (omni_planner.h) uses it to
// test whether every expert's load fits under a bound on each rank's load.
//
//   detail::MaxFlow mf(4);                    // nodes 0..3
//   int32_t e = mf.add_edge(0, 1, 5.0);       // edge id (its reverse is e ^ 1)
//   mf.add_edge(1, 3, 2.0);
//   mf.run(0, 3);                             // 2.0
//   mf.flow_on(e);                            // 2.0
//
// Capacities below 1e-12 count as saturated. reset() restores every edge's
// capacity (as last set) so that the same graph can be solved again with new
// sink capacities (set_capacity). Deterministic; one thread per instance.
#pragma once

#include <cstdint>
#include <vector>

namespace omni::detail {

class MaxFlow {
 public:
  // A graph with nodes 0..num_nodes-1 and no edges.
  explicit MaxFlow(int32_t num_nodes);
  // Adds edge u -> v with capacity cap (>= 0) and its reverse (capacity 0);
  // returns the forward edge's id.
  int32_t add_edge(int32_t u, int32_t v, double cap);
  // The capacity edge `e` gets at the next reset().
  void set_capacity(int32_t e, double cap);
  // Every edge back to its capacity, no flow.
  void reset();
  // Flow on forward edge `e` after run().
  double flow_on(int32_t e) const;
  // Pushes the maximum flow from s to t (adding to any flow already there) and
  // returns the amount pushed.
  double run(int32_t s, int32_t t);

 private:
  struct Edge {
    int32_t to, next;
    double cap, orig;
  };
  static constexpr double kTiny = 1e-12;
  bool bfs(int32_t s, int32_t t);
  double dfs(int32_t u, int32_t t, double f);

  std::vector<Edge> edges_;
  std::vector<int32_t> head_, level_, it_;
};

}  // namespace omni::detail
