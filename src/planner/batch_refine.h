// Internal (not installed): the local search behind omni(per_batch=true),
// which shapes one layer's placement for the runtime's per-batch split
// (include/omniplacement/dispatch/batch_split.h, DispatchMode::kPerBatch).
//
// Under the per-batch split the runtime divides each batch's tokens of an
// expert over its replicas after seeing the batch, so the most loaded rank of
// a batch depends on which experts share replicas on which ranks, not on the
// plan's shares. The search scores a placement by the mean, over sample load
// vectors, of (most loaded rank after the split) / (mean rank load), the split
// being the runtime's own water-fill (BatchBalancer, dispatch/batch_balancer.h):
// experts with one replica load their rank, the others water-fill their ranks
// in descending load and are re-filled until nothing changes (at most 8
// passes); here BatchBalancer<double> (expected loads) where the runtime runs
// BatchBalancer<int64_t> (whole tokens).
//
// Moves: swap the experts of two slots on different ranks; put an expert into
// an empty slot or into a slot whose expert has another replica. No move
// leaves an expert without a replica or puts two replicas of an expert on one
// rank. First improvement over a shuffled candidate list (fixed seed, so the
// result is deterministic), until a full sweep improves nothing, the
// evaluation budget is spent or the deadline passes.
//
// With a current placement, every slot that would receive an expert it does
// not hold now costs move_cost (in units of max/mean), and
// max_moves_per_rank (>= 0) caps such slots per rank.
//
// Thread safety: pure function.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"

namespace omni::detail {

struct BatchRefineOptions {
  int32_t num_ranks = 0;
  int32_t slots_per_rank = 0;
  int32_t max_replicas_per_expert = 0;  // >= 1 (callers resolve 0 to num_ranks)
  double move_cost = 0;                 // >= 0, per changed slot, max/mean units
  int32_t max_moves_per_rank = -1;      // -1: no cap; only with a current placement
  int64_t max_evals = 0;                // > 0: placements scored at most
  uint64_t seed = 0;                    // candidate order
};

struct BatchRefineResult {
  std::vector<ExpertId> phy2log;  // [num_ranks * slots_per_rank], -1 for empty slots
  double score = 0;               // mean over samples of max/mean, without move costs
  int64_t evals = 0;              // placements scored
  int64_t moves = 0;              // improvements taken
  bool budget_hit = false;        // stopped by max_evals or the deadline
};

// Scores of one placement: mean over samples of max/mean rank load after the
// per-batch split. phy2log [R * S] (-1 empty), samples[k] = loads [E] (>= 0).
double batch_split_score(std::span<const ExpertId> phy2log, const std::vector<std::vector<double>>& samples,
                         int32_t num_ranks, int32_t slots_per_rank);

// plan: the placement to improve, [R * S], every expert in [0, E) present;
// current: the placement in force, same shape, every expert present, or
// empty (no move costs). With a current placement the search starts from
// whichever of the two scores better, move costs included (current has
// none). samples: K >= 1 load vectors [E]. deadline may be null.
BatchRefineResult refine_for_batch_split(std::span<const ExpertId> plan, std::span<const ExpertId> current,
                                         const std::vector<std::vector<double>>& samples,
                                         const BatchRefineOptions& options,
                                         const std::chrono::steady_clock::time_point* deadline);

}  // namespace omni::detail
