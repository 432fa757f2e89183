// BatchBalancer: the water-fill of the per-batch split, the one implementation
// that the runtime (split_batch, whole tokens), the simulator
// (balance_batch_loads, whole tokens) and the planner (omni's per-batch scoring,
// expected loads in doubles) share, so that the planner scores a placement
// with the split the runtime will run.
//
// Given each expert's distinct replica ranks and its total in one batch, it
// divides the totals over the ranks so that the batch's most loaded rank is as
// light as the placement allows:
//   1. an expert with one replica rank loads that rank; an expert without a
//      replica is dropped (it loads no rank);
//   2. experts with several replica ranks are taken by descending total (ties:
//      lowest id first); each water-fills its ranks: the least loaded first
//      (ties: the lower rank) are raised to a common level;
//   3. each of them is then re-filled with all others fixed, in the same order,
//      pass after pass, until a pass changes nothing (at most kMaxPasses).
// With T = int64_t amounts are whole tokens: each rank gets the integer part of
// its share of the level, and the tokens left over go one each to the ranks
// with the largest fractional parts (ties: the less loaded first). With
// T = double amounts are exact, and a pass changes an amount when it moves by
// more than 1e-9 x (1 + the expert's total).
//
//   auto b = omni::BatchBalancer<int64_t>::create(num_ranks, num_experts);
//   OMNI_RETURN_IF_ERROR(b->set_slots(placement.phy2log(l), placement.slots_per_rank(l)));
//   OMNI_RETURN_IF_ERROR(b->balance(totals));          // totals[e], [num_experts]
//   std::span<const int64_t> load = b->rank_loads();   // [num_ranks]
//   std::span<const int64_t> a = b->amounts(e);        // e's tokens on each of b->replica_ranks(e)
//
// Allocation: create() and the first set_slots() / set_replica_ranks() size the
// buffers; after that, set_slots() with a placement of the same shape and
// balance() allocate nothing, so a caller that scores many placements (the
// planner's local search) or many batches keeps one balancer.
//
// Thread safety: a BatchBalancer is used by one thread at a time; distinct
// balancers are independent.
#pragma once

#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"

namespace omni {

template <typename T>
class BatchBalancer {
  static_assert(std::is_same_v<T, int64_t> || std::is_same_v<T, double>,
                "BatchBalancer counts whole tokens (int64_t) or expected loads (double)");

 public:
  // Refinement passes at most (step 3 above).
  static constexpr int kMaxPasses = 8;
  // Largest total of one expert that balance() accepts (2^50).
  static constexpr T kMaxTotal = static_cast<T>(int64_t{1} << 50);

  // num_ranks > 0, num_experts >= 0. No expert has a replica until set_slots()
  // or set_replica_ranks().
  static StatusOr<BatchBalancer> create(int32_t num_ranks, int32_t num_experts);

  // Replica ranks from one layer's placement: phy2log[g] = expert in global
  // slot g (rank g / slots_per_rank), -1 for an empty slot, length
  // num_ranks * slots_per_rank; experts in [0, num_experts). Several replicas
  // of an expert on one rank count as one replica rank.
  Status set_slots(std::span<const ExpertId> phy2log, int32_t slots_per_rank);
  // Replica ranks given directly: ranks_of[e] = expert e's distinct replica
  // ranks, strictly ascending, in [0, num_ranks) (empty: no replica),
  // length num_experts.
  Status set_replica_ranks(std::span<const std::vector<RankId>> ranks_of);

  // Splits one batch: totals[e] = tokens (or load) of expert e, in
  // [0, kMaxTotal], length num_experts. On success rank_loads() and amounts()
  // describe the split until the next call of a non-const member; on error
  // they are unspecified.
  Status balance(std::span<const T> totals);
  // balance(totals) running all kMaxPasses refinement passes whether or not
  // a pass changes anything. Where balance(totals) of a placement runs all
  // passes (passes() == kMaxPasses), the experts whose replica ranks are
  // linked to no other expert's (a connected part of the placement) get
  // from balance_all_passes of a placement holding only that part the same
  // amounts, and their ranks the same loads, to the bit: a caller that
  // changes one part of a placement (the planner's search) splits only it.
  Status balance_all_passes(std::span<const T> totals);
  // balance(totals), the same result, that also records change_mask() (doubles).
  Status balance_tracked(std::span<const T> totals);
  // Refinement passes the last balance run, and which of them changed an
  // amount (bit p: pass p, from 0).
  int passes() const { return passes_; }
  uint32_t changed_passes() const { return changed_passes_; }
  // T = double, after balance_tracked() or balance_all_passes(): the passes
  // in which expert e's amounts changed (bit p: pass p, from 0), for e with
  // several replica ranks; with whole tokens, or after balance(), unspecified.
  uint8_t change_mask(ExpertId e) const { return change_mask_[static_cast<size_t>(e)]; }

  // Tokens each rank serves under the last balance(), [num_ranks].
  std::span<const T> rank_loads() const { return load_; }
  // Expert e's distinct replica ranks, ascending (e in [0, num_experts)).
  std::span<const RankId> replica_ranks(ExpertId e) const;
  // What each of replica_ranks(e) serves of e's total under the last
  // balance(), same order; sums to the total (empty without a replica).
  std::span<const T> amounts(ExpertId e) const;

  int32_t num_ranks() const { return num_ranks_; }
  int32_t num_experts() const { return num_experts_; }

 private:
  BatchBalancer(int32_t num_ranks, int32_t num_experts);
  void index_flexible();
  // Water-fills `total` of expert e over its ranks and adds it to load_.
  void fill(ExpertId e, T total);
  // balance()'s refinement passes in doubles (T = double only).
  void refine_doubles(std::span<const T> totals, bool all_passes, bool track);
  Status balance_passes(std::span<const T> totals, bool all_passes, bool track);

  int32_t num_ranks_ = 0;
  int32_t num_experts_ = 0;
  // Replica ranks of expert e: ranks_[offset_[e] .. offset_[e + 1]), and
  // amount_ alongside. offset_ [num_experts + 1].
  std::vector<int32_t> offset_;
  std::vector<RankId> ranks_;
  std::vector<T> amount_;
  int passes_ = 0;
  uint32_t changed_passes_ = 0;
  std::vector<ExpertId> flexible_;  // experts with >= 2 replica ranks, ascending id
  std::vector<ExpertId> single_;    // experts with one replica rank, ascending id
  // What a refinement pass reads of order_[i] (doubles): its first position
  // in ranks_ and amount_, its replica count, its first two ranks, its total.
  struct PassEntry {
    int32_t b, n;
    RankId r0, r1;
    ExpertId e;
    double total;
  };
  std::vector<PassEntry> pass_;     // [order_.size()] (per balance, doubles)
  std::vector<ExpertId> order_;     // flexible_ by descending total (per balance)
  std::vector<T> load_;             // [num_ranks]
  // Scratch of fill() and set_slots(), sized once.
  std::vector<int32_t> by_load_;   // [num_ranks]
  std::vector<int32_t> by_frac_;   // [num_ranks]
  std::vector<double> frac_;       // [num_ranks]
  std::vector<T> old_;             // [num_ranks]
  std::vector<T> old_load_;        // [num_ranks]: fill()'s loads of the expert's ranks
  std::vector<int32_t> cursor_;    // [num_experts]
  std::vector<uint8_t> change_mask_;  // [num_experts]: change_mask()
};

extern template class BatchBalancer<int64_t>;
extern template class BatchBalancer<double>;

}  // namespace omni
