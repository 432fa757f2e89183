// Reports of a simulation: the summary table and the per-step CSV.
//
//   auto r = omni::sim::simulate(trace, topology, policies, options);
//   std::cout << omni::sim::summary_table(*r);
//   omni::Status s = omni::sim::write_steps_csv(*r, "steps.csv");
//
// Thread safety: pure functions of an immutable SimResult.
#pragma once

#include <string>

#include "omniplacement/core/status.h"
#include "omniplacement/sim/simulator.h"

namespace omni::sim {

// One line per policy (the lower bound last): kind, mean and p99 step time
// (ms), mean max/mean rank load (all steps, and after the first interval),
// cross-host traffic and moved weights (GB), expert copies, migration stall
// (s), plans made and planner wall time (s).
std::string summary_table(const SimResult& result);

// Header "step,policy,kind,time_s,compute_s,comm_s,migration_s,max_over_mean,
// cross_host_bytes,moved_bytes,moved_experts", then one row per step and policy (step-major).
// Requires result.steps (SimOptions::record_steps). Errors name the file.
Status write_steps_csv(const SimResult& result, const std::string& path);

}  // namespace omni::sim
