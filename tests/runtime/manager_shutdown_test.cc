// PlacementManager's destructor on every rank after the same last step, while
// the planner threads have a round in hand: shutdown returns within a few
// collectives. Before, a planner that saw the stop before taking up the round
// left the others' planners waiting in its first collective until
// collective_timeout: on that code this test failed in each of three
// invocations, one to several of its eight runs taking the full timeout.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <vector>

#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

constexpr int32_t kRanks = 3, kLayers = 2, kExperts = 6, kSlots = 3, kTokens = 16;
constexpr int64_t kSteps = 41;  // rounds due every 5 steps: the last one is handed over at the last step, 40

// One run of kRanks engine threads over LocalTransport: records skewed ids
// (so that plans move experts), steps kSteps times, then destroys its manager.
// Returns the wall seconds of the whole run; every rank's status must be OK.
double run_and_shut_down(std::chrono::milliseconds collective_timeout) {
  const auto initial = *Placement::contiguous(kLayers, kRanks, kExperts, kSlots);
  const auto topo = *Topology::uniform(kRanks, 1);
  PlacementManagerOptions opt;
  opt.planner_spec = "eplb";
  opt.replan_interval_steps = 5;
  opt.commit_cadence_steps = 1;
  opt.stage_wait = std::chrono::milliseconds(5000);  // rounds commit at the same steps in every run
  opt.collective_timeout = collective_timeout;
  const auto t0 = std::chrono::steady_clock::now();
  auto statuses = LocalGroup::run(kRanks, [&](Transport& t) -> Status {
    OMNI_ASSIGN_OR_RETURN(auto store, HostWeightStore::create(std::vector<int64_t>(kLayers, 64),
                                                              std::vector<int32_t>(kLayers, kSlots), 1 << 20));
    OMNI_ASSIGN_OR_RETURN(auto pm, PlacementManager::create(t, topo, initial, *store, opt));
    std::mt19937_64 rng(77 + static_cast<uint64_t>(t.rank()));
    std::vector<ExpertId> ids(kTokens);
    for (int64_t step = 0; step < kSteps; ++step) {
      for (LayerId l = 0; l < kLayers; ++l) {
        for (auto& e : ids) e = (rng() & 1) ? 0 : std::uniform_int_distribution<ExpertId>(0, kExperts - 1)(rng);
        pm->record(l, ids);
      }
      OMNI_RETURN_IF_ERROR(pm->step_boundary(step));
    }
    EXPECT_GE(pm->stats().rounds_started, 4) << "rank " << t.rank();
    return ok_status();  // pm's destructor runs here, on every rank after step kSteps - 1
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (RankId q = 0; q < kRanks; ++q)
    EXPECT_TRUE(statuses[static_cast<size_t>(q)].ok()) << "rank " << q << ": " << statuses[static_cast<size_t>(q)];
  return seconds;
}

TEST(PlacementManagerShutdown, ARoundInHandDoesNotHoldShutdownForTheCollectiveTimeout) {
  // 20 s of collective timeout against runs that take milliseconds: a run that
  // reaches 10 s waited for a planner that was never coming, on any machine.
  constexpr auto kTimeout = std::chrono::milliseconds(20000);
  for (int run = 0; run < 8; ++run) {
    const double seconds = run_and_shut_down(kTimeout);
    EXPECT_LT(seconds, 10.0) << "run " << run << ": shutting the managers down took " << seconds
                             << " s: a planner waited in a round's collective for one that had stopped";
  }
}

}  // namespace
}  // namespace omni
