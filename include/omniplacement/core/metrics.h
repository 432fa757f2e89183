// Balance and traffic metrics of a placement under a load (pure functions).
//
//   auto loads = omni::rank_loads(placement, load, /*layer=*/0);   // [num_ranks] tokens
//   auto b = omni::placement_balance(placement, load);
//   b->mean_max_over_mean;   // 1.0 is perfect
//
// Definitions (per layer; W = total load, R = ranks, mean = W / R):
//   max_over_mean  = max rank load / mean                  (1.0 is perfect)
//   imbalance      = (max - mean) / mean                   (TensorRT-LLM's figure)
//   balancedness   = mean / max                            (vLLM's figure, in (0, 1])
//   lower_bound    = max(W / R, min over replica counts summing to S of max_e load_e / count_e),
//                    the second term found exactly by water-filling (docs/REFERENCES.md §6)
//   excess         = (max - lower_bound) / mean            (in units of max/mean)
// A layer with no load at all is perfectly balanced: max_over_mean = 1,
// imbalance = excess = 0, balancedness = 1.
//
// Load split: an expert's load is divided over its replicas evenly, or by the
// placement's per-replica shares when it has them (SplitMode::kShares).
//
// Units: loads are tokens (any consistent unit); traffic in the same unit.
// Thread safety: pure functions, any thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"

namespace omni {

enum class SplitMode {
  kEven,    // every replica takes 1 / replica_count of its expert's load
  kShares,  // the placement's shares when present, else even
};

// Per-rank load of layer l: [num_ranks]. expert_loads has num_experts elements
// (finite, >= 0); slot_shares is empty (even split) or has num_slots(l)
// elements (share of the expert's load per slot).
StatusOr<std::vector<double>> rank_loads(const Placement& placement, LayerId l, std::span<const double> expert_loads,
                                         std::span<const double> slot_shares = {});
// The same with the load matrix row l and the placement's shares per `mode`.
StatusOr<std::vector<double>> rank_loads(const Placement& placement, const LoadMatrix& load, LayerId l,
                                         SplitMode mode = SplitMode::kShares);

// The lower bound of docs/REFERENCES.md §6 for one layer: num_slots >= number of
// experts is expected (fewer slots: each expert counted once). num_ranks >= 1.
double lower_bound(std::span<const double> expert_loads, int32_t num_ranks, int64_t num_slots);
// Water-filling alone: replica counts (sum num_slots, each >= 1) minimising
// max load / count; ties go to the lowest expert id. [num_experts].
std::vector<int32_t> water_fill_counts(std::span<const double> expert_loads, int64_t num_slots);

struct LayerBalance {
  double total = 0;
  double mean = 0;
  double max = 0;
  RankId max_rank = 0;  // first rank with the max
  double max_over_mean = 1;
  double imbalance = 0;
  double balancedness = 1;
  double lower_bound = 0;
  double bound_over_mean = 1;
  double excess = 0;
};

// From per-rank loads and a lower bound.
LayerBalance balance_of(std::span<const double> rank_loads, double lower_bound);

StatusOr<LayerBalance> layer_balance(const Placement& placement, const LoadMatrix& load, LayerId l,
                                     SplitMode mode = SplitMode::kShares);

struct PlacementBalance {
  std::vector<LayerBalance> layers;
  double mean_max_over_mean = 1;  // mean over layers
  double mean_imbalance = 0;
  double balancedness = 1;        // sum over layers of mean / sum of max (vLLM)
  double sum_max = 0;             // sum over layers of max rank load (what a step costs)
  double sum_lower_bound = 0;
  double mean_excess = 0;         // mean over layers
};

// Placement and load must agree on num_layers and num_experts.
StatusOr<PlacementBalance> placement_balance(const Placement& placement, const LoadMatrix& load,
                                             SplitMode mode = SplitMode::kShares);

// Replicas beyond the first of an expert on the same rank (wasted replicas),
// in layer l / over all layers.
int64_t same_rank_duplicates(const Placement& placement, LayerId l);
int64_t same_rank_duplicates(const Placement& placement);

// Where dispatched tokens go when tokens originate evenly on all ranks and each
// is served by a replica on its own rank if there is one, else on its own host,
// else on another host (the nearest-replica rule). Fractions of the total load.
struct TrafficSplit {
  double total = 0;       // tokens
  double same_rank = 0;   // fraction served on the origin rank (no transfer)
  double same_host = 0;   // fraction sent within the origin host
  double cross_host = 0;  // fraction sent across hosts
};

StatusOr<TrafficSplit> dispatch_traffic(const Placement& placement, const LoadMatrix& load, const Topology& topology,
                                        LayerId l);
// Summed over all layers (fractions of the total over all layers).
StatusOr<TrafficSplit> dispatch_traffic(const Placement& placement, const LoadMatrix& load, const Topology& topology);

}  // namespace omni
