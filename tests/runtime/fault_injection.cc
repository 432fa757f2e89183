// Fault-injection suite of the runtime's failover (issue 9): LocalCluster ranks
// running PlacementManagers are killed at random moments of the protocol (at
// an idle step, as the sender or the receiver of weights in flight, right
// after a commit) over many seeds. A simulated detector tells every survivor
// after a random delay (the FailureDetector itself is tested in transport).
//
// Checked at every step on every survivor:
//  - a token is routed either to a live slot that holds, on its owner, exactly
//    its expert's weights, or (only when the expert has no replica left) to
//    kLostExpertSlot; once a survivor knows of a failure it never routes to
//    the failed rank;
//  - every slot of its own placement holds the expected expert's weights (no
//    half-copied or stale weights);
// and at the end: every survivor is at the same epoch and placement checksum,
// no expert is lost any more (restored from the backup: host memory or a
// safetensors checkpoint written here), redundancy was rebuilt, and nothing
// hung (every wait in the runtime is bounded; ctest's timeout is the guard).
//
// Scenarios run in lockstep (a barrier between the serving phase and the
// step_boundary phase) so that reading another rank's slot never races with
// its commit. OMNI_FAULT_SCENARIOS=N changes the number of scenarios per
// test case (the total injected failures are printed).
#include <gtest/gtest.h>

#include <barrier>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "omniplacement/runtime/backup_source.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/toy_moe.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

using namespace std::chrono_literals;

enum class Moment { kIdle, kSender, kReceiver, kAfterCommit };
const char* moment_name(Moment m) {
  switch (m) {
    case Moment::kIdle: return "idle";
    case Moment::kSender: return "sender";
    case Moment::kReceiver: return "receiver";
    case Moment::kAfterCommit: return "after-commit";
  }
  return "?";
}

struct Fixture {
  static constexpr int32_t kLayers = 2, kExperts = 6, kSlots = 3, kHidden = 4;
  ToyMoE model = *ToyMoE::create({kLayers, kExperts, kHidden, 7});
  std::vector<std::vector<std::vector<std::byte>>> truth;  // [layer][expert]
  std::unique_ptr<HostMemoryBackup> host;
  std::unique_ptr<SafetensorsBackup> ckpt;
  Fixture() {
    const std::vector<int64_t> bytes(kLayers, model.expert_bytes());
    host = *HostMemoryBackup::create(bytes, kExperts);
    truth.resize(kLayers);
    for (LayerId l = 0; l < kLayers; ++l)
      for (ExpertId e = 0; e < kExperts; ++e) {
        auto& t = truth[static_cast<size_t>(l)].emplace_back(static_cast<size_t>(model.expert_bytes()));
        OMNI_CHECK(model.expert_weights(l, e, t).ok());
        OMNI_CHECK(host->set(l, e, t).ok());
      }
    path =
        (std::filesystem::temp_directory_path() / ("omni_fault_" + std::to_string(::getpid()) + ".safetensors")).string();
    OMNI_CHECK(write_expert_checkpoint(path, bytes, kExperts, [&](LayerId l, ExpertId e, std::span<std::byte> out) {
                 return model.expert_weights(l, e, out);
               }).ok());
    ckpt = *SafetensorsBackup::open(path, kLayers, kExperts);
  }
  ~Fixture() { std::filesystem::remove(path); }  // the backup reads the file at every restore
  std::string path;
};

struct Result {
  int64_t injected = 0;
  int64_t violations = 0;
  int64_t lost_tokens = 0;       // kLostExpertSlot (expert with no replica at the time)
  int64_t window_tokens = 0;     // routed to a killed rank before this survivor knew
  bool agree = true;
  int64_t lost_at_end = 0;
  int64_t restored = 0;
  bool rebuilt = true;
  std::string detail;
};

Result run_scenario(const Fixture& fx, uint64_t seed, Moment moment, int32_t victims, bool safetensors) {
  constexpr int32_t R = 4, L = Fixture::kLayers, E = Fixture::kExperts, S = Fixture::kSlots;
  std::mt19937_64 rng(seed);
  auto topo = *Topology::uniform(R, 2);
  auto initial = *Placement::contiguous(L, R, E, S);
  PlacementManagerOptions opt;
  opt.planner_spec = "eplb";
  opt.replan_interval_steps = std::uniform_int_distribution<int64_t>(2, 5)(rng);
  opt.commit_cadence_steps = std::uniform_int_distribution<int32_t>(1, 2)(rng);
  opt.layers_per_commit = std::uniform_int_distribution<int32_t>(0, 1)(rng);
  opt.stage_wait = 20ms;  // rounds keep pace with the steps on a loaded machine (bounded wait)
  opt.commit_timeout_steps = 200;
  opt.transfer_timeout = 5s;
  opt.collective_timeout = 10s;
  opt.backup = safetensors ? static_cast<const BackupSource*>(fx.ckpt.get()) : fx.host.get();
  const int64_t kill_step = std::uniform_int_distribution<int64_t>(3, 12)(rng);
  // Runs until every survivor has restored and rebuilt (at least 20 steps
  // after the kill), at most max_steps.
  const int64_t min_steps = kill_step + 20, max_steps = kill_step + 5000;
  std::vector<RankId> order = {0, 1, 2, 3};
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<RankId> doomed(order.begin(), order.begin() + victims);
  const uint64_t load_seed = rng();
  const uint64_t delay_seed = rng();

  // Kill state shared by the ranks, the hooks and the detector.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<char> killed(R, 0), detected(R, 0), armed(R, 0), requested(R, 0);
  int32_t finished = 0;
  bool detector_done = false;
  auto kill = [&](RankId v) {
    std::lock_guard<std::mutex> lock(mu);
    if (!killed[static_cast<size_t>(v)]) killed[static_cast<size_t>(v)] = 1;
    cv.notify_all();
  };
  auto is_killed = [&](RankId v) {
    std::lock_guard<std::mutex> lock(mu);
    return killed[static_cast<size_t>(v)] != 0;
  };
  // The victim's engine thread: dies here when its planner asked for it.
  auto checkpoint = [&](RankId v) {
    std::lock_guard<std::mutex> lock(mu);
    if (requested[static_cast<size_t>(v)]) killed[static_cast<size_t>(v)] = 1;
    cv.notify_all();
    return killed[static_cast<size_t>(v)] != 0;
  };
  auto is_armed = [&](RankId v) {
    std::lock_guard<std::mutex> lock(mu);
    return armed[static_cast<size_t>(v)] != 0 && !killed[static_cast<size_t>(v)];
  };
  // A rank dies as a whole: the hook (on the victim's planner thread, with a
  // transfer in flight) asks for the kill and never finishes that transfer;
  // the victim's engine thread dies at its next step (it may be inside a
  // collective right now, which it completes as a live rank would have).
  auto die_in_hook = [&](RankId v) -> Status {
    std::unique_lock<std::mutex> lock(mu);
    requested[static_cast<size_t>(v)] = 1;
    cv.wait_for(lock, 30s, [&] { return killed[static_cast<size_t>(v)] != 0; });
    return unavailable_error("killed with a transfer in flight");
  };
  if (moment == Moment::kSender)
    opt.before_send = [&](const TransferEvent& ev) -> Status {
      return is_armed(ev.transfer.src_rank) ? die_in_hook(ev.transfer.src_rank) : ok_status();
    };
  if (moment == Moment::kReceiver)
    opt.before_transfer = [&](const TransferEvent& ev) -> Status {
      if (ev.transfer.src_rank == ev.transfer.dst_rank || !is_armed(ev.transfer.dst_rank)) return ok_status();
      return die_in_hook(ev.transfer.dst_rank);
    };

  std::vector<std::unique_ptr<HostWeightStore>> stores(R);
  for (RankId q = 0; q < R; ++q) {
    stores[static_cast<size_t>(q)] = *HostWeightStore::create(std::vector<int64_t>(L, fx.model.expert_bytes()),
                                                              std::vector<int32_t>(L, S), opt.staging_limit_bytes);
    for (LayerId l = 0; l < L; ++l)
      for (SlotId s = 0; s < S; ++s)
        if (const ExpertId e = initial.expert_at(l, q, s); e >= 0)
          OMNI_CHECK(stores[static_cast<size_t>(q)]->write_slot(l, s, 0, fx.truth[static_cast<size_t>(l)][static_cast<size_t>(e)]).ok());
  }
  std::vector<std::unique_ptr<PlacementManager>> pms(R);
  std::vector<std::atomic<int>> settled(R);  // per rank: 1 = done (restored and rebuilt), or dead
  bool stop_now = false;  // written by the barrier's completion, read by every rank after it
  auto on_phase = [&]() noexcept {
    bool all = true;
    for (auto& s : settled) all = all && s.load() != 0;
    stop_now = all;
  };
  std::barrier sync(R, on_phase);
  std::vector<Result> per_rank(R);
  std::vector<std::pair<uint64_t, uint64_t>> final_state(R);

  // The simulated detector: tells every live rank about each kill after 0-3 ms.
  std::thread detector([&] {
    std::mt19937_64 d(delay_seed);
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      RankId v = -1;
      for (RankId r = 0; r < R; ++r)
        if (killed[static_cast<size_t>(r)] && !detected[static_cast<size_t>(r)]) v = r;
      int32_t live = 0;
      for (RankId r = 0; r < R; ++r) live += killed[static_cast<size_t>(r)] ? 0 : 1;
      if (v < 0 && finished >= live) break;
      if (v < 0) {
        cv.wait_for(lock, 2ms);
        continue;
      }
      detected[static_cast<size_t>(v)] = 1;
      std::vector<RankId> targets;
      for (RankId r = 0; r < R; ++r)
        if (!killed[static_cast<size_t>(r)]) targets.push_back(r);
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(d)));
      const RankId one[] = {v};
      for (RankId r : targets) OMNI_CHECK(pms[static_cast<size_t>(r)]->fail_ranks(one).ok());
      lock.lock();
    }
    detector_done = true;
    cv.notify_all();
  });

  auto statuses = LocalCluster::run(R, [&](Transport& t) -> Status {
    const RankId q = t.rank();
    auto created = PlacementManager::create(t, topo, initial, *stores[static_cast<size_t>(q)], opt);
    OMNI_CHECK_MSG(created.ok(), created.status().to_string());
    pms[static_cast<size_t>(q)] = std::move(*created);
    PlacementManager& pm = *pms[static_cast<size_t>(q)];
    Result& out = per_rank[static_cast<size_t>(q)];
    const bool victim = std::find(doomed.begin(), doomed.end(), q) != doomed.end();
    std::vector<ExpertId> ids(32);
    std::vector<GlobalSlot> slots(32);
    sync.arrive_and_wait();  // every manager exists before the detector may use one
    auto note = [&](const std::string& what) {
      if (out.violations++ == 0) out.detail = "rank " + std::to_string(q) + ": " + what;
    };
    bool dead = false;
    for (int64_t step = 0; step < max_steps && !dead; ++step) {
      // Phase A: serve.
      if (checkpoint(q)) {
        settled[static_cast<size_t>(q)] = 1;
        sync.arrive_and_drop();
        dead = true;
        break;
      }
      std::mt19937_64 tok(load_seed ^ static_cast<uint64_t>(step * 1315423911) ^ static_cast<uint64_t>(q));
      std::mt19937_64 pop(load_seed ^ static_cast<uint64_t>(step / 4));
      std::vector<double> w(E);
      for (auto& v : w) v = std::exp(std::normal_distribution<double>(0, 1.5)(pop));
      std::discrete_distribution<int> pick(w.begin(), w.end());
      for (LayerId l = 0; l < L; ++l) {
        for (auto& id : ids) id = pick(tok);
        pm.record(l, ids);
        const auto known = pm.failed_ranks();
        const auto before = pm.snapshot();
        OMNI_CHECK(pm.dispatch(l, ids, slots).ok());
        const auto after = pm.snapshot();
        for (size_t i = 0; i < ids.size(); ++i) {
          const GlobalSlot g = slots[i];
          if (g == kLostExpertSlot) {
            ++out.lost_tokens;
            if (after->placement().replica_count(l, ids[i]) != 0) note("expert with a replica marked lost");
            continue;
          }
          if (g < 0) {
            note("token routed to no slot");
            continue;
          }
          const RankId owner = before->placement().rank_of(l, g);
          if (before->placement().expert_at(l, g) != ids[i]) {
            // The one legal case: a failover was being published while this
            // dispatch ran (the slot's rank is being dropped, not yet known).
            if (before->placement().expert_at(l, g) == kEmptySlot && is_killed(owner) &&
                std::find(known.begin(), known.end(), owner) == known.end()) {
              ++out.window_tokens;
              continue;
            }
            note("token routed to a slot without its expert");
            continue;
          }
          if (std::find(known.begin(), known.end(), owner) != known.end()) {
            note("token routed to a rank known to have failed");
            continue;
          }
          if (is_killed(owner)) ++out.window_tokens;  // dies with the rank, before detection
          const auto data = stores[static_cast<size_t>(owner)]->slot_data(l, before->placement().local_slot(l, g));
          if (std::memcmp(data.data(), fx.truth[static_cast<size_t>(l)][static_cast<size_t>(ids[i])].data(), data.size()) != 0)
            note("slot weights differ from the expert's");
        }
      }
      sync.arrive_and_wait();
      // Phase B: step boundary, and the idle / after-commit kills.
      if (victim && step == kill_step) {
        std::lock_guard<std::mutex> lock(mu);
        armed[static_cast<size_t>(q)] = 1;
      }
      if (victim && (step == kill_step + 20 || (moment == Moment::kIdle && step == kill_step))) kill(q);  // fallback
      if (checkpoint(q)) {
        settled[static_cast<size_t>(q)] = 1;
        sync.arrive_and_drop();
        dead = true;
        break;
      }
      const uint64_t epoch_before = pm.epoch();
      if (const Status sb = pm.step_boundary(step); !sb.ok()) note("step_boundary: " + sb.to_string());
      if (victim && moment == Moment::kAfterCommit && is_armed(q) && pm.epoch() != epoch_before) kill(q);
      const auto snap = pm.snapshot();
      for (LayerId l = 0; l < L; ++l)
        for (SlotId s = 0; s < S; ++s) {
          const ExpertId e = snap->placement().expert_at(l, q, s);
          if (e < 0) continue;
          const auto data = stores[static_cast<size_t>(q)]->slot_data(l, s);
          if (std::memcmp(data.data(), fx.truth[static_cast<size_t>(l)][static_cast<size_t>(e)].data(), data.size()) != 0)
            note("own slot " + std::to_string(s) + " of layer " + std::to_string(l) + " corrupted at step " +
                 std::to_string(step));
        }
      if (checkpoint(q)) {
        settled[static_cast<size_t>(q)] = 1;
        sync.arrive_and_drop();
        dead = true;
        break;
      }
      const auto st = pm.stats();
      settled[static_cast<size_t>(q)] =
          step >= min_steps && (st.failovers == 0 ? !victim : st.redundancy_rebuilt_ns != 0) ? 1 : 0;
      std::this_thread::sleep_for(100us);  // a forward pass takes time
      sync.arrive_and_wait();
      if (stop_now) break;
    }
    {
      std::unique_lock<std::mutex> lock(mu);
      if (!dead) ++finished;
      cv.notify_all();
      // The detector calls fail_ranks on survivors' managers: keep them alive.
      if (!cv.wait_for(lock, 60s, [&] { return detector_done; })) note("detector did not finish");
    }
    if (dead) {
      // A dead rank's threads must not disturb the survivors, who are done
      // now: cut it off from everyone so that its planner's waits end.
      std::vector<RankId> others;
      for (RankId r = 0; r < R; ++r)
        if (r != q) others.push_back(r);
      OMNI_CHECK(pm.fail_ranks(others).ok());
    } else {
      const auto st = pm.stats();
      final_state[static_cast<size_t>(q)] = {pm.epoch(), pm.snapshot()->checksum()};
      out.lost_at_end = static_cast<int64_t>(pm.lost_experts().size());
      out.restored = st.experts_restored;
      out.rebuilt = st.failovers == 0 || st.redundancy_rebuilt_ns != 0;
      if (out.lost_at_end > 0 || !out.rebuilt)
        out.detail += "rank " + std::to_string(q) + ": epoch " + std::to_string(pm.epoch()) + ", rounds " +
                      std::to_string(st.rounds_started) + " (" + std::to_string(st.rounds_completed) + " completed, " +
                      std::to_string(st.rounds_no_change) + " unchanged, " + std::to_string(st.rounds_aborted) +
                      " aborted), restored " + std::to_string(st.experts_restored) + ", last abort: " + st.last_abort + "; ";
    }
    pms[static_cast<size_t>(q)].reset();
    return ok_status();
  });
  detector.join();
  Result total;
  for (RankId q = 0; q < R; ++q) {
    EXPECT_TRUE(statuses[static_cast<size_t>(q)].ok()) << statuses[static_cast<size_t>(q)].to_string();
    total.injected += killed[static_cast<size_t>(q)];
  }
  std::pair<uint64_t, uint64_t> first{0, 0};
  bool have = false;
  for (RankId q = 0; q < R; ++q) {
    const Result& r = per_rank[static_cast<size_t>(q)];
    total.violations += r.violations;
    total.lost_tokens += r.lost_tokens;
    total.window_tokens += r.window_tokens;
    total.detail += r.detail;
    if (killed[static_cast<size_t>(q)]) continue;
    total.lost_at_end += r.lost_at_end;
    total.restored = std::max(total.restored, r.restored);
    total.rebuilt = total.rebuilt && r.rebuilt;
    if (!have) first = final_state[static_cast<size_t>(q)], have = true;
    if (final_state[static_cast<size_t>(q)] != first) total.agree = false;
  }
  return total;
}

int64_t scenarios_per_case(int64_t fallback) {
  if (const char* v = std::getenv("OMNI_FAULT_SCENARIOS")) return std::max<int64_t>(1, std::atoll(v));
  return fallback;
}

struct Totals {
  int64_t injected = 0, scenarios = 0, lost_tokens = 0, window_tokens = 0, restored = 0;
};
Totals g_totals;

void run_case(Moment moment, int32_t victims, uint64_t base_seed, int64_t n) {
  static const Fixture fx;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t seed = base_seed * 1000003 + static_cast<uint64_t>(i);
    const bool safetensors = i % 3 == 0;
    const Result r = run_scenario(fx, seed, moment, victims, safetensors);
    const std::string where = std::string("moment ") + moment_name(moment) + ", victims " + std::to_string(victims) +
                              ", seed " + std::to_string(seed) + (safetensors ? ", safetensors" : ", host memory");
    ASSERT_EQ(r.injected, victims) << where;
    ASSERT_EQ(r.violations, 0) << where << ": " << r.detail;
    ASSERT_TRUE(r.agree) << where << ": survivors disagree on epoch or checksum";
    ASSERT_EQ(r.lost_at_end, 0) << where << ": experts still lost at the end: " << r.detail;
    ASSERT_TRUE(r.rebuilt) << where << ": redundancy never rebuilt: " << r.detail;
    g_totals.injected += r.injected;
    g_totals.lost_tokens += r.lost_tokens;
    g_totals.window_tokens += r.window_tokens;
    g_totals.restored += r.restored;
    ++g_totals.scenarios;
  }
}

TEST(FaultInjection, KillAtIdleStep) { run_case(Moment::kIdle, 1, 1, scenarios_per_case(200)); }
TEST(FaultInjection, KillSenderWithWeightsInFlight) { run_case(Moment::kSender, 1, 2, scenarios_per_case(200)); }
TEST(FaultInjection, KillReceiverWithWeightsInFlight) { run_case(Moment::kReceiver, 1, 3, scenarios_per_case(200)); }
TEST(FaultInjection, KillRightAfterCommit) { run_case(Moment::kAfterCommit, 1, 4, scenarios_per_case(200)); }
TEST(FaultInjection, KillTwoRanks) { run_case(Moment::kIdle, 2, 5, scenarios_per_case(100)); }

TEST(FaultInjection, Summary) {
  std::printf("fault injection: %lld scenarios, %lld injected failures, %lld experts restored, %lld tokens marked lost, "
              "%lld tokens sent to a killed rank before detection, 0 violations\n",
              static_cast<long long>(g_totals.scenarios), static_cast<long long>(g_totals.injected),
              static_cast<long long>(g_totals.restored), static_cast<long long>(g_totals.lost_tokens),
              static_cast<long long>(g_totals.window_tokens));
  // The issue asks for at least 1000 injected failures (the default counts);
  // OMNI_FAULT_SCENARIOS may lower them for a quick run.
  if (std::getenv("OMNI_FAULT_SCENARIOS") == nullptr) {
    EXPECT_GE(g_totals.injected, 1000);
  }
  EXPECT_GT(g_totals.injected, 0);
}

}  // namespace
}  // namespace omni
