// CostModel: how long one decode step's MoE layers take under a placement.
//
// Per MoE layer l (docs/simulator.md gives every formula and default):
//   compute_s  = max over ranks r of (tokens_r * compute_s_per_token
//                                     + replicas_r * compute_s_per_replica)
//   dispatch_s = max over ranks r of the all-to-all time of r's dispatch bytes
//   combine_s  = the same for the combine bytes (the reverse direction)
//   layer_s    = layer_overhead_s + compute_s + dispatch_s + combine_s
// and a step is the sum over layers. tokens_r is the load the placement gives
// rank r: with DispatchMode::kShares (the default) each expert's load is split
// over its replicas by the placement's shares (omni::rank_loads, else an even
// split); with kPerBatch it is split on the step's own loads by the runtime's
// per-batch split (omni::balance_batch_loads of dispatch/batch_split.h, what
// the runtime runs with DispatchMode::kPerBatch), and every loaded layer is charged
// batch_allgather_s more for the all-gather of the per-rank counts that the
// split needs.
// Traffic follows core's nearest-replica rule (omni::dispatch_traffic): every
// rank originates 1/R of each expert's tokens and sends a token to a replica on
// its own rank (no transfer), else to the replicas on its host (split evenly),
// else to all replicas (split evenly). A rank's time for one all-to-all phase
// is max(same_host_bytes / same_host_bandwidth, cross_host_bytes /
// cross_host_bandwidth) + latency, where each class's bytes are the larger of
// what it sends and what it receives (links are full duplex; NVLink and the
// network run concurrently).
//
//   auto topo = omni::Topology::uniform(64, 8);
//   auto placement = omni::Placement::contiguous(58, 64, 256, 5);
//   auto model = omni::sim::CostModel::create(*placement, *topo, omni::sim::CostParams{});
//   auto load = omni::LoadMatrix::zeros(58, 256);              // tokens per expert this step
//   omni::StatusOr<omni::sim::StepCost> c = model->step_cost(*load);
//   c->time_s;                                                  // seconds for the 58 MoE layers
//
// Units: seconds, bytes, tokens (a token is one token-expert assignment: a
// token routed to top-8 experts counts 8 times). Bandwidths come from the
// Topology (bytes per second per device).
// Thread safety: a CostModel is immutable after create(); any thread may call
// its const methods concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/dispatch/dispatch_mode.h"
#include "omniplacement/planner/migration_plan.h"

namespace omni::sim {

// How a step's tokens of an expert are divided over its replicas: the
// runtime's DispatchMode (dispatch/dispatch_mode.h): kShares by the
// placement's per-slot shares whatever the step's loads, kPerBatch
// water-filled on the step's loads (the runtime's per-batch split).

// Every parameter of the cost model; defaults describe DeepSeek-V3 decode
// (docs/REFERENCES.md §5): hidden 7168, expert intermediate 2048, FP8 weights.
struct CostParams {
  // Bytes of one expert's weights: 3 x 7168 x 2048 FP8 parameters (44 MB).
  double expert_bytes = 3.0 * 7168 * 2048;
  // Bytes sent per token-expert assignment in dispatch: 7168 FP8 activations
  // plus one FP32 scale per 128 values (~7 KB).
  double dispatch_bytes_per_token = 7168 + 7168 / 128 * 4;
  // Bytes sent back per assignment in combine: 7168 BF16 values (14 KB).
  double combine_bytes_per_token = 7168 * 2;
  // Expert compute per assignment: 2 x 3 x 7168 x 2048 FLOP (88 MFLOP) at an
  // effective 400 TFLOP/s of FP8 grouped GEMM in decode.
  double compute_s_per_token = 2.0 * 3 * 7168 * 2048 / 400e12;
  // Fixed cost per non-empty slot with load (reading its weights once per
  // step; 44 MB at 3.35 TB/s would be 13 us). Off by default so that the
  // compute term is exactly tokens x per-token cost.
  double compute_s_per_replica = 0;
  // Time of everything else in a layer (attention, dense parts), the same
  // under every placement. Off by default: step times are MoE time only.
  double layer_overhead_s = 0;
  // Replica split of the expert loads (see the top of this header).
  DispatchMode dispatch = DispatchMode::kShares;
  // kPerBatch only: seconds per loaded layer for the all-gather of the
  // [num_ranks, num_experts] int64 counts the split needs (one small
  // collective: one all-to-all latency of the default topology, 10 us).
  double batch_allgather_s = 10e-6;

  // OK when every value is finite and >= 0 and expert_bytes > 0.
  Status validate() const;
};

// Cost of one layer in one step.
struct LayerCost {
  double compute_s = 0;
  double dispatch_s = 0;
  double combine_s = 0;
  double allgather_s = 0;       // kPerBatch: batch_allgather_s when the layer has load, else 0
  double time_s = 0;            // layer_overhead_s + compute_s + dispatch_s + combine_s + allgather_s
  double max_tokens = 0;        // tokens on the most loaded rank
  double mean_tokens = 0;       // total tokens / ranks
  double same_host_bytes = 0;   // dispatch + combine bytes sent within hosts (all ranks)
  double cross_host_bytes = 0;  // dispatch + combine bytes sent across hosts (all ranks)
};

// Cost of one step (all layers).
struct StepCost {
  double time_s = 0;  // sum of the layers' time_s
  double compute_s = 0;
  double comm_s = 0;  // dispatch + combine + allgather
  double mean_max_over_mean = 1;  // mean over layers with load of max_tokens / mean_tokens
  double same_host_bytes = 0;
  double cross_host_bytes = 0;
};

class CostModel {
 public:
  // Precomputes the routing of `placement` over `topology` (same num_ranks).
  // Cost O(num_layers * num_slots) once; step_cost is then O(num_layers * num_slots).
  static StatusOr<CostModel> create(const Placement& placement, const Topology& topology, const CostParams& params);

  CostModel() = default;

  int32_t num_layers() const { return static_cast<int32_t>(layers_.size()); }
  int32_t num_experts() const { return num_experts_; }
  int32_t num_ranks() const { return num_ranks_; }
  const CostParams& params() const { return params_; }

  // expert_loads: tokens per expert of layer l this step, [num_experts], finite, >= 0.
  StatusOr<LayerCost> layer_cost(LayerId l, std::span<const double> expert_loads) const;
  // load: [num_layers, num_experts] tokens this step. per_layer, when given,
  // receives the num_layers LayerCosts.
  StatusOr<StepCost> step_cost(const LoadMatrix& load, std::vector<LayerCost>* per_layer = nullptr) const;

 private:
  // One (rank, expert) pair with the expert on that rank: its receive
  // coefficients (tokens received per token of the expert's load).
  struct Holder {
    RankId rank;
    ExpertId expert;
    double recv_same_host;
    double recv_cross_host;
  };
  struct LayerRoute {
    std::vector<ExpertId> slot_expert;  // [num_slots]
    std::vector<double> slot_share;     // [num_slots] share of the expert's load
    int32_t slots_per_rank = 0;
    std::vector<Holder> rank_holders;   // distinct (rank, expert), rank-major
    std::vector<std::pair<HostId, ExpertId>> host_holders;  // distinct (host, expert)
    std::vector<std::vector<RankId>> replica_ranks;  // kPerBatch: per expert, distinct ranks holding it
  };

  StatusOr<LayerCost> evaluate(const LayerRoute& route, std::span<const double> w,
                               std::vector<double>& scratch) const;
  // kPerBatch: adds each rank's tokens under the per-batch split of w to tokens[R].
  // Adds the per-batch split's rank loads to tokens [R] and the token flows
  // of experts with several replica ranks to recv_*/send_* [R].
  Status per_batch_tokens(const LayerRoute& route, std::span<const double> w, double* tokens, double* recv_same,
                          double* recv_cross, double* send_same, double* send_cross) const;
  double phase_seconds(double same_host_bytes, double cross_host_bytes) const;

  CostParams params_;
  int32_t num_experts_ = 0;
  int32_t num_ranks_ = 0;
  std::vector<HostId> host_of_rank_;
  int32_t num_hosts_ = 0;
  double same_host_bw_ = 0;
  double cross_host_bw_ = 0;
  double latency_s_ = 0;
  std::vector<LayerRoute> layers_;
};

// Weight migration from one placement to the next (same shape), priced by
// the migration module's diff() (include/omniplacement/planner/migration_plan.h):
// the slot-by-slot transfers from the nearest holder, in the rounds a
// PlacementManager with the same staging_bytes_per_rank and layers_per_commit
// stages and commits one by one (at most staging_bytes_per_rank received per
// rank and layers_per_commit layers per round; 0: no limit), each round as
// long as its busiest rank, rounds one after another. Every expert weighs
// expert_bytes (rounded to whole bytes). The simulator charges time_s per its
// MigrationMode. INVALID_ARGUMENT for negative budgets, an expert_bytes out of
// [1, kMaxExpertBytes] or placements of different shapes.
struct MigrationCost {
  int64_t transfers = 0;         // expert copies (local copies between slots included)
  int32_t rounds = 0;
  double bytes = 0;              // transfers * expert_bytes
  double cross_host_bytes = 0;   // of which across hosts
  double time_s = 0;
};
StatusOr<MigrationCost> migration_cost(const Placement& from, const Placement& to, const Topology& topology,
                                       const CostParams& params,
                                       int64_t staging_bytes_per_rank = kDefaultStagingBytesPerRank,
                                       int32_t layers_per_commit = 0);
// The migration plan migration_cost() prices (same arguments): its rounds are
// the schedule, transfer by transfer.
StatusOr<MigrationPlan> priced_migration(const Placement& from, const Placement& to, const Topology& topology,
                                         const CostParams& params,
                                         int64_t staging_bytes_per_rank = kDefaultStagingBytesPerRank,
                                         int32_t layers_per_commit = 0);

// The compute lower bound of a step: time_s is the sum over layers of
// lower_bound(load row, num_ranks, num_slots) * compute_s_per_token +
// layer_overhead_s, with no communication at all (a floor no placement
// reaches: docs/REFERENCES.md §6); bound_over_mean is the mean over loaded layers of
// lower_bound / (W / num_ranks), the best max/mean any placement could have.
// num_slots_per_layer: global slots of each layer, [num_layers], or one value for all.
struct StepBound {
  double time_s = 0;
  double bound_over_mean = 1;
};
StatusOr<StepBound> step_lower_bound(const LoadMatrix& load, int32_t num_ranks,
                                     std::span<const int64_t> num_slots_per_layer, const CostParams& params);

}  // namespace omni::sim
