// Planner interface and registry: build a planner from a spec string and plan a
// placement from per-layer expert loads.
//
// A planner is a pure function (no threads, no I/O): given a LoadMatrix
// [num_layers, num_experts], a number of ranks and the slots each rank has per
// layer, it decides how many replicas each expert gets and which slot of which
// rank holds each replica. The same spec string works in C++, Python and the CLI.
//
//   auto planner = omni::make_planner("omni(max_replicas_per_expert=8)");
//   if (!planner.ok()) { std::cerr << planner.status() << "\n"; return 1; }
//   omni::PlanInput in;
//   in.load = &load;                      // [58, 256] tokens per expert
//   in.num_ranks = 64;
//   in.num_replicas = 320;                // 5 slots per rank in every layer
//   auto result = (*planner)->plan(in);
//   result->placement.phy2log(0);         // expert of each global slot of layer 0
//   (*planner)->spec();                   // "omni(max_replicas_per_expert=8)"
//
// Registered planners (planner_names()):
//   contiguous  experts in id order over ranks, redundant slots empty (the "no planner" baseline)
//   eplb        DeepSeek's EPLB, bit-for-bit (see eplb.h); eplb(hierarchical), eplb(global)
//   omni        the OmniPlacement planner (see omni_planner.h)
//
// Thread safety: a Planner is immutable after creation; plan() may be called
// from any thread, concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/dispatch/dispatch_mode.h"

namespace omni {

// How a plan will be served: the dispatch in force, and what a planner needs
// to price a weight move in the unit of its gain (omni: a move is made only
// when the step time it is expected to save before the next re-plan exceeds
// the time its weights take over the link). Defaults: static shares, one
// window per interval, DeepSeek-V3 FP8 figures (ANCHORS.md §5).
struct ServingModel {
  // How each expert's tokens are divided over its replicas (dispatch_mode.h):
  // kShares, the plan's shares whatever the batch; kPerBatch, each batch split
  // on its own counts.
  DispatchMode dispatch = DispatchMode::kShares;
  // Steps each window of PlanInput::load and ::samples was counted over (>= 1).
  int64_t window_steps = 1;
  // Steps the plan serves until the next re-plan: its gains are counted over
  // interval_steps / window_steps windows. 0: window_steps (one window).
  int64_t interval_steps = 0;
  // Seconds of expert compute per token-expert assignment on the busiest rank
  // (> 0): 2 x 3 x 7168 x 2048 FLOP at 400 TFLOP/s, 0.22 us.
  double seconds_per_token = 2.0 * 3 * 7168 * 2048 / 400e12;
  // Bytes of one expert's weights (>= 0; 0: moves are free): 3 x 7168 x 2048
  // FP8 parameters, 44 MB. A move takes latency + expert_bytes / bandwidth
  // from the nearest replica in the placement in force, over the link classes
  // of PlanInput::topology (LinkBandwidths defaults without one).
  double expert_bytes = 3.0 * 7168 * 2048;

  // OK when every field is in range; the message names the field.
  Status validate() const;
};

// What to plan. Pointers are borrowed: they must stay valid during plan().
struct PlanInput {
  // Tokens per expert, [num_layers, num_experts]. Required.
  const LoadMatrix* load = nullptr;
  // Ranks of the expert-parallel group (EPLB's num_gpus). Required, >= 1.
  int32_t num_ranks = 0;
  // Slots per rank: one value for every layer, or one per layer (layer-wise
  // uneven). When empty, num_replicas is used instead.
  std::vector<int32_t> slots_per_rank;
  // Total slots (replicas) per layer, a multiple of num_ranks (EPLB's
  // num_replicas). Used only when slots_per_rank is empty.
  int64_t num_replicas = 0;
  // Hosts (EPLB's num_nodes); 0 means: from `topology` when given, else 1.
  int32_t num_nodes = 0;
  // Expert groups (EPLB's num_groups, DeepSeek-V3's n_group); >= 1.
  int32_t num_groups = 1;
  // Optional: rank-to-host map. When given, num_nodes must agree with it.
  const Topology* topology = nullptr;
  // Optional: co-activation of experts, [num_layers, num_experts, num_experts]
  // row-major; element (l, a, b) = tokens of layer l routed to both a and b.
  // Used by planners that keep co-activated experts inside a host.
  const std::vector<double>* coactivation = nullptr;
  // Optional: the placement in force (for incremental planners; the shapes
  // must match load and num_ranks).
  const Placement* current = nullptr;
  // Optional: the windows `load` describes, oldest first, each [num_layers,
  // num_experts] like load (typically the recent windows load was summed
  // from). omni forecasts the next interval from them (load alone when
  // absent); others ignore them. Each has load's shape. Not owned.
  const std::vector<LoadMatrix>* samples = nullptr;
  // Optional limits of an incremental re-plan (with `current`), typed values
  // that override the planner's own setting of the same name (its spec, e.g.
  // omni(max_moves_per_rank=4)) for this call:
  //   max_moves_per_rank  at most this many slots per rank and layer change
  //                       (each is one expert's weights to receive); -1: the
  //                       planner's own setting;
  //   min_gain            > 0: keep `current` unless the mean over layers of
  //                       `load`'s max/mean rank load improves by at least
  //                       this (a check on the window, not on the next
  //                       interval omni plans for); <= 0: no check.
  // Read by the planners make_planner() builds; one that plans from scratch
  // (takes_incremental_limits() false) returns INVALID_ARGUMENT when either is set.
  int32_t max_moves_per_rank = -1;
  double min_gain = -1;
  // How the plan will be served (dispatch, interval, move pricing); omni uses
  // it, the other planners ignore it.
  ServingModel serving;

  // slots_per_rank resolved for every layer: [num_layers], or an error naming
  // what is inconsistent (missing load, non-multiple num_replicas, too few slots).
  StatusOr<std::vector<int32_t>> resolve_slots_per_rank() const;
  // num_nodes resolved from the field and the topology.
  StatusOr<int32_t> resolve_num_nodes() const;
};

struct PlanStats {
  double seconds = 0;                 // wall time of plan()
  int64_t local_search_moves = 0;     // accepted moves/swaps/re-allocations (omni)
  int64_t same_rank_duplicates = 0;   // wasted replicas in the plan (eplb may have them)
  bool time_budget_hit = false;       // omni stopped on its time budget (plan may then vary run to run)
  std::string policy;                 // e.g. "hierarchical" or "global" for eplb
  // With a current placement: slots (over all layers) whose expert differs
  // from the current placement's at the same rank and slot, i.e. expert
  // weights to move; and whether the re-plan was skipped (min_gain).
  int64_t slots_changed = 0;
  bool skipped = false;
};

struct PlanResult {
  // The plan; shares present when the planner splits load unevenly.
  Placement placement;
  // replica_rank[l][g]: creation index of slot g's replica among its expert's
  // replicas (0 = first created), -1 for an empty slot. For
  // ExpertMap::from_placement(placement, ReplicaOrder::kByCreation, replica_rank).
  std::vector<std::vector<int32_t>> replica_rank;
  PlanStats stats;
};

class Planner {
 public:
  virtual ~Planner() = default;
  // Registered name, e.g. "omni".
  virtual std::string name() const = 0;
  // Canonical spec: make_planner(spec())->spec() == spec(). Parameters at
  // their default values are omitted.
  virtual std::string spec() const = 0;
  virtual StatusOr<PlanResult> plan(const PlanInput& input) const = 0;
  // Whether plan() honours PlanInput::max_moves_per_rank and min_gain (omni).
  virtual bool takes_incremental_limits() const { return false; }
};

// Builds a planner from a spec string. Unknown names are NOT_FOUND listing the
// registered names; bad parameters are INVALID_ARGUMENT listing the valid ones.
StatusOr<std::unique_ptr<Planner>> make_planner(std::string_view spec);
// Canonical form of a spec string (make_planner(spec)->spec()).
StatusOr<std::string> canonical_spec(std::string_view spec);
// Registered planner names, sorted.
std::vector<std::string> planner_names();
// One line per planner: name, parameters and defaults.
std::string planner_help();

}  // namespace omni
