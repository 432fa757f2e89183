// DeepSeek EPLB, reproduced bit for bit (docs/REFERENCES.md §1).
//
// eplb_rebalance() returns the same phy2log, log2phy (replica-rank order) and
// logcnt as DeepSeek's rebalance_experts(weight, num_replicas, num_groups,
// num_nodes, num_gpus) on every input, including its known defect of putting
// two replicas of one expert on the same GPU (DeepSeek EPLB issue #22). It
// computes as the reference does: loads are converted to float32, sums and
// divisions are float32, sorting is a stable descending sort, and
// argmin/argmax take the first index.
//
//   auto w = omni::LoadMatrix::from_counts(1, 4, {10, 20, 30, 40});
//   auto r = omni::eplb_rebalance(*w, /*num_replicas=*/4, /*num_groups=*/1,
//                                 /*num_nodes=*/1, /*num_gpus=*/1);
//   r->phy2log;   // {3, 2, 1, 0}
//   r->logcnt;    // {1, 1, 1, 1}
//
// Policy: hierarchical when num_groups % num_nodes == 0 (pack expert groups
// onto nodes, replicate within each node, pack replicas onto the node's GPUs),
// otherwise global (the same with one group and one node). kHierarchical and
// kGlobal force one; forcing hierarchical when num_groups % num_nodes != 0 is an
// error.
//
// Preconditions (INVALID_ARGUMENT otherwise, as the reference's assertions):
// every size >= 1; num_replicas % num_gpus == 0; num_replicas >= num_experts;
// and for the hierarchical policy num_experts % num_groups == 0 and
// num_gpus % num_nodes == 0.
//
// Thread safety: pure function.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"

namespace omni {

enum class EplbPolicy { kAuto, kHierarchical, kGlobal };

struct EplbResult {
  int32_t num_layers = 0;
  int32_t num_experts = 0;
  int32_t num_replicas = 0;
  int32_t max_replicas = 0;       // max(logcnt): the width of log2phy
  bool hierarchical = false;      // the policy used
  std::vector<int32_t> phy2log;   // [num_layers, num_replicas]: expert of each physical slot
  std::vector<int32_t> phyrank;   // [num_layers, num_replicas]: replica rank (creation index) of each slot
  std::vector<int32_t> logcnt;    // [num_layers, num_experts]: replicas of each expert
  std::vector<int32_t> log2phy;   // [num_layers, num_experts, max_replicas]: slots by replica rank, -1 padded
};

StatusOr<EplbResult> eplb_rebalance(const LoadMatrix& weight, int32_t num_replicas, int32_t num_groups,
                                    int32_t num_nodes, int32_t num_gpus, EplbPolicy policy = EplbPolicy::kAuto);

}  // namespace omni
