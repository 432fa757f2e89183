// Failure coverage (core/coverage.h) as JSON, shared by omniplace eval and plan.
// Header-only because the CLI's CMakeLists compiles cmd_*.cc files only.
#pragma once

#include <nlohmann/json.hpp>

#include "omniplacement/core/coverage.h"

namespace omni::cli {

inline nlohmann::json coverage_json(const FailureCoverage& c) {
  auto domain = [](const DomainCoverage& d) {
    return nlohmann::json{{"expert_share", d.expert_share},
                          {"load_share", d.load_share},
                          {"worst_domain", d.worst_domain},
                          {"worst_lost_experts", d.worst_lost_experts},
                          {"worst_lost_load_share", d.worst_lost_load_share}};
  };
  return {{"rank", domain(c.rank)}, {"host", domain(c.host)}};
}

}  // namespace omni::cli
