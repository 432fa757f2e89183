// The demo's result table: max/mean rank load per window, summed over the
// window's steps, averaged over the layers and then over the windows of each
// phase, for the placement served (dynamic), the initial placement kept
// (static) and a plan made on each window's own counts (oracle).
//
//   omni::WindowLoads loads(num_windows, L, R, E);
//   ++loads.mutable_dynamic_row(w, l)[rank_serving_the_token];    // while serving, on each rank
//   OMNI_RETURN_IF_ERROR(loads.all_reduce(transport, timeout));   // summed over the ranks
//   auto table = omni::make_phase_table(loads, window_names, &oracle);
//
// Thread safety: WindowLoads is used by one thread (its rank's engine);
// make_phase_table is a pure function of its arguments.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "omniplacement/core/status.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/transport/transport.h"

namespace omni {

struct DemoPhase {
  std::string name;
  int32_t num_windows = 0;
  double dynamic = 0;  // mean over windows and layers of max/mean rank load
  double static_ = 0;
  double oracle = 0;   // a plan made on each window's own counts, priced with the run's dispatch mode (rank 0 only)
};

struct PhaseTable {
  std::vector<DemoPhase> phases;  // in window order; consecutive windows with one name form a phase
  DemoPhase overall;              // "all": the mean over every window reached (1.0 each when none)
};

// Tokens counted while serving, per window: rank loads under the dynamic and
// the static placement, [windows][layers][ranks], and tokens per expert,
// [windows][layers][experts].
class WindowLoads {
 public:
  WindowLoads(int32_t num_windows, int32_t num_layers, int32_t num_ranks, int32_t num_experts);

  int32_t num_windows() const { return windows_; }
  int32_t num_layers() const { return layers_; }
  int32_t num_ranks() const { return ranks_; }
  int32_t num_experts() const { return experts_; }
  // Rows of window w and layer l (both in range; unchecked): num_ranks()
  // entries for the loads, num_experts() for the counts.
  int64_t* mutable_dynamic_row(int32_t w, LayerId l) { return dynamic_.data() + row(w, l) * static_cast<size_t>(ranks_); }
  int64_t* mutable_static_row(int32_t w, LayerId l) { return static_.data() + row(w, l) * static_cast<size_t>(ranks_); }
  int64_t* mutable_counts_row(int32_t w, LayerId l) {
    return counts_.data() + row(w, l) * static_cast<size_t>(experts_);
  }
  std::span<const int64_t> dynamic_row(int32_t w, LayerId l) const;
  std::span<const int64_t> static_row(int32_t w, LayerId l) const;
  std::span<const int64_t> counts_row(int32_t w, LayerId l) const;
  // Tokens counted in window w (all layers).
  int64_t window_tokens(int32_t w) const;

  // Sums every array over the ranks of `transport` (collective; the same
  // sums, in rank order, on every rank). failures_expected: each sum is
  // retried among the survivors (survivor_collective.h).
  Status all_reduce(Transport& transport, Timeout timeout, bool failures_expected = false);

 private:
  size_t row(int32_t w, LayerId l) const { return static_cast<size_t>(w) * static_cast<size_t>(layers_) + static_cast<size_t>(l); }
  int32_t windows_, layers_, ranks_, experts_;
  std::vector<int64_t> dynamic_, static_, counts_;
};

// max/mean of loads (1.0 when they sum to 0).
double max_over_mean(std::span<const int64_t> loads);

// How the oracle column is made: `planner` plans each window's counts with
// `input` (its load replaced; num_ranks, slots and topology as the run's) and
// the plan is priced with `mode` (kPerBatch: the per-batch split of the
// window's counts; kShares: placement_balance). Null planner: oracle 0.
struct OraclePricing {
  const Planner* planner = nullptr;
  PlanInput input;
  DispatchMode mode = DispatchMode::kShares;
};

// The table of `loads` (summed over the ranks): windows without tokens (not
// reached) are left out; window_names has one name per window.
StatusOr<PhaseTable> make_phase_table(const WindowLoads& loads, const std::vector<std::string>& window_names,
                                      const OraclePricing& oracle);

}  // namespace omni
