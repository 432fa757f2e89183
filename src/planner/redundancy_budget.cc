// Layer-wise redundancy budget: a cost table from the planner, then an exact
// dynamic program (or one of the two reference rules).
#include "omniplacement/planner/redundancy_budget.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

const char* budget_rule_name(BudgetRule r) {
  switch (r) {
    case BudgetRule::kOptimal: return "optimal";
    case BudgetRule::kUniform: return "uniform";
    case BudgetRule::kHeaviestLayers: return "heaviest-layers";
  }
  return "optimal";
}

StatusOr<BudgetAllocation> allocate_redundancy(const LoadMatrix& load, int32_t num_ranks, int64_t budget,
                                               const Planner& planner, BudgetRule rule, int32_t max_per_layer) {
  const int32_t L = load.num_layers(), E = load.num_experts();
  if (L < 1 || E < 1) return invalid_argument_error(str_cat("redundancy budget: empty load matrix (", L, " x ", E, ")"));
  if (num_ranks < 1 || num_ranks > kMaxRanks) {
    return invalid_argument_error(str_cat("redundancy budget: num_ranks must be in [1, ", kMaxRanks, "], got ", num_ranks));
  }
  const int32_t base = (E + num_ranks - 1) / num_ranks;
  if (budget < 0 || budget > static_cast<int64_t>(L) * (kMaxSlotsPerRank - base)) {
    return invalid_argument_error(str_cat("redundancy budget: budget must be in [0, ", static_cast<int64_t>(L) * (kMaxSlotsPerRank - base),
                                          "] redundant slots per rank over all layers, got ", budget));
  }
  if (max_per_layer < 0) {
    return invalid_argument_error(str_cat("redundancy budget: max_per_layer must be >= 0, got ", max_per_layer));
  }
  const int64_t spread = (budget + L - 1) / L;
  int64_t kmax = max_per_layer > 0 ? max_per_layer : std::min<int64_t>(budget, base);
  kmax = std::max(kmax, spread);
  kmax = std::min<int64_t>(kmax, std::min<int64_t>(kMaxSlotsPerRank, kMaxSlotsPerLayer / num_ranks) - base);
  if (kmax < spread) {
    return invalid_argument_error(str_cat("redundancy budget: ", budget, " slots over ", L,
                                          " layers exceed the per-layer slot limit"));
  }
  const size_t K = static_cast<size_t>(kmax) + 1;

  // f[l][k]: the planner's max rank load of layer l with base + k slots per rank.
  std::vector<std::vector<double>> f(static_cast<size_t>(L), std::vector<double>(K, 0.0));
  for (LayerId l = 0; l < L; ++l) {
    OMNI_ASSIGN_OR_RETURN(LoadMatrix one, load.layers(l, 1));
    for (size_t k = 0; k < K; ++k) {
      PlanInput in;
      in.load = &one;
      in.num_ranks = num_ranks;
      in.slots_per_rank = {base + static_cast<int32_t>(k)};
      auto plan = planner.plan(in);
      if (!plan.ok()) return plan.status().with_context(str_cat("redundancy budget, layer ", l, ", +", k, " slots"));
      OMNI_ASSIGN_OR_RETURN(LayerBalance b, layer_balance(plan->placement, one, 0));
      f[static_cast<size_t>(l)][k] = b.max;
    }
  }

  std::vector<int32_t> k_of(static_cast<size_t>(L), 0);
  switch (rule) {
    case BudgetRule::kUniform:
      for (LayerId l = 0; l < L; ++l) k_of[static_cast<size_t>(l)] = static_cast<int32_t>(budget / L + (l < budget % L ? 1 : 0));
      break;
    case BudgetRule::kHeaviestLayers: {
      std::vector<int32_t> order(static_cast<size_t>(L));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return f[static_cast<size_t>(a)][0] > f[static_cast<size_t>(b)][0];
      });
      for (int32_t i = 0; i < L; ++i)
        k_of[static_cast<size_t>(order[static_cast<size_t>(i)])] = static_cast<int32_t>(budget / L + (i < budget % L ? 1 : 0));
      break;
    }
    case BudgetRule::kOptimal: {
      // best[l][b]: min cost of layers [0, l) using at most b slots; choice[l][b] the k of layer l - 1.
      const size_t B = static_cast<size_t>(budget) + 1;
      const double inf = std::numeric_limits<double>::infinity();
      std::vector<double> prev(B, 0.0), cur(B);
      std::vector<std::vector<int32_t>> choice(static_cast<size_t>(L), std::vector<int32_t>(B, 0));
      for (LayerId l = 0; l < L; ++l) {
        for (size_t b = 0; b < B; ++b) {
          cur[b] = inf;
          for (size_t k = 0; k < K && k <= b; ++k) {
            const double c = prev[b - k] + f[static_cast<size_t>(l)][k];
            // Ties keep the smaller k: spend memory only for a gain.
            if (c < cur[b]) {
              cur[b] = c;
              choice[static_cast<size_t>(l)][b] = static_cast<int32_t>(k);
            }
          }
        }
        std::swap(prev, cur);
      }
      size_t b = B - 1;
      for (LayerId l = L - 1; l >= 0; --l) {
        k_of[static_cast<size_t>(l)] = choice[static_cast<size_t>(l)][b];
        b -= static_cast<size_t>(k_of[static_cast<size_t>(l)]);
      }
      break;
    }
  }

  BudgetAllocation a;
  a.redundant_per_rank = k_of;
  for (LayerId l = 0; l < L; ++l) {
    const int32_t k = k_of[static_cast<size_t>(l)];
    a.slots_per_rank.push_back(base + k);
    a.layer_max.push_back(f[static_cast<size_t>(l)][static_cast<size_t>(k)]);
    a.sum_max += a.layer_max.back();
  }
  return a;
}

}  // namespace omni
