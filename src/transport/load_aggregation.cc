#include "omniplacement/transport/load_aggregation.h"

#include <vector>

#include "omniplacement/core/str_cat.h"
#include "deadline.h"
#include "transport_util.h"

namespace omni {

Status all_reduce_load(Transport& transport, LoadMatrix& load, Timeout timeout) {
  const transport_internal::Deadline deadline(timeout);
  const std::string who = transport_internal::where(transport) + ": all_reduce_load";
  // One max-reduction gives both the largest and (negated) the smallest of
  // each rank's shape and kind, so every rank learns whether all agree.
  const int64_t kind = load.is_counts() ? 0 : 1;
  std::vector<int64_t> shape = {load.num_layers(), load.num_experts(), kind,
                                -int64_t{load.num_layers()}, -int64_t{load.num_experts()}, -kind};
  OMNI_RETURN_IF_ERROR(transport.all_reduce(std::span<int64_t>(shape), ReduceOp::kMax, deadline.remaining())
                           .with_context(who + " (shape check)"));
  if (shape[0] != -shape[3] || shape[1] != -shape[4] || shape[2] != -shape[5]) {
    return invalid_argument_error(str_cat(who, ": ranks passed different load matrices: layers in [", -shape[3], ", ",
                                          shape[0], "], experts in [", -shape[4], ", ", shape[1],
                                          "], kinds (0 = counts, 1 = weights) in [", -shape[5], ", ", shape[2],
                                          "]; every rank must pass the same shape and kind"));
  }
  if (load.is_counts()) {
    std::vector<int64_t> sums(load.counts().begin(), load.counts().end());
    OMNI_RETURN_IF_ERROR(transport.all_reduce(std::span<int64_t>(sums), ReduceOp::kSum, deadline.remaining())
                             .with_context(who + " (counts)"));
    OMNI_ASSIGN_OR_RETURN(LoadMatrix total,
                          LoadMatrix::from_counts(load.num_layers(), load.num_experts(), std::move(sums)));
    load = std::move(total);
    return ok_status();
  }
  std::vector<double> sums(load.values().begin(), load.values().end());
  OMNI_RETURN_IF_ERROR(transport.all_reduce(std::span<double>(sums), ReduceOp::kSum, deadline.remaining())
                           .with_context(who + " (weights)"));
  const std::vector<RankId> live = transport.live_ranks();
  OMNI_RETURN_IF_ERROR(transport
                           .broadcast(std::as_writable_bytes(std::span<double>(sums)), live.front(),
                                      deadline.remaining())
                           .with_context(who + " (agreeing on the weights)"));
  StatusOr<LoadMatrix> total = LoadMatrix::from_weights(load.num_layers(), load.num_experts(), std::move(sums));
  if (!total.ok()) return total.status().with_context(who + " (the summed weights are not valid loads)");
  load = std::move(*total);
  return ok_status();
}

}  // namespace omni
