// Layer-wise uneven redundancy: where to spend a memory budget of redundant slots.
//
// A budget of B redundant slots per rank, summed over all MoE layers (not per
// layer), is split into k_l >= 0 extra slots per rank for each layer l
// (sum k_l <= B). MoE layers run one after another, so what a step costs is
// the sum over layers of the most loaded rank; the allocation minimises it.
//
//   auto planner = omni::make_planner("omni");
//   auto a = omni::allocate_redundancy(load, /*num_ranks=*/12, /*budget=*/12, **planner,
//                                      omni::BudgetRule::kOptimal);
//   omni::PlanInput in;
//   in.load = &load;
//   in.num_ranks = 12;
//   in.slots_per_rank = a->slots_per_rank;     // per layer
//   auto plan = (*planner)->plan(in);
//
// Method: the planner plans every layer with base + k slots per rank for
// k = 0..max_per_layer (base = ceil(num_experts / num_ranks)); f_l(k) is the
// resulting max rank load (shares honoured). kOptimal then picks the k_l
// minimising sum f_l(k_l) exactly by dynamic programming over the budget;
// kUniform spreads the budget evenly (B / L per layer, the remainder to the
// lowest layer ids); kHeaviestLayers is omni-infer's rule: +1 slot per rank on
// the B layers with the largest f_l(0) (wrapping round when B > L).
//
// Cost: num_layers x (max_per_layer + 1) single-layer plans.
// Thread safety: pure function.
#pragma once

#include <cstdint>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"
#include "omniplacement/planner/planner.h"

namespace omni {

enum class BudgetRule { kOptimal, kUniform, kHeaviestLayers };
const char* budget_rule_name(BudgetRule r);  // "optimal", "uniform", "heaviest-layers"

struct BudgetAllocation {
  std::vector<int32_t> redundant_per_rank;  // [num_layers]: k_l
  std::vector<int32_t> slots_per_rank;      // [num_layers]: base + k_l
  std::vector<double> layer_max;            // [num_layers]: f_l(k_l), tokens
  double sum_max = 0;                       // sum of layer_max
};

// budget >= 0; max_per_layer 0 means min(budget, base), raised to
// ceil(budget / num_layers) so that every rule fits in the table.
StatusOr<BudgetAllocation> allocate_redundancy(const LoadMatrix& load, int32_t num_ranks, int64_t budget,
                                               const Planner& planner, BudgetRule rule, int32_t max_per_layer = 0);

}  // namespace omni
