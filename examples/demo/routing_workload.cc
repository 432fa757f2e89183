#include "demo/routing_workload.h"

#include <algorithm>

#include "omniplacement/core/mix64.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

// xorshift-multiply stream, seeded per (step, rank, layer).
struct Rng {
  uint64_t s;
  uint64_t next() { return s = mix64(s); }
};

}  // namespace

StatusOr<RoutingWorkload> RoutingWorkload::create(std::vector<LoadMatrix> windows, int64_t steps_per_window,
                                                  int32_t tokens_per_rank, int32_t top_k, uint64_t seed) {
  if (windows.empty()) return invalid_argument_error("RoutingWorkload: no windows");
  RoutingWorkload w;
  w.num_layers_ = windows[0].num_layers();
  w.num_experts_ = windows[0].num_experts();
  if (steps_per_window < 1 || tokens_per_rank < 1 || tokens_per_rank > (1 << 20) || top_k < 1 ||
      top_k > w.num_experts_)
    return invalid_argument_error(str_cat("RoutingWorkload: need steps_per_window >= 1 (", steps_per_window,
                                          "), 1 <= tokens_per_rank <= 2^20 (", tokens_per_rank, "), 1 <= top_k <= ",
                                          w.num_experts_, " (", top_k, ")"));
  for (size_t i = 0; i < windows.size(); ++i) {
    const LoadMatrix& m = windows[i];
    if (m.num_layers() != w.num_layers_ || m.num_experts() != w.num_experts_)
      return invalid_argument_error(str_cat("RoutingWorkload: window ", i, " is ", m.num_layers(), " x ",
                                            m.num_experts(), ", window 0 is ", w.num_layers_, " x ", w.num_experts_));
    for (LayerId l = 0; l < m.num_layers(); ++l) {
      const auto row = m.row(l);
      const auto positive = std::count_if(row.begin(), row.end(), [](double v) { return v > 0; });
      if (positive < top_k)
        return invalid_argument_error(str_cat("RoutingWorkload: window ", i, ", layer ", l, " has ", positive,
                                              " experts with positive frequency, top_k is ", top_k));
      // Vose's alias method.
      const auto n = static_cast<size_t>(m.num_experts());
      Alias a;
      a.prob.assign(n, 0.0);
      a.alias.assign(n, 0);
      const double total = m.layer_total(l);
      std::vector<double> scaled(n);
      std::vector<int32_t> small, large;
      for (size_t e = 0; e < n; ++e) {
        scaled[e] = row[e] / total * static_cast<double>(n);
        (scaled[e] < 1.0 ? small : large).push_back(static_cast<int32_t>(e));
      }
      while (!small.empty() && !large.empty()) {
        const int32_t s = small.back(), g = large.back();
        small.pop_back();
        a.prob[static_cast<size_t>(s)] = scaled[static_cast<size_t>(s)];
        a.alias[static_cast<size_t>(s)] = g;
        scaled[static_cast<size_t>(g)] -= 1.0 - scaled[static_cast<size_t>(s)];
        if (scaled[static_cast<size_t>(g)] < 1.0) {
          large.pop_back();
          small.push_back(g);
        }
      }
      for (int32_t e : large) a.prob[static_cast<size_t>(e)] = 1.0;
      for (int32_t e : small) a.prob[static_cast<size_t>(e)] = 1.0;  // rounding leftovers
      w.tables_.push_back(std::move(a));
    }
  }
  w.steps_per_window_ = steps_per_window;
  w.tokens_per_rank_ = tokens_per_rank;
  w.top_k_ = top_k;
  w.seed_ = seed;
  w.windows_ = std::move(windows);
  return w;
}

int32_t RoutingWorkload::window_of(int64_t step) const {
  const int64_t w = std::max<int64_t>(step, 0) / steps_per_window_;
  return static_cast<int32_t>(std::min<int64_t>(w, num_windows() - 1));
}

void RoutingWorkload::topk_ids(int64_t step, RankId rank, LayerId layer, std::span<ExpertId> out) const {
  OMNI_CHECK(layer >= 0 && layer < num_layers_ && out.size() == static_cast<size_t>(ids_per_step()));
  const Alias& a = tables_[static_cast<size_t>(window_of(step)) * static_cast<size_t>(num_layers_) +
                           static_cast<size_t>(layer)];
  Rng rng{mix64(seed_ ^ mix64(static_cast<uint64_t>(step) * 0x100000001b3ULL ^
                              (static_cast<uint64_t>(rank) << 20) ^ static_cast<uint64_t>(layer)))};
  const auto n = static_cast<uint64_t>(num_experts_);
  for (int32_t t = 0; t < tokens_per_rank_; ++t) {
    ExpertId* tok = out.data() + static_cast<size_t>(t) * static_cast<size_t>(top_k_);
    for (int32_t k = 0; k < top_k_;) {
      const uint64_t r = rng.next();
      const auto e = static_cast<int32_t>((r >> 32) % n);
      const double u = static_cast<double>(r & 0xffffffffULL) * 0x1.0p-32;
      const ExpertId pick = u < a.prob[static_cast<size_t>(e)] ? e : a.alias[static_cast<size_t>(e)];
      if (std::find(tok, tok + k, pick) != tok + k) continue;  // top-k experts are distinct
      tok[k++] = pick;
    }
  }
}

}  // namespace omni
