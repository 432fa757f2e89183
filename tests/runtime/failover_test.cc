// Failover of PlacementManager (fail_ranks, lost experts, restore, rebuild)
// and the backup sources, on small hand-checked cases.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "common/random_placement.h"
#include "demo/toy_moe.h"
#include "omniplacement/core/coverage.h"
#include "omniplacement/runtime/backup_source.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/routing_snapshot.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/failure_detector.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

using namespace std::chrono_literals;

// Counts arrivals; wait() blocks (bounded) until `n` have arrived.
class Gate {
 public:
  explicit Gate(int n) : n_(n) {}
  void arrive() {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
    cv_.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return count_ >= n_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_ = 0, count_ = 0;
};

// A dead rank's manager lives until the survivors are done (its transport is
// still shared with them), then is cut off from everyone so that its
// planner's waits end, and destroyed on its own thread.
Status bury(PlacementManager& pm, Gate& survivors_done, int32_t num_ranks) {
  if (!survivors_done.wait(60s)) return deadline_exceeded_error("survivors did not finish");
  std::vector<RankId> others;
  for (RankId r = 0; r < num_ranks; ++r)
    if (r != pm.rank()) others.push_back(r);
  return pm.fail_ranks(others);
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()))).string();
}

TEST(BackupSource, HostMemoryRoundTripAndBadSizes) {
  auto b = HostMemoryBackup::create({8, 4}, 3);
  ASSERT_TRUE(b.ok());
  std::vector<std::byte> w(8, std::byte{7}), out(8);
  ASSERT_TRUE((*b)->set(0, 2, w).ok());
  ASSERT_TRUE((*b)->read_expert(0, 2, out).ok());
  EXPECT_EQ(out, w);
  ASSERT_TRUE((*b)->read_expert(0, 1, out).ok());
  EXPECT_EQ(out, std::vector<std::byte>(8, std::byte{0}));  // never set: zeros
  std::vector<std::byte> small(4);
  EXPECT_EQ((*b)->read_expert(0, 2, small).code(), StatusCode::kInvalidArgument);  // layer 0 has 8 bytes
  EXPECT_EQ((*b)->read_expert(2, 0, out).code(), StatusCode::kOutOfRange);
  EXPECT_EQ((*b)->read_expert(0, 3, out).code(), StatusCode::kOutOfRange);
  EXPECT_EQ((*b)->set(1, -1, small).code(), StatusCode::kOutOfRange);
  EXPECT_FALSE(HostMemoryBackup::create({}, 3).ok());
  EXPECT_FALSE(HostMemoryBackup::create({8, 0}, 3).ok());
}

TEST(BackupSource, SafetensorsCheckpointRoundTripAndChecks) {
  const std::string path = temp_path("omni_backup.safetensors");
  auto fill = [](LayerId l, ExpertId e, std::span<std::byte> out) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(l * 31 + e * 7 + static_cast<int>(i));
    return ok_status();
  };
  ASSERT_TRUE(write_expert_checkpoint(path, {16, 24}, 5, fill).ok());
  auto b = SafetensorsBackup::open(path, 2, 5);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  std::vector<std::byte> out(24), want(24);
  ASSERT_TRUE((*b)->read_expert(1, 4, out).ok());
  ASSERT_TRUE(fill(1, 4, want).ok());
  EXPECT_EQ(out, want);
  std::vector<std::byte> wrong(16);
  EXPECT_EQ((*b)->read_expert(1, 4, wrong).code(), StatusCode::kInvalidArgument);  // 24 bytes in the file
  EXPECT_EQ((*b)->read_expert(2, 0, out).code(), StatusCode::kOutOfRange);
  // A checkpoint that lacks experts the group needs is refused at open.
  auto missing = SafetensorsBackup::open(path, 2, 6);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().to_string().find("layers.0.experts.5"), std::string::npos) << missing.status().to_string();
  EXPECT_FALSE(SafetensorsBackup::open(path + ".absent", 2, 5).ok());
  std::filesystem::remove(path);
}

// 4 ranks x 2 slots, 5 experts: rank 1 holds experts 2 and 3 alone (lost when
// it fails), expert 0 has a replica on ranks 0 and 2.
Placement fixed_placement() {
  PlacementLayout layout;
  layout.num_ranks = 4;
  layout.num_experts = 5;
  layout.slots_per_rank = {2};
  layout.phy2log = {{0, 1, 2, 3, 0, 4, 1, 4}};
  return *Placement::create(layout);
}

struct Cluster {
  ToyMoE model = *ToyMoE::create({1, 5, 4, 3});
  Placement initial = fixed_placement();
  Topology topo = *Topology::uniform(4, 2);
  std::unique_ptr<HostMemoryBackup> backup;
  std::vector<std::unique_ptr<HostWeightStore>> stores;
  Cluster() {
    backup = *HostMemoryBackup::create({model.expert_bytes()}, 5);
    std::vector<std::byte> w(static_cast<size_t>(model.expert_bytes()));
    for (ExpertId e = 0; e < 5; ++e) {
      OMNI_CHECK(model.expert_weights(0, e, w).ok());
      OMNI_CHECK(backup->set(0, e, w).ok());
    }
    for (RankId q = 0; q < 4; ++q) {
      stores.push_back(*HostWeightStore::create({model.expert_bytes()}, {2}, 1 << 20));
      for (SlotId s = 0; s < 2; ++s) {
        OMNI_CHECK(model.expert_weights(0, initial.expert_at(0, q, s), w).ok());
        OMNI_CHECK(stores.back()->write_slot(0, s, 0, w).ok());
      }
    }
  }
  bool slot_holds(RankId q, SlotId s, ExpertId e) const {
    std::vector<std::byte> w(static_cast<size_t>(model.expert_bytes()));
    OMNI_CHECK(model.expert_weights(0, e, w).ok());
    const auto d = stores[static_cast<size_t>(q)]->slot_data(0, s);
    return std::memcmp(d.data(), w.data(), w.size()) == 0;
  }
};

// Runs fn(transport, manager, dead) on every rank of c; rank `dead` dies when
// its fn returns (its manager lives on, silent, until the survivors are done).
std::vector<Status> run_with_dead_rank(const Cluster& c, const PlacementManagerOptions& opt, RankId dead,
                                       const std::function<Status(Transport&, PlacementManager&, bool)>& fn) {
  Gate done(3);
  return LocalGroup::run(4, [&](Transport& t) -> Status {
    const RankId q = t.rank();
    OMNI_ASSIGN_OR_RETURN(auto pm, PlacementManager::create(t, c.topo, c.initial, *c.stores[static_cast<size_t>(q)], opt));
    OMNI_RETURN_IF_ERROR(t.barrier(10s));
    if (q == dead) {
      OMNI_RETURN_IF_ERROR(fn(t, *pm, true));
      return bury(*pm, done, 4);
    }
    const Status s = fn(t, *pm, false);
    done.arrive();
    return s;
  });
}

TEST(Failover, DropsTheFailedRankMarksLostExpertsRestoresAndRebuilds) {
  Cluster c;
  PlacementManagerOptions opt;
  opt.planner_spec = "eplb";
  opt.replan_interval_steps = 4;
  opt.commit_cadence_steps = 1;
  opt.stage_wait = 2s;  // commit steps independent of machine load
  opt.collective_timeout = 10s;
  opt.backup = c.backup.get();
  std::vector<uint64_t> epoch_after_failover(4), epoch_end(4), checksum_end(4);
  auto statuses = run_with_dead_rank(c, opt, 1, [&](Transport& t, PlacementManager& pm, bool dead_here) -> Status {
    if (dead_here) return ok_status();  // rank 1 dies before serving anything
    const RankId q = t.rank();
    const RankId dead[] = {1};
    EXPECT_EQ(pm.fail_ranks(std::vector<RankId>{q}).code(), StatusCode::kInvalidArgument);  // itself
    EXPECT_EQ(pm.fail_ranks(std::vector<RankId>{4}).code(), StatusCode::kInvalidArgument);  // out of range
    OMNI_RETURN_IF_ERROR(pm.fail_ranks(dead));
    OMNI_RETURN_IF_ERROR(pm.fail_ranks(dead));  // twice: no change
    epoch_after_failover[static_cast<size_t>(q)] = pm.epoch();
    EXPECT_EQ(pm.failed_ranks(), std::vector<RankId>{1});
    EXPECT_EQ(pm.lost_experts(), (std::vector<LostExpert>{{0, 2}, {0, 3}}));
    EXPECT_TRUE(t.is_failed(1));
    // Expert 0 keeps its replica on rank 0 or 2, 1 on rank 0 or 3, lost ones are marked.
    std::vector<ExpertId> ids = {0, 1, 2, 3, 4, -1, 9};
    std::vector<GlobalSlot> out(ids.size());
    OMNI_RETURN_IF_ERROR(pm.dispatch(0, ids, out));
    EXPECT_TRUE(out[0] == 0 || out[0] == 4) << out[0];
    EXPECT_TRUE(out[1] == 1 || out[1] == 6) << out[1];
    EXPECT_EQ(out[2], kLostExpertSlot);
    EXPECT_EQ(out[3], kLostExpertSlot);
    EXPECT_TRUE(out[4] == 5 || out[4] == 7) << out[4];
    EXPECT_EQ(out[5], -1);
    EXPECT_EQ(out[6], -1);
    const auto st = pm.stats();
    EXPECT_EQ(st.failovers, 1);
    EXPECT_EQ(st.experts_lost, 2);
    EXPECT_EQ(st.failed_ranks, 1);
    // Serve until the restore round and a re-plan on the survivors are done.
    for (int64_t step = 0; step < 400; ++step) {
      for (int i = 0; i < 20; ++i) {
        std::vector<ExpertId> batch = {static_cast<ExpertId>((step + i) % 5), 0, 0};
        pm.record(0, batch);
      }
      OMNI_RETURN_IF_ERROR(pm.step_boundary(step));
      std::vector<int64_t> done = {pm.stats().redundancy_rebuilt_ns != 0 ? 1 : 0};
      OMNI_RETURN_IF_ERROR(t.all_reduce(std::span<int64_t>(done), ReduceOp::kMin, 10s));
      if (done[0] == 1) break;
    }
    epoch_end[static_cast<size_t>(q)] = pm.epoch();
    checksum_end[static_cast<size_t>(q)] = pm.snapshot()->checksum();
    EXPECT_TRUE(pm.lost_experts().empty());
    const auto end = pm.stats();
    EXPECT_EQ(end.experts_restored, 2);
    EXPECT_GE(end.restore_rounds, 1);
    EXPECT_GT(end.restored_ns, end.failover_published_ns);
    EXPECT_GE(end.redundancy_rebuilt_ns, end.restored_ns);
    // Every slot this rank holds has the weights its placement says, and rank 1's are never routed to.
    const Placement& p = pm.snapshot()->placement();
    for (SlotId s = 0; s < 2; ++s) EXPECT_TRUE(c.slot_holds(q, s, p.expert_at(0, q, s))) << "rank " << q << " slot " << s;
    EXPECT_EQ(p.expert_at(0, 1, 0), kEmptySlot);
    EXPECT_EQ(p.expert_at(0, 1, 1), kEmptySlot);
    return ok_status();
  });
  for (auto& s : statuses) EXPECT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(epoch_after_failover[0], 1u);
  for (RankId q : {2, 3}) {
    EXPECT_EQ(epoch_after_failover[static_cast<size_t>(q)], epoch_after_failover[0]);
    EXPECT_EQ(epoch_end[static_cast<size_t>(q)], epoch_end[0]);
    EXPECT_EQ(checksum_end[static_cast<size_t>(q)], checksum_end[0]);
  }
}

TEST(Failover, WithoutBackupLostExpertsStayLostAndAreReported) {
  Cluster c;
  PlacementManagerOptions opt;
  opt.planner_spec = "eplb";
  opt.replan_interval_steps = 2;
  opt.commit_cadence_steps = 1;
  opt.stage_wait = 2s;
  opt.collective_timeout = 10s;
  auto statuses = run_with_dead_rank(c, opt, 1, [&](Transport&, PlacementManager& pm, bool dead_here) -> Status {
    if (dead_here) return ok_status();
    OMNI_RETURN_IF_ERROR(pm.fail_ranks(std::vector<RankId>{1}));
    for (int64_t step = 0; step < 12; ++step) OMNI_RETURN_IF_ERROR(pm.step_boundary(step));
    EXPECT_EQ(pm.lost_experts().size(), 2u);
    EXPECT_EQ(pm.stats().experts_restored, 0);
    EXPECT_EQ(pm.stats().restored_ns, 0);
    return ok_status();
  });
  for (auto& s : statuses) EXPECT_TRUE(s.ok()) << s.to_string();
}

// After rank 3 of fixed_placement() fails (detector callback on another
// thread, so poll up to `wait`): this survivor has failed it over at epoch 1,
// lost nothing (rank 3 held experts 1 and 4 in slots 6 and 7, both
// replicated) and routes those experts to their surviving replicas.
Status expect_rank3_failed_over(PlacementManager& pm, std::chrono::milliseconds wait) {
  for (auto waited = 0ms; waited < wait && pm.failed_ranks().empty(); waited += 1ms) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(pm.failed_ranks(), std::vector<RankId>{3});
  EXPECT_EQ(pm.epoch(), 1u);
  EXPECT_TRUE(pm.lost_experts().empty());
  std::vector<ExpertId> ids = {1, 4};
  std::vector<GlobalSlot> out(2);
  OMNI_RETURN_IF_ERROR(pm.dispatch(0, ids, out));
  EXPECT_EQ(out, (std::vector<GlobalSlot>{1, 5}));
  return ok_status();
}

TEST(Failover, FailureDetectorDrivesTheFailover) {
  // Real heartbeats: rank 3 goes silent; the survivors' detectors declare it
  // failed and their on_change callbacks fail it over in every manager.
  Cluster c;
  PlacementManagerOptions opt;
  opt.dynamic = false;  // failover needs no re-planning
  auto statuses = run_with_dead_rank(c, opt, 3, [&](Transport& t, PlacementManager& pm_ref, bool dead_here) -> Status {
    PlacementManager* pm = &pm_ref;
    FailureDetectorOptions fo;
    fo.period = 5ms;
    fo.timeout = 300ms;  // generous: the machine is shared
    fo.on_change = [pm](const Membership& m) { pm->on_membership(m); };
    OMNI_ASSIGN_OR_RETURN(auto detector, FailureDetector::start(t, fo));
    OMNI_RETURN_IF_ERROR(t.barrier(10s));  // every detector runs
    if (dead_here) {
      detector->stop(/*graceful=*/false);  // crash
      return ok_status();
    }
    EXPECT_TRUE(detector->wait_for_epoch(1, 20s));
    OMNI_RETURN_IF_ERROR(expect_rank3_failed_over(*pm, 2000ms));
    detector->stop();
    return ok_status();
  });
  for (auto& s : statuses) EXPECT_TRUE(s.ok()) << s.to_string();
}

TEST(Failover, ReportFailureFromOneEngineFailsTheRankOverEverywhere) {
  // Rank 0's engine learns first that rank 3 is gone (say, a CUDA error on a
  // transfer) and reports it; the detectors spread it along the ring 0 -> 1 ->
  // 2 (well before the heartbeat timeout of 2 s) and every survivor's manager fails
  // rank 3 over. (The rank right after a failed one hears of it only from its
  // dead predecessor's silence, i.e. after the timeout: failure_detector.h.
  // Here that rank is 0 itself, the reporter.)
  Cluster c;
  PlacementManagerOptions opt;
  opt.dynamic = false;
  auto statuses = run_with_dead_rank(c, opt, 3, [&](Transport& t, PlacementManager& pm_ref, bool dead_here) -> Status {
    PlacementManager* pm = &pm_ref;
    FailureDetectorOptions fo;
    fo.period = 5ms;
    fo.timeout = 2s;
    fo.on_change = [pm](const Membership& m) { pm->on_membership(m); };
    OMNI_ASSIGN_OR_RETURN(auto detector, FailureDetector::start(t, fo));
    OMNI_RETURN_IF_ERROR(t.barrier(10s));
    if (dead_here) {
      detector->stop(/*graceful=*/false);
      return ok_status();
    }
    if (t.rank() == 0) OMNI_RETURN_IF_ERROR(detector->report_failure(3));
    EXPECT_TRUE(detector->wait_for_epoch(1, 1s));  // by the report, not by the timeout
    OMNI_RETURN_IF_ERROR(expect_rank3_failed_over(*pm, 1000ms));
    detector->stop();
    return ok_status();
  });
  for (auto& s : statuses) EXPECT_TRUE(s.ok()) << s.to_string();
}

TEST(Failover, SnapshotWithoutRanksMatchesAFullBuild) {
  // Property over random placements: the incremental failover snapshot has the
  // expert map of a full build of the dropped placement, and every slot its
  // dispatch tables reach holds the expert and lives on a surviving rank.
  std::mt19937_64 rng(91);
  for (int trial = 0; trial < 40; ++trial) {
    const int32_t R = std::uniform_int_distribution<int32_t>(2, 8)(rng);
    const int32_t E = std::uniform_int_distribution<int32_t>(4, 20)(rng);
    auto base_p = Placement::create(testing::random_layout(rng, 3, R, E, 0, 3, false, 0.1));
    ASSERT_TRUE(base_p.ok()) << base_p.status();
    auto topo = *Topology::uniform(R, R % 2 == 0 ? 2 : 1);
    const RankId me = std::uniform_int_distribution<RankId>(0, R - 1)(rng);
    RankId dead = std::uniform_int_distribution<RankId>(0, R - 2)(rng);
    if (dead >= me) ++dead;
    const RankId failed[] = {dead};
    auto base = *RoutingSnapshot::build(std::make_shared<const Placement>(*base_p), topo, me, 3);
    auto dropped = std::make_shared<const Placement>(*drop_ranks(*base_p, failed));
    auto inc = RoutingSnapshot::without_ranks(*base, dropped, failed, topo, me, 4);
    ASSERT_TRUE(inc.ok()) << inc.status();
    auto full = *RoutingSnapshot::build(dropped, topo, me, 4);
    EXPECT_EQ((*inc)->epoch(), 4u);
    EXPECT_EQ((*inc)->checksum(), full->checksum());
    for (LayerId l = 0; l < 3; ++l) {
      const auto& a = (*inc)->layer(l).map;
      const auto& b = full->layer(l).map;
      EXPECT_EQ(a.phy2log, b.phy2log);
      EXPECT_EQ(a.logcnt, b.logcnt);
      for (ExpertId e = 0; e < E; ++e) {
        const auto ra = a.replicas_of(e), rb = b.replicas_of(e);
        EXPECT_TRUE(std::equal(ra.begin(), ra.end(), rb.begin(), rb.end())) << "trial " << trial << " expert " << e;
        const auto seq = (*inc)->layer(l).dispatch.sequence(e);
        const auto full_seq = full->layer(l).dispatch.sequence(e);
        EXPECT_TRUE(std::equal(seq.begin(), seq.end(), full_seq.begin(), full_seq.end()))
            << "trial " << trial << " layer " << l << " expert " << e;
        for (GlobalSlot g : seq) {
          if (dropped->replica_count(l, e) == 0) {
            EXPECT_EQ(g, kLostExpertSlot);
            continue;
          }
          ASSERT_GE(g, 0);
          EXPECT_EQ(dropped->expert_at(l, g), e);
          EXPECT_NE(dropped->rank_of(l, g), dead);
        }
      }
    }
  }
}

}  // namespace
}  // namespace omni
