#include "omniplacement/runtime/shift_check.h"

#include <algorithm>
#include <vector>

#include "omniplacement/core/metrics.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/dispatch/batch_balancer.h"

namespace omni {

int64_t resolved_shift_check_steps(int64_t shift_check_steps, int64_t interval_steps) {
  if (shift_check_steps == kShiftCheckAuto) {
    if (interval_steps <= 1) return 0;
    return std::max<int64_t>(1, interval_steps / 10);
  }
  return std::max<int64_t>(0, shift_check_steps);
}

StatusOr<double> served_max_over_mean(const Placement& placement, const LoadMatrix& load, DispatchMode mode) {
  if (placement.num_layers() != load.num_layers() || placement.num_experts() != load.num_experts())
    return invalid_argument_error(str_cat("served_max_over_mean: placement has ", placement.num_layers(), " layers x ",
                                          placement.num_experts(), " experts, load ", load.num_layers(), " x ",
                                          load.num_experts()));
  if (mode == DispatchMode::kShares) {
    OMNI_ASSIGN_OR_RETURN(PlacementBalance b, placement_balance(placement, load));
    return b.mean_max_over_mean;
  }
  const int32_t L = placement.num_layers();
  if (L == 0) return 1.0;
  OMNI_ASSIGN_OR_RETURN(auto balancer, BatchBalancer<double>::create(placement.num_ranks(), placement.num_experts()));
  double sum = 0;
  for (LayerId l = 0; l < L; ++l) {
    std::span<const double> row = load.row(l);  // finite and >= 0 (a LoadMatrix invariant)
    OMNI_RETURN_IF_ERROR(balancer.set_slots(placement.phy2log(l), placement.slots_per_rank(l))
                             .with_context(str_cat("served_max_over_mean: layer ", l)));
    OMNI_RETURN_IF_ERROR(balancer.balance(row).with_context(str_cat("served_max_over_mean: layer ", l)));
    std::span<const double> ranks = balancer.rank_loads();
    double total = 0, max = 0;
    for (double x : ranks) {
      total += x;
      max = std::max(max, x);
    }
    sum += total > 0 ? max * static_cast<double>(ranks.size()) / total : 1.0;
  }
  return sum / static_cast<double>(L);
}

}  // namespace omni
