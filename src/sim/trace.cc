#include "omniplacement/sim/trace.h"

#include "omniplacement/core/str_cat.h"

namespace omni::sim {

StatusOr<WindowTrace> WindowTrace::create(std::vector<LoadMatrix> windows, int64_t steps_per_window) {
  if (windows.empty()) return invalid_argument_error("trace: no windows");
  if (steps_per_window < 1) {
    return invalid_argument_error(str_cat("trace: steps_per_window ", steps_per_window, " must be >= 1"));
  }
  const LoadMatrix& first = windows.front();
  if (first.num_layers() == 0) return invalid_argument_error("trace: window 0 is empty");
  for (size_t i = 1; i < windows.size(); ++i) {
    if (windows[i].num_layers() != first.num_layers() || windows[i].num_experts() != first.num_experts()) {
      return invalid_argument_error(str_cat("trace: window ", i, " is ", windows[i].num_layers(), " x ",
                                            windows[i].num_experts(), " but window 0 is ", first.num_layers(), " x ",
                                            first.num_experts()));
    }
  }
  if (steps_per_window > 1) {
    for (LoadMatrix& w : windows) OMNI_RETURN_IF_ERROR(w.scale(1.0 / static_cast<double>(steps_per_window)));
  }
  WindowTrace t;
  t.windows_ = std::move(windows);
  t.steps_per_window_ = steps_per_window;
  return t;
}

StatusOr<bool> WindowTrace::next(LoadMatrix* out) {
  if (out == nullptr) return invalid_argument_error("trace: next() needs an output matrix");
  if (step_ >= num_steps()) return false;
  *out = windows_[static_cast<size_t>(step_ / steps_per_window_)];
  ++step_;
  return true;
}

StatusOr<SyntheticTrace> SyntheticTrace::create(const WorkloadParams& params, int64_t num_steps) {
  if (num_steps < 1) return invalid_argument_error(str_cat("trace: num_steps ", num_steps, " must be >= 1"));
  OMNI_ASSIGN_OR_RETURN(SyntheticWorkload w, SyntheticWorkload::create(params));
  SyntheticTrace t;
  t.workload_ = std::move(w);
  t.num_steps_ = num_steps;
  return t;
}

StatusOr<bool> SyntheticTrace::next(LoadMatrix* out) {
  if (out == nullptr) return invalid_argument_error("trace: next() needs an output matrix");
  if (workload_.step() >= num_steps_) return false;
  OMNI_RETURN_IF_ERROR(workload_.next(out));
  return true;
}

}  // namespace omni::sim
