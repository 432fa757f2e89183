// One migration model: the rounds a PlacementManager commits are the rounds
// the simulator prices. Four managers (LocalTransport) re-plan a drifting load
// under a small staging budget and layers per commit; every transfer they
// stage is recorded through the before_transfer hook (round, batch) and every
// placement they route by through their snapshots. For each re-plan, the
// simulator's plan (sim::priced_migration) between the placement before the
// re-plan and the one after it, with the same budget, must hold exactly the
// committed batches: same number of rounds, the same transfers in each (source
// and destination slots included), and the placement routed by after each
// commit equal to routing_after_round().
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <random>
#include <tuple>

#include "omniplacement/planner/migration_plan.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/sim/cost_model.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

constexpr int32_t kRanks = 4, kLayers = 4, kExperts = 8, kSlots = 3;
constexpr int64_t kExpertBytes = 96;

struct Recorded {
  std::mutex mu;
  std::map<std::pair<int64_t, int64_t>, std::vector<Transfer>> by_batch;  // (round, batch) -> transfers
  std::map<uint64_t, Placement> by_epoch;                                  // rank 0's routing placements
};

void run_managers(const PlacementManagerOptions& base, Recorded& rec, int64_t steps) {
  const Topology topo = *Topology::uniform(kRanks, 2);
  const Placement initial = *Placement::contiguous(kLayers, kRanks, kExperts, kSlots);
  PlacementManagerOptions opt = base;
  opt.before_transfer = [&rec](const TransferEvent& ev) -> Status {
    std::lock_guard<std::mutex> lock(rec.mu);
    rec.by_batch[{ev.round, ev.batch}].push_back(ev.transfer);
    return ok_status();
  };
  std::vector<std::unique_ptr<HostWeightStore>> stores;
  for (RankId q = 0; q < kRanks; ++q)
    stores.push_back(*HostWeightStore::create(std::vector<int64_t>(kLayers, kExpertBytes),
                                              std::vector<int32_t>(kLayers, kSlots), int64_t{1} << 20));
  std::barrier sync(kRanks);
  auto statuses = LocalGroup::run(kRanks, [&](Transport& t) -> Status {
    auto pm = PlacementManager::create(t, topo, initial, *stores[static_cast<size_t>(t.rank())], opt);
    if (!pm.ok()) return pm.status();
    std::vector<ExpertId> ids(48);
    std::vector<GlobalSlot> slots(ids.size());
    if (t.rank() == 0) rec.by_epoch.emplace(0, initial);
    for (int64_t step = 0; step < steps; ++step) {
      // A hot expert that moves every 6 steps, different per layer.
      std::mt19937_64 rng(static_cast<uint64_t>(step * 31 + t.rank()));
      for (LayerId l = 0; l < kLayers; ++l) {
        const ExpertId hot = static_cast<ExpertId>((step / 6 + 3 * l) % kExperts);
        for (auto& id : ids)
          id = std::bernoulli_distribution(0.5)(rng) ? hot : std::uniform_int_distribution<ExpertId>(0, kExperts - 1)(rng);
        (*pm)->record(l, ids);
        OMNI_RETURN_IF_ERROR((*pm)->dispatch(l, ids, slots));
      }
      OMNI_RETURN_IF_ERROR((*pm)->step_boundary(step));
      if (t.rank() == 0) {
        auto snap = (*pm)->snapshot();
        rec.by_epoch.emplace(snap->epoch(), snap->placement());
      }
      sync.arrive_and_wait();
    }
    const PlacementManagerStats st = (*pm)->stats();
    if (st.rounds_aborted != 0) return internal_error("round aborted: " + st.last_abort);
    return ok_status();
  });
  for (const Status& s : statuses) ASSERT_TRUE(s.ok()) << s;
}

TEST(MigrationSchedule, SimulatorPricesTheRoundsTheRuntimeCommits) {
  PlacementManagerOptions opt;
  opt.planner_spec = "eplb";
  opt.replan_interval_steps = 6;
  opt.commit_cadence_steps = 1;  // every epoch is seen: at most one commit per step
  opt.stage_wait = std::chrono::seconds(20);
  opt.staging_bytes_per_rank = 2 * kExpertBytes;  // two experts per rank per commit
  opt.layers_per_commit = 2;
  Recorded rec;
  run_managers(opt, rec, 96);
  ASSERT_FALSE(rec.by_batch.empty()) << "no transfer was staged";

  sim::CostParams cost;
  cost.expert_bytes = kExpertBytes;
  const Topology topo = *Topology::uniform(kRanks, 2);
  uint64_t epoch = 0;
  int64_t rounds_checked = 0, multi_round_replans = 0;
  for (auto it = rec.by_batch.begin(); it != rec.by_batch.end();) {
    const int64_t round = it->first.first;
    auto end = it;
    int64_t batches = 0;
    while (end != rec.by_batch.end() && end->first.first == round) {
      EXPECT_EQ(end->first.second, batches) << "round " << round << " skipped a batch";
      ++batches, ++end;
    }
    ASSERT_TRUE(rec.by_epoch.count(epoch)) << "round " << round << ": epoch " << epoch << " not seen";
    if (end == rec.by_batch.end() && !rec.by_epoch.count(epoch + batches)) {
      // The last re-plan was still running when the run ended: its commits so far are checked below.
      EXPECT_LT(rec.by_epoch.size(), epoch + 1 + static_cast<uint64_t>(batches));
      epoch = rec.by_epoch.size() - 1;
      break;
    }
    ASSERT_TRUE(rec.by_epoch.count(epoch + batches))
        << "round " << round << ": epoch " << epoch + batches << " not seen";
    const Placement& before = rec.by_epoch.at(epoch);
    const Placement& after = rec.by_epoch.at(epoch + batches);
    auto plan = sim::priced_migration(before, after, topo, cost, opt.staging_bytes_per_rank, opt.layers_per_commit);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_EQ(plan->num_rounds(), batches) << "round " << round;
    auto priced = sim::migration_cost(before, after, topo, cost, opt.staging_bytes_per_rank, opt.layers_per_commit);
    ASSERT_TRUE(priced.ok());
    EXPECT_EQ(priced->rounds, batches);
    for (int64_t b = 0; b < batches; ++b, ++it) {
      std::vector<Transfer> staged = it->second;
      std::sort(staged.begin(), staged.end(), [](const Transfer& x, const Transfer& y) {
        return std::tie(x.layer, x.dst_rank, x.dst_slot) < std::tie(y.layer, y.dst_rank, y.dst_slot);
      });
      EXPECT_EQ(staged, plan->rounds[static_cast<size_t>(b)].transfers) << "round " << round << ", batch " << b;
      auto routed = routing_after_round(before, *plan, after, static_cast<int32_t>(b + 1));
      ASSERT_TRUE(routed.ok()) << routed.status();
      ASSERT_TRUE(rec.by_epoch.count(epoch + b + 1));
      EXPECT_EQ(rec.by_epoch.at(epoch + b + 1), *routed) << "round " << round << ", after batch " << b;
      ++rounds_checked;
    }
    multi_round_replans += batches > 1 ? 1 : 0;
    epoch += static_cast<uint64_t>(batches);
  }
  EXPECT_EQ(epoch + 1, rec.by_epoch.size()) << "an epoch was committed without a recorded transfer";
  EXPECT_GE(rounds_checked, 6);
  EXPECT_GE(multi_round_replans, 2) << "the budget never split a re-plan into several commits";
}

}  // namespace
}  // namespace omni
