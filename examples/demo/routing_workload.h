// RoutingWorkload: per-step token routing drawn from a time series of
// per-expert frequencies (e.g. the Qwen1.5-MoE trace), for the demo and tests
// (examples/demo: not part of the installed library).
//
// The series is a list of windows, each a LoadMatrix [num_layers, num_experts]
// of expert frequencies (any non-negative scale). Step s uses window
// s / steps_per_window (the last window repeats past the end). For one step,
// rank and layer, topk_ids() draws tokens_per_rank tokens, each choosing
// top_k distinct experts: experts are drawn with probability proportional to
// the window's frequency, a repeat is drawn again. The draw is a pure function
// of (seed, step, rank, layer), so every run, thread count and process layout
// produces the same tokens.
//
//   auto w = omni::RoutingWorkload::create(windows, /*steps_per_window=*/10, /*tokens_per_rank=*/128,
//                                          /*top_k=*/4, /*seed=*/1);
//   std::vector<omni::ExpertId> ids(128 * 4);
//   w->topk_ids(/*step=*/37, /*rank=*/2, /*layer=*/5, ids);   // token-major, 4 ids per token
//
// Thread safety: immutable after creation; topk_ids() from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"

namespace omni {

class RoutingWorkload {
 public:
  // windows: >= 1 matrices of equal shape; every layer of every window has a
  // positive total and at least top_k experts with positive frequency.
  // steps_per_window >= 1, tokens_per_rank >= 1, 1 <= top_k <= num_experts.
  static StatusOr<RoutingWorkload> create(std::vector<LoadMatrix> windows, int64_t steps_per_window,
                                          int32_t tokens_per_rank, int32_t top_k, uint64_t seed);

  int32_t num_layers() const { return num_layers_; }
  int32_t num_experts() const { return num_experts_; }
  int32_t num_windows() const { return static_cast<int32_t>(windows_.size()); }
  int64_t steps_per_window() const { return steps_per_window_; }
  int32_t tokens_per_rank() const { return tokens_per_rank_; }
  int32_t top_k() const { return top_k_; }
  // Ids per rank, layer and step: tokens_per_rank * top_k.
  int32_t ids_per_step() const { return tokens_per_rank_ * top_k_; }
  // Window of step s (clamped to the last).
  int32_t window_of(int64_t step) const;
  const LoadMatrix& window(int32_t w) const { return windows_[static_cast<size_t>(w)]; }

  // Fills out (ids_per_step() elements) with the routing of one rank, layer
  // and step. step >= 0, layer in range (checked: aborts on a caller bug).
  void topk_ids(int64_t step, RankId rank, LayerId layer, std::span<ExpertId> out) const;

 private:
  // Vose alias table of one (window, layer).
  struct Alias {
    std::vector<double> prob;
    std::vector<int32_t> alias;
  };
  int32_t num_layers_ = 0;
  int32_t num_experts_ = 0;
  int64_t steps_per_window_ = 1;
  int32_t tokens_per_rank_ = 1;
  int32_t top_k_ = 1;
  uint64_t seed_ = 0;
  std::vector<LoadMatrix> windows_;
  std::vector<Alias> tables_;  // [window * num_layers + layer]
};

}  // namespace omni
