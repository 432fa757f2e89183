// MaxFlow: Dinic's algorithm (see max_flow.h).
#include "max_flow.h"

#include <algorithm>
#include <limits>

namespace omni::detail {

MaxFlow::MaxFlow(int32_t n) : head_(static_cast<size_t>(n), -1), level_(static_cast<size_t>(n)), it_(static_cast<size_t>(n)) {}

int32_t MaxFlow::add_edge(int32_t u, int32_t v, double cap) {
  edges_.push_back({v, head_[static_cast<size_t>(u)], cap, cap});
  head_[static_cast<size_t>(u)] = static_cast<int32_t>(edges_.size()) - 1;
  edges_.push_back({u, head_[static_cast<size_t>(v)], 0, 0});
  head_[static_cast<size_t>(v)] = static_cast<int32_t>(edges_.size()) - 1;
  return static_cast<int32_t>(edges_.size()) - 2;
}

void MaxFlow::set_capacity(int32_t e, double cap) { edges_[static_cast<size_t>(e)].orig = cap; }

void MaxFlow::reset() {
  for (size_t i = 0; i < edges_.size(); ++i) edges_[i].cap = edges_[i].orig;
}

double MaxFlow::flow_on(int32_t e) const {
  return edges_[static_cast<size_t>(e)].orig - edges_[static_cast<size_t>(e)].cap;
}

double MaxFlow::run(int32_t s, int32_t t) {
  double total = 0;
  while (bfs(s, t)) {
    for (size_t i = 0; i < head_.size(); ++i) it_[i] = head_[i];
    for (;;) {
      const double f = dfs(s, t, std::numeric_limits<double>::infinity());
      if (f <= 0) break;
      total += f;
    }
  }
  return total;
}

bool MaxFlow::bfs(int32_t s, int32_t t) {
  std::fill(level_.begin(), level_.end(), -1);
  std::vector<int32_t> q{s};
  level_[static_cast<size_t>(s)] = 0;
  for (size_t k = 0; k < q.size(); ++k) {
    const int32_t u = q[k];
    for (int32_t e = head_[static_cast<size_t>(u)]; e >= 0; e = edges_[static_cast<size_t>(e)].next) {
      const Edge& ed = edges_[static_cast<size_t>(e)];
      if (ed.cap > kTiny && level_[static_cast<size_t>(ed.to)] < 0) {
        level_[static_cast<size_t>(ed.to)] = level_[static_cast<size_t>(u)] + 1;
        q.push_back(ed.to);
      }
    }
  }
  return level_[static_cast<size_t>(t)] >= 0;
}

double MaxFlow::dfs(int32_t u, int32_t t, double f) {
  if (u == t) return f;
  for (int32_t& e = it_[static_cast<size_t>(u)]; e >= 0; e = edges_[static_cast<size_t>(e)].next) {
    Edge& ed = edges_[static_cast<size_t>(e)];
    if (ed.cap <= kTiny || level_[static_cast<size_t>(ed.to)] != level_[static_cast<size_t>(u)] + 1) continue;
    const double d = dfs(ed.to, t, std::min(f, ed.cap));
    if (d > 0) {
      ed.cap -= d;
      edges_[static_cast<size_t>(e ^ 1)].cap += d;
      return d;
    }
  }
  return 0;
}

}  // namespace omni::detail
