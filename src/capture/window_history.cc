#include "omniplacement/capture/window_history.h"

#include <cmath>

#include "omniplacement/core/str_cat.h"

namespace omni {

StatusOr<WindowHistory> WindowHistory::create(const WindowHistoryOptions& options) {
  if (options.max_windows < 1)
    return invalid_argument_error(str_cat("WindowHistory: max_windows = ", options.max_windows, "; valid: >= 1"));
  if (!(options.ema_decay >= 0.0 && options.ema_decay < 1.0))
    return invalid_argument_error(str_cat("WindowHistory: ema_decay = ", options.ema_decay, "; valid: [0, 1)"));
  return WindowHistory(options);
}

Status WindowHistory::add(LoadMatrix window) {
  if (!windows_.empty() && (window.num_layers() != ema_.num_layers() || window.num_experts() != ema_.num_experts()))
    return invalid_argument_error(str_cat("WindowHistory: window ", num_added_, " has shape [", window.num_layers(),
                                          ", ", window.num_experts(), "], the history holds [", ema_.num_layers(),
                                          ", ", ema_.num_experts(), "] (layers x experts)"));
  if (windows_.empty() || options_.ema_decay == 0.0) {
    ema_ = window;
  } else {
    // ema = decay * ema + (1 - decay) * window, in this order of operations.
    LoadMatrix fresh = window;
    LoadMatrix next = ema_;
    OMNI_RETURN_IF_ERROR(next.scale(options_.ema_decay));
    OMNI_RETURN_IF_ERROR(fresh.scale(1.0 - options_.ema_decay));
    OMNI_RETURN_IF_ERROR(next.add(fresh));
    ema_ = std::move(next);
  }
  if (std::ssize(windows_) >= options_.max_windows) windows_.erase(windows_.begin());
  windows_.push_back(std::move(window));
  ++num_added_;
  return ok_status();
}

std::vector<LoadMatrix> WindowHistory::newest(int32_t n) const {
  const size_t k = std::min(windows_.size(), static_cast<size_t>(std::max(n, 0)));
  return std::vector<LoadMatrix>(windows_.end() - static_cast<std::ptrdiff_t>(k), windows_.end());
}

StatusOr<LoadMatrix> WindowHistory::with_volatility(double weight) const {
  if (!(weight >= 0.0) || !std::isfinite(weight))
    return invalid_argument_error(str_cat("WindowHistory: volatility weight = ", weight, "; valid: finite, >= 0"));
  if (weight == 0.0 || windows_.size() < 2) return ema_;
  const auto last = windows_.back().values();
  const auto prev = windows_[windows_.size() - 2].values();
  const auto base = ema_.values();
  std::vector<double> hedged(base.size());
  for (size_t i = 0; i < hedged.size(); ++i) hedged[i] = base[i] + weight * std::abs(last[i] - prev[i]);
  return LoadMatrix::from_weights(ema_.num_layers(), ema_.num_experts(), std::move(hedged));
}

}  // namespace omni
