// ExpertMap: the routing view of a placement in DeepSeek / vLLM terms.
//
// Per layer:
//   phy2log[g]                 expert in global slot g (-1 empty)          [num_slots]
//   logcnt[e]                  number of replicas of expert e              [num_experts]
//   log2phy[e * max_replicas + k]  k-th replica of e, padded with -1       [num_experts, max_replicas]
// Replica order is either by ascending global slot (vLLM's compute_logical_maps)
// or by creation (DeepSeek EPLB's replica rank), in which case the planner
// supplies replica_rank[l][g], the creation index of slot g's replica.
//
//   auto map = omni::ExpertMap::from_placement(placement);          // by slot
//   std::span<const int32_t> r = map->layer(0).replicas_of(5);      // global slots of expert 5
//
// Thread safety: immutable value; any thread may read it.
#pragma once

#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"

namespace omni {

enum class ReplicaOrder { kBySlot, kByCreation };

struct LayerExpertMap {
  std::vector<ExpertId> phy2log;
  std::vector<int32_t> logcnt;
  std::vector<GlobalSlot> log2phy;
  int32_t max_replicas = 0;  // row width of log2phy within this layer

  std::span<const GlobalSlot> replicas_of(ExpertId e) const {
    return std::span<const GlobalSlot>(log2phy).subspan(static_cast<size_t>(e) * static_cast<size_t>(max_replicas),
                                                        static_cast<size_t>(logcnt[static_cast<size_t>(e)]));
  }
};

class ExpertMap {
 public:
  // replica_rank is needed (and only read) for kByCreation: replica_rank[l][g]
  // for every non-empty slot g is in [0, replica_count) and distinct per expert.
  static StatusOr<ExpertMap> from_placement(const Placement& placement, ReplicaOrder order = ReplicaOrder::kBySlot,
                                            const std::vector<std::vector<int32_t>>& replica_rank = {});

  int32_t num_layers() const { return static_cast<int32_t>(layers_.size()); }
  int32_t num_experts() const { return num_experts_; }
  const LayerExpertMap& layer(LayerId l) const;
  // Largest replica count over all layers (the padded width of log2phy).
  int32_t max_replicas() const;
  // Largest number of global slots over all layers.
  int32_t max_slots() const;

  // Fixed-shape exports, as DeepSeek's rebalance_experts returns them:
  std::vector<int32_t> padded_phy2log() const;  // [num_layers, max_slots()], -1 padded
  std::vector<int32_t> padded_log2phy() const;  // [num_layers, num_experts, max_replicas()], -1 padded
  std::vector<int32_t> logcnt_matrix() const;   // [num_layers, num_experts]

 private:
  int32_t num_experts_ = 0;
  std::vector<LayerExpertMap> layers_;
};

}  // namespace omni
