// DemoRankLoop: the serving loop of one demo rank, one step at a time. A step
// draws the rank's tokens, records and dispatches them through its
// PlacementManager (timed: the engine thread's cost), dispatches the same
// tokens under the static placement to count its loads, serves every
// (token, expert) through the ExpertExchange and checks it, serves again on
// the new map what died with a failed rank, and ends with step_boundary.
//
//   auto loop = omni::DemoRankLoop::create(rank, config, workload.routing, model, initial, topology);
//   for (int64_t step = 0; step < config.steps; ++step) OMNI_RETURN_IF_ERROR((*loop)->serve_step(step));
//   // (*loop)->loads(): this rank's window loads, to be summed over the ranks.
//
// Collective: every live rank serves the same steps in the same order. Thread
// safety: one thread (the rank's engine thread); everything given to create()
// is borrowed and must outlive the loop.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "demo/demo.h"
#include "demo/expert_exchange.h"
#include "demo/phase_table.h"
#include "demo/routing_workload.h"
#include "demo/toy_moe.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/dispatch/dispatch_table.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/transport.h"

namespace omni {

// What one rank serves with.
struct DemoRank {
  Transport* transport = nullptr;
  PlacementManager* manager = nullptr;
  const HostWeightStore* store = nullptr;
};

class DemoRankLoop {
 public:
  // initial: the placement the ranks started from (the static placement).
  static StatusOr<std::unique_ptr<DemoRankLoop>> create(const DemoRank& rank, const DemoConfig& config,
                                                        const RoutingWorkload& workload, const ToyMoE& model,
                                                        const Placement& initial, const Topology& topology);

  // Serves step `step` (see the overview). Errors: a transport or manager
  // error (a collective that timed out, a dispatch that failed).
  Status serve_step(int64_t step);

  // This rank's figures so far.
  WindowLoads& loads() { return loads_; }
  const ServeCounts& counts() const { return counts_; }
  int64_t tokens_lost_expert() const { return tokens_lost_expert_; }  // kLostExpertSlot: marked, not served
  int64_t requests_reserved() const { return requests_reserved_; }    // served again after a failure
  double dispatch_seconds() const { return dispatch_s_; }             // record + dispatch
  double step_boundary_seconds() const { return boundary_s_; }

 private:
  DemoRankLoop(const DemoRank& rank, const DemoConfig& config, const RoutingWorkload& workload, const ToyMoE& model,
               const Placement& initial, const Topology& topology);
  // pm.dispatch of layer l; with failure injection a per-batch collective cut
  // short by a failure is tried again (every survivor fails it alike).
  Status dispatch_layer(LayerId l);
  // Counts the step's tokens (dynamic and static loads, expert counts) and
  // lists the items to serve under `now`.
  Status account(int64_t step, const Placement& now);
  // Serves retry_ (requests that died with a rank) again on the map without it.
  Status serve_again(int64_t step);

  const DemoRank rank_;
  const DemoConfig& config_;
  const RoutingWorkload& workload_;
  const Placement& initial_;
  const Topology& topology_;
  const int32_t L_, E_, n_;
  const bool failing_, per_batch_;
  ExpertExchange exchange_;
  std::vector<LayerDispatch> static_tables_;
  std::vector<std::vector<uint32_t>> static_counters_, retry_counters_;
  WindowLoads loads_;
  ServeCounts counts_;
  int64_t tokens_lost_expert_ = 0, requests_reserved_ = 0;
  double dispatch_s_ = 0, boundary_s_ = 0;
  std::vector<std::vector<ExpertId>> ids_;     // [layer][n]: this step's routing
  std::vector<std::vector<GlobalSlot>> out_;   // [layer][n]: the dispatched slots
  std::vector<GlobalSlot> static_out_;
  std::vector<ServeItem> items_, retry_;
};

}  // namespace omni
