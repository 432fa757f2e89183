// Per-batch split: divide each expert's tokens of one batch over its replicas
// using the batch's actual per-expert counts, so that the batch's most loaded
// rank is as light as the placement allows.
//
// Every rank contributes its per-expert counts of the batch (one small
// all-gather per layer, [num_ranks, num_experts] int64); every rank then runs
// split_batch() on the same inputs and gets the same global decision, of which
// it keeps its own part: for each expert, how many of its own tokens go to
// which replica. The decision is BatchBalancer<int64_t>'s water-fill
// (batch_balancer.h): experts with one replica load their rank; experts with
// several replicas are taken in descending count (ties to the lowest id) and
// water-fill their ranks (the least loaded first), then each is re-filled with
// the others fixed, pass after pass until nothing changes (at most 8 passes).
// Tokens then flow to the chosen replica amounts preferring the origin rank,
// then its host, then other hosts.
//
//   std::vector<int64_t> counts = all_gathered;    // [num_ranks * num_experts]
//   auto split = omni::split_batch(placement, l, topology, my_rank, counts);
//   omni::BatchDispatch d(*split);
//   d.dispatch(my_topk_ids, out);                   // my_topk_ids gave my row of counts
//
// Thread safety: split_batch is a pure function; a BatchDispatch is used by one
// thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"

namespace omni {

struct BatchSplit {
  // Segments of rank `rank`'s tokens per expert e: indices
  // [segment_offset[e], segment_offset[e + 1]) of segment_slot/segment_count;
  // the first segment_count tokens go to segment_slot, and so on. [num_experts + 1].
  std::vector<int32_t> segment_offset;
  std::vector<GlobalSlot> segment_slot;
  std::vector<int64_t> segment_count;
  // Tokens each rank serves in this batch under the split (all ranks), [num_ranks].
  std::vector<int64_t> rank_load;
};

// counts[q * num_experts + e] = tokens of expert e on rank q in this batch
// (>= 0), length num_ranks * num_experts. Experts with no replica get no segment.
StatusOr<BatchSplit> split_batch(const Placement& placement, LayerId l, const Topology& topology, RankId rank,
                                 std::span<const int64_t> counts);

// The balancing step of split_batch on its own, for callers that only need
// the rank loads (the simulator prices per-batch dispatch with it); a one-shot
// BatchBalancer<int64_t> (batch_balancer.h), which a caller balancing many
// batches on one placement may keep instead:
// ranks_of[e] = the distinct ranks holding expert e, strictly ascending (empty:
// no replica; its tokens are dropped), totals[e] = tokens of e in the batch
// (>= 0, <= 2^50), [num_experts]. Returns tokens per rank, [num_ranks]; when
// `amounts` is given, (*amounts)[e][k] = tokens of e served on ranks_of[e][k]
// (empty for experts with fewer than two replica ranks). Deterministic; pure.
StatusOr<std::vector<int64_t>> balance_batch_loads(int32_t num_ranks, std::span<const std::vector<RankId>> ranks_of,
                                                   std::span<const int64_t> totals,
                                                   std::vector<std::vector<int64_t>>* amounts = nullptr);

// ranks_of for balance_batch_loads: layer l's distinct replica ranks per expert,
// ascending, [num_experts]. l must be in [0, num_layers).
std::vector<std::vector<RankId>> layer_replica_ranks(const Placement& placement, LayerId l);

// Walks a BatchSplit: the i-th token of expert e (in call order) goes to the
// segment containing i. Tokens beyond the split's count of e (a caller that
// dispatches more than it counted) stay on e's last segment; experts without
// segments and ids outside [0, num_experts) give -1.
class BatchDispatch {
 public:
  explicit BatchDispatch(const BatchSplit& split);
  void dispatch(std::span<const ExpertId> ids, std::span<GlobalSlot> out);

 private:
  const BatchSplit& split_;
  std::vector<int32_t> segment_;  // current segment per expert
  std::vector<int64_t> used_;     // tokens given to the current segment
};

}  // namespace omni
