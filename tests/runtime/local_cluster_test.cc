// Tests of LocalCluster: driven from one thread (record, dispatch,
// step_boundary of every rank) it moves weights and every rank commits the
// same epochs, routing only to slots that hold the expected weights; per-batch
// dispatch needs dispatch_all; whole engine loops run on the ranks' threads;
// kills (direct and requested at a checkpoint) are seen by the survivors'
// detectors and leave the killed rank out; a stall holds its rank; bad
// arguments and a closed cluster give errors naming what was wrong.
// Python twin: python/tests/test_runtime.py.
#include "omniplacement/runtime/local_cluster.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

namespace omni {
namespace {

using namespace std::chrono_literals;

constexpr int32_t kRanks = 4, kLayers = 2, kExperts = 8, kSlots = 3, kSlotBytes = 32;

// The byte every weight of (layer, expert) is made of: distinct per pair.
std::byte weight_code(LayerId l, ExpertId e) { return static_cast<std::byte>(1 + l * kExperts + e); }

std::unique_ptr<LocalCluster> make_cluster(LocalClusterOptions o, int32_t ranks = kRanks) {
  auto placement = Placement::contiguous(kLayers, ranks, kExperts, (kExperts + ranks - 1) / ranks + 1);
  OMNI_CHECK(placement.ok());
  auto topo = Topology::uniform(ranks, ranks % 2 == 0 ? 2 : 1);
  OMNI_CHECK(topo.ok());
  auto cluster = LocalCluster::create(*placement, *topo, std::vector<int64_t>(kLayers, kSlotBytes), std::move(o));
  OMNI_CHECK_MSG(cluster.ok(), cluster.status().to_string());
  for (RankId r = 0; r < ranks; ++r)
    for (LayerId l = 0; l < kLayers; ++l)
      for (SlotId s = 0; s < placement->slots_per_rank(l); ++s)
        if (const ExpertId e = placement->expert_at(l, r, s); e >= 0) {
          const std::vector<std::byte> w(kSlotBytes, weight_code(l, e));
          OMNI_CHECK((*cluster)->write_slot(r, l, s, 0, w).ok());
        }
  return std::move(*cluster);
}

LocalClusterOptions moving_options() {
  LocalClusterOptions o;
  o.manager.planner_spec = "eplb";
  o.manager.replan_interval_steps = 4;
  o.manager.commit_cadence_steps = 1;
  o.manager.stage_wait = 10s;  // the commit steps do not depend on machine load
  return o;
}

// The hot expert changes every 6 steps, so re-plans move weights.
std::vector<ExpertId> skewed_ids(std::mt19937_64& rng, int64_t step) {
  const ExpertId hot = static_cast<ExpertId>((step / 6) % kExperts);
  std::vector<ExpertId> ids(24);
  for (auto& id : ids) id = rng() % 10 < 6 ? hot : static_cast<ExpertId>(rng() % kExperts);
  return ids;
}

// Every slot in `slots` holds, on its owner, the weights of the expert asked for.
void expect_routed_to_weights(LocalCluster& c, LayerId l, const std::vector<ExpertId>& ids,
                              const std::vector<GlobalSlot>& slots) {
  const int32_t S = c.initial().slots_per_rank(l);
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_GE(slots[i], 0);
    std::vector<std::byte> got(kSlotBytes);
    ASSERT_TRUE(c.read_slot(slots[i] / S, l, slots[i] % S, 0, got).ok());
    EXPECT_EQ(got[0], weight_code(l, ids[i])) << "layer " << l << ", slot " << slots[i];
  }
}

TEST(LocalCluster, DrivenFromOneThreadMovesWeightsAndCommitsTheSameEpochEverywhere) {
  auto c = make_cluster(moving_options());
  std::mt19937_64 rng(7);
  for (int64_t step = 0; step < 24; ++step) {
    for (LayerId l = 0; l < kLayers; ++l)
      for (RankId r = 0; r < kRanks; ++r) {
        const auto ids = skewed_ids(rng, step);
        ASSERT_TRUE(c->record(r, l, ids).ok());
        std::vector<GlobalSlot> slots(ids.size());
        ASSERT_TRUE(c->dispatch(r, l, ids, slots).ok());
        expect_routed_to_weights(*c, l, ids, slots);
      }
    ASSERT_TRUE(c->step_boundary(step).ok());
    for (RankId r = 1; r < kRanks; ++r) ASSERT_EQ((*c->snapshot(r))->epoch(), (*c->snapshot(0))->epoch()) << step;
  }
  const auto st = c->stats(0);
  ASSERT_TRUE(st.ok());
  EXPECT_GE(st->epoch, 2u);
  EXPECT_GT(st->experts_moved, 0);
  EXPECT_EQ(st->rounds_aborted, 0) << st->last_abort;
  for (RankId r = 1; r < kRanks; ++r) EXPECT_EQ(c->stats(r)->placement_checksum, st->placement_checksum);
  c->close();
  EXPECT_TRUE(c->closed());
  EXPECT_EQ(c->step_boundary(24).code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(c->stats(0).status().message().find("closed"), std::string::npos);
  c->close();  // idempotent
}

TEST(LocalCluster, PerBatchDispatchRunsOnEveryRankAtOnce) {
  LocalClusterOptions o = moving_options();
  o.manager.dispatch_mode = DispatchMode::kPerBatch;
  auto c = make_cluster(o);
  std::vector<GlobalSlot> one(4);
  const std::vector<ExpertId> four = {0, 1, 2, 3};
  EXPECT_EQ(c->dispatch(0, 0, four, one).code(), StatusCode::kFailedPrecondition);
  std::mt19937_64 rng(3);
  for (int64_t step = 0; step < 12; ++step) {
    for (LayerId l = 0; l < kLayers; ++l) {
      std::vector<std::vector<ExpertId>> ids;
      std::vector<std::vector<GlobalSlot>> slots;
      for (RankId r = 0; r < kRanks; ++r) {
        ids.push_back(skewed_ids(rng, step));
        slots.emplace_back(ids.back().size());
        ASSERT_TRUE(c->record(r, l, ids.back()).ok());
      }
      std::vector<std::span<const ExpertId>> in(ids.begin(), ids.end());
      std::vector<std::span<GlobalSlot>> out(slots.begin(), slots.end());
      ASSERT_TRUE(c->dispatch_all(l, in, out).ok());
      for (RankId r = 0; r < kRanks; ++r) expect_routed_to_weights(*c, l, ids[r], slots[r]);
      EXPECT_EQ(c->dispatch_all(l, std::span(in).first(1), out).code(), StatusCode::kInvalidArgument);
    }
    ASSERT_TRUE(c->step_boundary(step).ok());
  }
  EXPECT_GE(c->stats(0)->epoch, 1u);
}

TEST(LocalCluster, RunsEngineLoopsOnTheRankThreads) {
  auto c = make_cluster(moving_options());
  std::vector<std::thread::id> ids(kRanks);
  std::atomic<int> calls{0};
  const Status s = c->run([&](RankId r) -> Status {
    ids[static_cast<size_t>(r)] = std::this_thread::get_id();
    ++calls;
    PlacementManager& pm = c->manager(r);
    std::mt19937_64 rng(static_cast<uint64_t>(r));
    std::vector<GlobalSlot> slots(24);
    for (int64_t step = 0; step < 12; ++step) {
      for (LayerId l = 0; l < kLayers; ++l) {
        const auto topk = skewed_ids(rng, step);
        pm.record(l, topk);
        OMNI_RETURN_IF_ERROR(pm.dispatch(l, topk, slots));
      }
      OMNI_RETURN_IF_ERROR(pm.step_boundary(step));
    }
    return c->transport(r).barrier(10s);
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls.load(), kRanks);
  for (RankId r = 0; r < kRanks; ++r) {
    EXPECT_NE(ids[static_cast<size_t>(r)], std::this_thread::get_id());
    for (RankId q = r + 1; q < kRanks; ++q) EXPECT_NE(ids[static_cast<size_t>(r)], ids[static_cast<size_t>(q)]);
  }
  for (RankId r = 0; r < kRanks; ++r) EXPECT_EQ(c->manager(r).epoch(), c->manager(0).epoch());
  // A failing rank's error comes back with its rank; an exception becomes INTERNAL.
  const Status bad = c->run([](RankId r) { return r == 2 ? invalid_argument_error("nope") : ok_status(); });
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("rank 2"), std::string::npos) << bad;
  const Status threw = c->run([](RankId r) -> Status {
    if (r == 1) throw std::runtime_error("boom");
    return ok_status();
  });
  EXPECT_EQ(threw.code(), StatusCode::kInternal);
  EXPECT_NE(threw.message().find("boom"), std::string::npos) << threw;
}

TEST(LocalCluster, KilledRankIsDetectedByTheSurvivorsAndLeftOut) {
  LocalClusterOptions o;
  o.manager.dynamic = false;
  o.heartbeats = true;
  o.detector.period = 5ms;
  o.detector.timeout = 1000ms;  // generous: the machine is shared (and TSan slows every thread)
  std::atomic<RankId> told{-1};
  o.on_kill = [&](RankId r) { told = r; };
  auto c = make_cluster(o, 3);
  const Status s = c->run([&](RankId r) -> Status {
    for (int64_t step = 0;; ++step) {
      if (r == 2 && step == 3) c->kill(2);
      if (c->checkpoint(r)) return ok_status();
      // Survivors serve until their manager has failed rank 2 over.
      if (c->manager(r).failed_ranks() == std::vector<RankId>{2}) return ok_status();
      if (step > 20000) return deadline_exceeded_error("rank 2 never declared failed");
      std::this_thread::sleep_for(1ms);
    }
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(told.load(), 2);
  EXPECT_TRUE(c->killed(2));
  EXPECT_EQ(c->killed_ranks(), std::vector<RankId>{2});
  ASSERT_GT(c->first_kill_ns(), 0);
  for (RankId r : {0, 1}) {
    EXPECT_GT(c->first_detection_ns(r), c->first_kill_ns()) << r;
    EXPECT_EQ(c->manager(r).failed_ranks(), std::vector<RankId>{2});
  }
  // Later runs and step boundaries leave rank 2 out.
  std::atomic<int> ran{0};
  ASSERT_TRUE(c->run([&](RankId r) {
    EXPECT_NE(r, 2);
    ++ran;
    return c->transport(r).barrier(10s);
  }).ok());
  EXPECT_EQ(ran.load(), 2);
  EXPECT_TRUE(c->step_boundary(0).ok());
  c->close();  // cuts rank 2 off first: returns without waiting for a timeout
}

TEST(LocalCluster, RequestedKillHappensAtTheNextCheckpointAndStallsHoldTheRank) {
  LocalClusterOptions o;
  o.manager.dynamic = false;
  auto c = make_cluster(o, 3);
  EXPECT_FALSE(c->wait_killed(1, 1ms));
  c->request_kill(1);
  EXPECT_FALSE(c->killed(1));  // not before its checkpoint
  c->request_stall(2, 150ms);
  using Clock = std::chrono::steady_clock;
  Clock::time_point stall_began, barrier_passed;
  const Status s = c->run([&](RankId r) -> Status {
    if (r == 0) {
      EXPECT_TRUE(c->wait_killed(1, 60s));
    }
    if (r == 2) stall_began = Clock::now();
    if (c->checkpoint(r)) return r == 1 ? ok_status() : internal_error("killed by mistake");
    // Ranks 0 and 2 meet: rank 0 waits for the end of rank 2's stall.
    OMNI_RETURN_IF_ERROR(c->transport(r).mark_failed(1));
    OMNI_RETURN_IF_ERROR(c->transport(r).barrier(30s));
    if (r == 0) barrier_passed = Clock::now();
    return ok_status();
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(c->killed(1));
  EXPECT_FALSE(c->killed(0));
  EXPECT_FALSE(c->killed(2));
  EXPECT_GE(barrier_passed - stall_began, 150ms);  // a lower bound only: load can only lengthen it
}

TEST(LocalCluster, BadArgumentsNameWhatWasWrong) {
  auto placement = *Placement::contiguous(1, 2, 4, 2);
  auto topo2 = *Topology::uniform(2, 2);
  auto topo3 = *Topology::uniform(3, 3);
  auto message = [](const StatusOr<std::unique_ptr<LocalCluster>>& c) { return c.status().message(); };
  auto c = LocalCluster::create(placement, topo3, {16}, {});
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(message(c).find("topology has 3 ranks"), std::string::npos) << message(c);
  c = LocalCluster::create(placement, topo2, {16, 16}, {});
  EXPECT_NE(message(c).find("slot_bytes has 2 entries"), std::string::npos) << message(c);
  LocalClusterOptions o;
  o.backups = {nullptr};
  c = LocalCluster::create(placement, topo2, {16}, o);
  EXPECT_NE(message(c).find("one per rank"), std::string::npos) << message(c);
  o = {};
  o.manager.planner_spec = "nonesuch";
  c = LocalCluster::create(placement, topo2, {16}, o);
  EXPECT_FALSE(c.ok());
  EXPECT_NE(message(c).find("nonesuch"), std::string::npos) << message(c);
  EXPECT_NE(message(c).find("LocalCluster"), std::string::npos) << message(c);
  o = {};
  o.heartbeats = true;
  o.detector.timeout = 1ms;
  o.detector.period = 10ms;  // timeout < period
  c = LocalCluster::create(placement, topo2, {16}, o);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << c.status();

  auto ok = LocalCluster::create(placement, topo2, {16}, {});
  ASSERT_TRUE(ok.ok()) << ok.status();
  LocalCluster& cluster = **ok;
  std::vector<GlobalSlot> out(1);
  const std::vector<ExpertId> ids = {0};
  EXPECT_NE(cluster.stats(2).status().message().find("rank 2 out of range"), std::string::npos);
  EXPECT_EQ(cluster.record(-1, 0, ids).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cluster.dispatch(5, 0, ids, out).code(), StatusCode::kInvalidArgument);
  std::vector<std::byte> w(17);
  EXPECT_FALSE(cluster.write_slot(0, 0, 0, 0, w).ok());  // one byte too many
  EXPECT_NE(cluster.write_slot(0, 3, 0, 0, w).message().find("layer 3"), std::string::npos);
  w.resize(16, std::byte{7});
  ASSERT_TRUE(cluster.write_slot(1, 0, 1, 0, w).ok());
  std::vector<std::byte> back(16);
  ASSERT_TRUE(cluster.read_slot(1, 0, 1, 0, back).ok());
  EXPECT_EQ(back, w);
  EXPECT_EQ(cluster.slot_bytes(0), 16);
}

}  // namespace
}  // namespace omni
