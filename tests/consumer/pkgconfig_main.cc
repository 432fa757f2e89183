// Built against the installed library with pkg-config alone (no CMake):
//   c++ -std=c++20 pkgconfig_main.cc $(pkg-config --cflags --libs omniplacement)
// Uses core, planner and io (yaml-cpp, a static dependency the .pc file must name).
#include <omniplacement/core/core.h>
#include <omniplacement/io/config.h>
#include <omniplacement/planner/planner.h>

#include <cstdio>

int main() {
  auto load = omni::LoadMatrix::from_counts(1, 8, {80, 10, 10, 10, 10, 10, 10, 10});
  auto planner = omni::make_planner("omni");
  if (!load.ok() || !planner.ok()) return 1;
  omni::PlanInput in;
  in.load = &*load;
  in.num_ranks = 4;
  in.num_replicas = 12;
  auto plan = (*planner)->plan(in);
  auto config = omni::parse_config("planner: omni\nmax_redundant_per_rank: 1\n");
  if (!plan.ok() || !config.ok()) return 1;
  // The hot expert gets more than one replica; the config names the planner.
  std::printf("pkg-config consumer: expert 0 has %d replicas, config planner %s\n",
              plan->placement.replica_count(0, 0), config->planner.c_str());
  return plan->placement.replica_count(0, 0) >= 2 && config->planner == "omni" ? 0 : 1;
}
