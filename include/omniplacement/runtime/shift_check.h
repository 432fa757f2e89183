// Shift detection: re-plan at once when the load moves away from the plan,
// instead of waiting for the next re-plan interval.
//
// Every shift_check_steps steps while no round runs, the PlacementManager sums
// the load of those steps over all ranks and prices it under the placement in
// force with the dispatch in force (served_max_over_mean); when that exceeds
// what the plan gave on the load it was planned on by more than
// shift_threshold, every rank starts a round at the same step, planning on
// those steps only (placement_manager.h). The simulator prices the same test
// (sim::SimOptions::shift_check_steps).
//
//   double now = *omni::served_max_over_mean(placement, recent, omni::DispatchMode::kPerBatch);
//   double promised = *omni::served_max_over_mean(placement, planned_on, omni::DispatchMode::kPerBatch);
//   bool shift = omni::is_shift(now, promised, threshold);
//
// Thread safety: pure functions, any thread.
#pragma once

#include <cstdint>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/dispatch/dispatch_mode.h"

namespace omni {

// shift_check_steps = kShiftCheckAuto: one check per tenth of the re-plan
// interval (resolved_shift_check_steps).
inline constexpr int64_t kShiftCheckAuto = -1;

// The check period in steps for an option value and a re-plan interval
// (>= 1): 0 (off) stays 0, a positive value is itself, kShiftCheckAuto is
// max(1, interval / 10). An interval of one step leaves nothing to check
// within it: 0 then.
int64_t resolved_shift_check_steps(int64_t shift_check_steps, int64_t interval_steps);

// Mean over layers of (most loaded rank / mean rank load) when `load`
// [num_layers, num_experts] is served by `placement` with `mode`: kShares
// splits each expert by the placement's shares (placement_balance), kPerBatch
// splits each layer's totals as one batch with the per-batch water-fill
// (BatchBalancer, what split_batch runs). A layer without load counts 1.
// INVALID_ARGUMENT naming both shapes when they differ.
StatusOr<double> served_max_over_mean(const Placement& placement, const LoadMatrix& load, DispatchMode mode);

// The test: the load now costs more than promised by more than threshold.
inline bool is_shift(double now, double promised, double threshold) { return now > promised + threshold; }

}  // namespace omni
