// omniplace_plan_eval checksums (see checksums.cc).
#pragma once

namespace omni::plan_eval {

// Prints one line per (workload, planner spec, mode): the plan's checksum and
// deterministic statistics. Returns the process exit code.
int run_checksums();

}  // namespace omni::plan_eval
