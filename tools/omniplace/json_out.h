// JSON forms of the facts the omniplace subcommands print about their inputs
// (a placement, a load), so that every --json output names them the same way.
// Header-only because the CLI's CMakeLists compiles cmd_*.cc files only.
#pragma once

#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"

namespace omni::cli {

// {num_layers, num_ranks, num_experts, slots_per_rank: [per layer], has_shares, summary}.
inline nlohmann::json placement_json(const Placement& p) {
  std::vector<int32_t> slots_per_rank;
  slots_per_rank.reserve(static_cast<size_t>(p.num_layers()));
  for (LayerId l = 0; l < p.num_layers(); ++l) slots_per_rank.push_back(p.slots_per_rank(l));
  return {{"num_layers", p.num_layers()},     {"num_ranks", p.num_ranks()},   {"num_experts", p.num_experts()},
          {"slots_per_rank", slots_per_rank}, {"has_shares", p.has_shares()}, {"summary", p.summary()}};
}

// {num_layers, num_experts, kind: "counts" | "weights", total: sum over every layer}.
inline nlohmann::json load_json(const LoadMatrix& m) {
  double total = 0;
  for (LayerId l = 0; l < m.num_layers(); ++l) total += m.layer_total(l);
  return {{"num_layers", m.num_layers()},
          {"num_experts", m.num_experts()},
          {"kind", m.is_counts() ? "counts" : "weights"},
          {"total", total}};
}

// Prints `j` as the single JSON object of a --json run (stdout, one trailing newline).
inline void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << "\n"; }

}  // namespace omni::cli
