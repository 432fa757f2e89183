// WindowHistory: the recent windows of expert load and their exponential
// moving average, the statistics a planner is fed from.
//
// The ActivationRecorder counts one rank's activations and hands them out in
// windows; the PlacementManager sums each window over the ranks and appends
// the aggregate here. The history keeps the newest max_windows windows (the
// samples a planner scores placements on, PlanInput::samples) and one EMA:
//
//   ema = ema_decay * ema + (1 - ema_decay) * window
//
// for every window after the first, which initialises it. With ema_decay = 0
// the EMA is the newest window itself (same LoadMatrix kind, counts stay exact).
//
//   omni::WindowHistoryOptions opt;
//   opt.max_windows = 6;              // keep the last six windows
//   opt.ema_decay = 0.5;
//   auto h = omni::WindowHistory::create(opt);
//   for (auto& w : aggregated_windows) if (auto s = h->add(std::move(w)); !s.ok()) return s;
//   h->ema();                         // what to plan on
//   h->newest(3);                     // the last three windows, oldest first
//
// Shapes: every window is a LoadMatrix [num_layers, num_experts]; all windows
// added to one history must have the shape of the first.
// Thread safety: a value type without internal locking. One thread at a time
// may use a history (the PlacementManager's planner thread owns its history;
// the ActivationRecorder uses its own under its mutex).
#pragma once

#include <cstdint>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"

namespace omni {

struct WindowHistoryOptions {
  // Windows kept (the newest), >= 1.
  int32_t max_windows = 1;
  // Weight of the old EMA when a window is added, in [0, 1); 0: the EMA is the newest window.
  double ema_decay = 0.0;
};

class WindowHistory {
 public:
  // INVALID_ARGUMENT naming the field when max_windows < 1 or ema_decay is not in [0, 1).
  static StatusOr<WindowHistory> create(const WindowHistoryOptions& options);
  WindowHistory() = default;  // max_windows 1, ema_decay 0

  // Appends `window` (dropping the oldest beyond max_windows) and folds it into
  // the EMA. INVALID_ARGUMENT, naming both shapes and the window's index, when
  // its shape differs from the first window's; the history is then unchanged.
  Status add(LoadMatrix window);

  // Windows added so far (including those dropped from the ring).
  int64_t num_added() const { return num_added_; }
  bool empty() const { return windows_.empty(); }
  // The kept windows, oldest first (at most max_windows).
  const std::vector<LoadMatrix>& windows() const { return windows_; }
  // The newest min(n, windows().size()) windows, oldest first (copies); n >= 0.
  std::vector<LoadMatrix> newest(int32_t n) const;
  // The EMA (kWeights once a decay > 0 has mixed two windows; the newest
  // window itself while ema_decay is 0 or after the first window). A 0 x 0
  // matrix before the first add().
  const LoadMatrix& ema() const { return ema_; }
  // ema() + weight x |newest - the window before it|, element-wise (kWeights):
  // a hedge that plans volatile experts as if they were heavier. ema() itself
  // when weight is 0 or fewer than two windows are kept. weight >= 0 and finite.
  StatusOr<LoadMatrix> with_volatility(double weight) const;

  const WindowHistoryOptions& options() const { return options_; }

 private:
  explicit WindowHistory(const WindowHistoryOptions& options) : options_(options) {}

  WindowHistoryOptions options_;
  std::vector<LoadMatrix> windows_;  // oldest first
  LoadMatrix ema_;
  int64_t num_added_ = 0;
};

}  // namespace omni
