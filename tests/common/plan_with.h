// Test helper shared by planner suites: build a planner from a spec string
// and run it once, passing either step's error through.
#pragma once

#include <string>

#include "omniplacement/planner/planner.h"

namespace omni::testing {

inline StatusOr<PlanResult> plan_with(const std::string& spec, const PlanInput& in) {
  auto p = make_planner(spec);
  if (!p.ok()) return p.status();
  return (*p)->plan(in);
}

}  // namespace omni::testing
