// Randomized protocol test of PlacementManager over LocalTransport: many seeds,
// random re-plan intervals, cadences, batch sizes, staging limits and transfer
// delays (and, for some seeds, injected transfer failures). After every step
// every rank checks that each slot its routing can reach holds, on the owning
// rank, exactly the weights of the expert the routing expects, and that all
// ranks are at the same epoch.
#include "omniplacement/runtime/placement_manager.h"

#include <gtest/gtest.h>

#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "demo/toy_moe.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

struct Scenario {
  uint64_t seed = 0;
  int32_t ranks = 4;
  int32_t ranks_per_host = 2;
  int32_t layers = 3;
  int32_t experts = 8;
  int32_t slots = 3;
  int64_t steps = 60;
  bool inject_failures = false;
  DispatchMode mode = DispatchMode::kShares;
  std::string planner = "eplb";
  int64_t step_us = 300;
};

struct Outcome {
  uint64_t epoch = 0;
  uint64_t checksum = 0;
  int64_t violations = 0;
  int64_t aborted = 0;
  int64_t committed = 0;
};

// Runs one scenario; returns every rank's outcome.
std::vector<Outcome> run(const Scenario& sc) {
  std::mt19937_64 rng(sc.seed);
  const int32_t R = sc.ranks, L = sc.layers, E = sc.experts, S = sc.slots;
  auto model = *ToyMoE::create({L, E, 4, sc.seed});
  auto topo = *Topology::uniform(R, sc.ranks_per_host);
  auto initial = *Placement::contiguous(L, R, E, S);
  PlacementManagerOptions opt;
  opt.planner_spec = sc.planner;
  opt.replan_interval_steps = std::uniform_int_distribution<int64_t>(2, 9)(rng);
  opt.commit_cadence_steps = std::uniform_int_distribution<int32_t>(1, 3)(rng);
  opt.layers_per_commit = std::uniform_int_distribution<int32_t>(0, 2)(rng);
  // Sometimes too small for two layers' moves: forces one layer per batch.
  opt.staging_bytes_per_rank = model.expert_bytes() * std::uniform_int_distribution<int64_t>(S, 4 * S)(rng);
  opt.commit_timeout_steps = 300;
  opt.transfer_timeout = std::chrono::milliseconds(2000);
  opt.collective_timeout = std::chrono::milliseconds(20000);
  opt.dispatch_mode = sc.mode;
  const uint64_t fault_seed = rng();
  opt.before_transfer = [&sc, fault_seed](const TransferEvent& ev) -> Status {
    std::mt19937_64 r(fault_seed ^ (static_cast<uint64_t>(ev.round) << 32) ^
                      (static_cast<uint64_t>(ev.transfer.layer) << 16) ^ static_cast<uint64_t>(ev.transfer.dst_slot) ^
                      (static_cast<uint64_t>(ev.transfer.dst_rank) << 24));
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 1500)(r)));
    if (sc.inject_failures && std::uniform_int_distribution<int>(0, 19)(r) == 0)
      return unavailable_error("injected transfer failure");
    return ok_status();
  };
  // Hot experts shift every few steps: random per-phase popularity.
  const int64_t phase_len = std::uniform_int_distribution<int64_t>(3, 12)(rng);
  const uint64_t load_seed = rng();

  std::vector<std::unique_ptr<HostWeightStore>> stores(static_cast<size_t>(R));
  for (RankId q = 0; q < R; ++q) {
    stores[static_cast<size_t>(q)] = *HostWeightStore::create(std::vector<int64_t>(static_cast<size_t>(L), model.expert_bytes()),
                                                              std::vector<int32_t>(static_cast<size_t>(L), S),
                                                              opt.staging_bytes_per_rank);
    std::vector<std::byte> buf(static_cast<size_t>(model.expert_bytes()));
    for (LayerId l = 0; l < L; ++l)
      for (SlotId s = 0; s < S; ++s)
        if (const ExpertId e = initial.expert_at(l, q, s); e >= 0) {
          OMNI_CHECK(model.expert_weights(l, e, buf).ok());
          OMNI_CHECK(stores[static_cast<size_t>(q)]->write_slot(l, s, 0, buf).ok());
        }
  }
  std::vector<std::vector<std::vector<std::byte>>> truth(static_cast<size_t>(L));
  for (LayerId l = 0; l < L; ++l)
    for (ExpertId e = 0; e < E; ++e) {
      truth[static_cast<size_t>(l)].emplace_back(static_cast<size_t>(model.expert_bytes()));
      OMNI_CHECK(model.expert_weights(l, e, truth[static_cast<size_t>(l)].back()).ok());
    }

  std::barrier sync(R);
  std::vector<uint64_t> epochs(static_cast<size_t>(R) * static_cast<size_t>(sc.steps), 0);
  std::vector<Outcome> outcomes(static_cast<size_t>(R));
  auto statuses = LocalGroup::run(R, [&](Transport& t) -> Status {
    const RankId q = t.rank();
    auto pm = PlacementManager::create(t, topo, initial, *stores[static_cast<size_t>(q)], opt);
    if (!pm.ok()) {
      // Keep the barrier balanced for the other ranks.
      for (int64_t s = 0; s < 2 * sc.steps; ++s) sync.arrive_and_wait();
      return pm.status();
    }
    Outcome& out = outcomes[static_cast<size_t>(q)];
    std::vector<ExpertId> ids(64);
    std::vector<GlobalSlot> slots(64);
    Status first_error;
    for (int64_t step = 0; step < sc.steps; ++step) {
      std::mt19937_64 tok(load_seed ^ static_cast<uint64_t>(step * 1315423911) ^ static_cast<uint64_t>(q));
      std::mt19937_64 pop(load_seed ^ static_cast<uint64_t>(step / phase_len));
      std::vector<double> w(static_cast<size_t>(E));
      for (auto& v : w) v = std::exp(std::normal_distribution<double>(0, 1.5)(pop));
      std::discrete_distribution<int> pick(w.begin(), w.end());
      for (LayerId l = 0; l < L && first_error.ok(); ++l) {
        for (auto& id : ids) id = pick(tok);
        (*pm)->record(l, ids);
        Status s = (*pm)->dispatch(l, ids, slots);
        if (!s.ok()) first_error = s;
        // Every dispatched token lands on a slot whose committed weights are its expert's.
        auto snap = (*pm)->snapshot();
        for (size_t i = 0; i < ids.size(); ++i) {
          const GlobalSlot g = slots[i];
          if (g < 0 || snap->placement().expert_at(l, g) != ids[i]) {
            ++out.violations;
            continue;
          }
          const RankId owner = snap->placement().rank_of(l, g);
          const auto data = stores[static_cast<size_t>(owner)]->slot_data(l, snap->placement().local_slot(l, g));
          if (std::memcmp(data.data(), truth[static_cast<size_t>(l)][static_cast<size_t>(ids[i])].data(), data.size()) != 0)
            ++out.violations;
        }
      }
      if (first_error.ok()) first_error = (*pm)->step_boundary(step);
      // A forward pass takes time; without it the engine would outrun every transfer.
      std::this_thread::sleep_for(std::chrono::microseconds(sc.step_us));
      sync.arrive_and_wait();  // every rank is past step_boundary(step)
      // Every slot this rank's routing can reach holds the expected expert on its owner.
      auto snap = (*pm)->snapshot();
      for (LayerId l = 0; l < L; ++l) {
        for (GlobalSlot g : snap->layer(l).dispatch.targets()) {
          const ExpertId e = snap->placement().expert_at(l, g);
          const RankId owner = snap->placement().rank_of(l, g);
          const auto data = stores[static_cast<size_t>(owner)]->slot_data(l, snap->placement().local_slot(l, g));
          if (e < 0 || std::memcmp(data.data(), truth[static_cast<size_t>(l)][static_cast<size_t>(e)].data(), data.size()) != 0)
            ++out.violations;
        }
      }
      epochs[static_cast<size_t>(step) * static_cast<size_t>(R) + static_cast<size_t>(q)] = snap->epoch();
      sync.arrive_and_wait();  // checks done before anyone commits again
    }
    const auto st = (*pm)->stats();
    out.epoch = (*pm)->epoch();
    out.checksum = (*pm)->snapshot()->checksum();
    out.aborted = st.rounds_aborted;
    out.committed = st.batches_committed;
    if (q == 0 && std::getenv("OMNI_TEST_VERBOSE"))
      std::fprintf(stderr, "seed %llu: started %lld completed %lld nochange %lld aborted %lld epoch %llu last: %s\n",
                   static_cast<unsigned long long>(sc.seed), static_cast<long long>(st.rounds_started),
                   static_cast<long long>(st.rounds_completed), static_cast<long long>(st.rounds_no_change),
                   static_cast<long long>(st.rounds_aborted), static_cast<unsigned long long>(st.epoch),
                   st.last_abort.c_str());
    return first_error;
  });
  for (RankId q = 0; q < R; ++q) EXPECT_TRUE(statuses[static_cast<size_t>(q)].ok()) << statuses[static_cast<size_t>(q)];
  for (int64_t step = 0; step < sc.steps; ++step)
    for (RankId q = 1; q < R; ++q)
      EXPECT_EQ(epochs[static_cast<size_t>(step) * static_cast<size_t>(R) + static_cast<size_t>(q)],
                epochs[static_cast<size_t>(step) * static_cast<size_t>(R)])
          << "seed " << sc.seed << ": ranks disagree on the epoch after step " << step;
  return outcomes;
}

TEST(PlacementManagerProtocol, RandomizedNeverRoutesToIncompleteSlots) {
  int64_t total_commits = 0;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    Scenario sc;
    sc.seed = seed;
    std::mt19937_64 rng(seed * 77);
    sc.ranks = std::uniform_int_distribution<int32_t>(2, 5)(rng);
    sc.ranks_per_host = sc.ranks % 2 == 0 ? 2 : 1;
    sc.layers = std::uniform_int_distribution<int32_t>(1, 3)(rng);
    sc.experts = std::uniform_int_distribution<int32_t>(sc.ranks, 3 * sc.ranks)(rng);
    sc.slots = (sc.experts + sc.ranks - 1) / sc.ranks + std::uniform_int_distribution<int32_t>(1, 2)(rng);
    sc.steps = 120;
    sc.mode = seed % 3 == 0 ? DispatchMode::kPerBatch : DispatchMode::kShares;
    auto out = run(sc);
    for (const Outcome& o : out) {
      EXPECT_EQ(o.violations, 0) << "seed " << seed;
      EXPECT_EQ(o.epoch, out[0].epoch) << "seed " << seed;
      EXPECT_EQ(o.checksum, out[0].checksum) << "seed " << seed;
    }
    total_commits += static_cast<int64_t>(out[0].epoch);
  }
  EXPECT_GE(total_commits, 20) << "too few commits to exercise the protocol";
}

TEST(PlacementManagerProtocol, FailedTransfersAbortAndKeepTheEpoch) {
  int64_t aborted = 0, committed = 0;
  for (uint64_t seed = 100; seed < 106; ++seed) {
    Scenario sc;
    sc.seed = seed;
    sc.inject_failures = true;
    sc.steps = 120;
    auto out = run(sc);
    for (const Outcome& o : out) {
      EXPECT_EQ(o.violations, 0) << "seed " << seed;
      EXPECT_EQ(o.epoch, out[0].epoch);
      EXPECT_EQ(o.checksum, out[0].checksum);
      EXPECT_EQ(o.aborted, out[0].aborted) << "ranks disagree on aborts, seed " << seed;
    }
    aborted += out[0].aborted;
    committed += out[0].committed;
  }
  EXPECT_GT(aborted, 0) << "no injected failure aborted a round";
  EXPECT_GT(committed, 0);
}

}  // namespace
}  // namespace omni
