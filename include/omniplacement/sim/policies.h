// Policies from planner spec strings: the bridge between the simulator and
// the planner registry (include/omniplacement/planner/planner.h).
//
// A policy is written "<kind>:<planner spec>" or by one of the standard names:
//   contiguous     fixed: experts in id order over ranks, redundant slots empty
//   static-eplb    static:eplb        (fitted on the first interval)
//   static-omni    static:omni
//   dynamic-eplb   dynamic:eplb       (from scratch every interval)
//   dynamic-omni   dynamic:<PolicyContext::dynamic_omni_spec> (incremental: the
//                  placement in force is passed to the planner)
//   oracle         oracle:<PolicyContext::oracle_spec> (planned on each interval itself)
// e.g. "dynamic:omni(max_moves_per_rank=2)" or "static:eplb(global)".
//
//   omni::sim::PolicyContext ctx;
//   ctx.topology = *omni::Topology::uniform(64, 8);
//   ctx.num_layers = 58; ctx.num_experts = 256; ctx.slots_per_rank = 5; ctx.num_groups = 8;
//   auto policies = omni::sim::make_policies("contiguous,static-eplb,dynamic-omni,oracle", ctx);
//
// Thread safety: the PlanFns returned hold copies of the context; each may be
// called from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/sim/simulator.h"

namespace omni::sim {

struct PolicyContext {
  Topology topology;            // ranks and hosts; num_nodes for the planners
  int32_t num_layers = 0;
  int32_t num_experts = 0;
  int32_t slots_per_rank = 0;   // every layer
  int32_t num_groups = 1;       // expert groups (EPLB's num_groups; DeepSeek-V3: 8)
  std::string eplb_spec = "eplb";
  std::string omni_spec = "omni";
  std::string dynamic_omni_spec = "omni";
  std::string oracle_spec = "omni";
  // How plans are served (PlanInput::serving): the cost model's dispatch, one
  // interval per window, its compute per token and expert bytes, so that omni
  // prices its moves as the simulation charges them.
  ServingModel serving;
};

// The standard policy names, in the order of the docs.
std::vector<std::string> standard_policy_names();

// A PlanFn running the planner `spec` with the context's ranks, slots, hosts
// and groups; `incremental` passes the placement in force to the planner.
StatusOr<PlanFn> planner_plan_fn(std::string_view spec, const PolicyContext& ctx, bool incremental);

// One policy from a standard name or "<kind>:<spec>" (kind: static, dynamic, oracle).
StatusOr<PolicySpec> make_policy(std::string_view name, const PolicyContext& ctx);
// A comma-separated list of policies (commas inside parentheses belong to a spec).
StatusOr<std::vector<PolicySpec>> make_policies(std::string_view names, const PolicyContext& ctx);

}  // namespace omni::sim
