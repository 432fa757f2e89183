// Fault-injection suite of the runtime's failover (issue 9): the ranks of a
// LocalCluster, each running a PlacementManager, are killed at random moments
// of the protocol (at an idle step, as the sender or the receiver of weights
// in flight, right after a commit) over many seeds. A simulated detector
// tells every survivor after a random delay (the FailureDetector itself is
// tested in transport). A kill meant for a moment that a scenario never
// reaches (e.g. the victim has no transfer to send within 20 steps) falls back
// to a plain kill, which does not count: the scenario is run again with
// another seed (bounded), and the moment must be hit.
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
// test case. The totals (injected failures per moment, retries, violations)
// are printed and checked after the last test, whatever ran and in whichever
// order: at least 1000 failures injected at their moment when every case ran
// in full.
#include <gtest/gtest.h>

#include <array>
#include <barrier>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "demo/toy_moe.h"
#include "omniplacement/runtime/backup_source.h"
#include "omniplacement/runtime/local_cluster.h"

namespace omni {
namespace {

using namespace std::chrono_literals;

enum class Moment { kIdle, kSender, kReceiver, kAfterCommit };
constexpr int32_t kNumMoments = 4;
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

// One fixture (and checkpoint file) for every test of the process.
const Fixture& fixture() {
  static const Fixture fx;
  return fx;
}

struct Result {
  int64_t injected = 0;          // victims killed, at their moment or by the fallback
  int64_t at_moment = 0;         // of which at the moment meant for them
  int64_t violations = 0;
  int64_t lost_tokens = 0;       // kLostExpertSlot (expert with no replica at the time)
  int64_t window_tokens = 0;     // routed to a killed rank before this survivor knew
  bool agree = true;
  int64_t lost_at_end = 0;
  int64_t restored = 0;
  bool rebuilt = true;
  std::string detail;
};

// replan_interval: 0 draws it from [2, 5]; a larger one makes the moments that
// need a round (sender, receiver, after-commit) unreachable before the
// fallback kill (the test of the check itself).
Result run_scenario(const Fixture& fx, uint64_t seed, Moment moment, int32_t victims, bool safetensors,
                    int64_t replan_interval = 0) {
  constexpr int32_t R = 4, L = Fixture::kLayers, E = Fixture::kExperts, S = Fixture::kSlots;
  std::mt19937_64 rng(seed);
  auto topo = *Topology::uniform(R, 2);
  auto initial = *Placement::contiguous(L, R, E, S);
  LocalClusterOptions co;
  PlacementManagerOptions& opt = co.manager;
  opt.planner_spec = "eplb";
  opt.replan_interval_steps = std::uniform_int_distribution<int64_t>(2, 5)(rng);
  if (replan_interval > 0) opt.replan_interval_steps = replan_interval;
  opt.commit_cadence_steps = std::uniform_int_distribution<int32_t>(1, 2)(rng);
  opt.layers_per_commit = std::uniform_int_distribution<int32_t>(0, 1)(rng);
  opt.stage_wait = 20ms;  // rounds keep pace with the steps on a loaded machine (bounded wait)
  opt.commit_timeout_steps = 200;
  opt.transfer_timeout = 5s;
  opt.collective_timeout = 10s;
  opt.backup = safetensors ? static_cast<const BackupSource*>(fx.ckpt.get()) : fx.host.get();
  const int64_t kill_step = std::uniform_int_distribution<int64_t>(3, 12)(rng);
  // Runs until every survivor has failed every victim over, restored and
  // rebuilt (and at least 20 steps after the kill step), at most max_steps.
  const int64_t min_steps = kill_step + 20, max_steps = kill_step + 5000;
  std::vector<RankId> order = {0, 1, 2, 3};
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<RankId> doomed(order.begin(), order.begin() + victims);
  const uint64_t load_seed = rng();
  const uint64_t delay_seed = rng();

  // The simulated detector's state: it wakes on every kill (on_kill) and when
  // a survivor finishes.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<char> detected(R, 0), armed(R, 0), hit(R, 0);
  int32_t finished = 0;
  co.on_kill = [&](RankId) {
    std::lock_guard<std::mutex> lock(mu);
    cv.notify_all();
  };
  // The cluster is created below; the hooks only run once it exists.
  LocalCluster* cluster = nullptr;
  auto is_armed = [&](RankId v) {
    std::lock_guard<std::mutex> lock(mu);
    return armed[static_cast<size_t>(v)] != 0 && !cluster->killed(v);
  };
  auto note_hit = [&](RankId v) {
    std::lock_guard<std::mutex> lock(mu);
    hit[static_cast<size_t>(v)] = 1;
  };
  // A rank dies as a whole: the hook (on the victim's planner thread, with a
  // transfer in flight) asks for the kill and never finishes that transfer;
  // the victim's engine thread dies at its next checkpoint (it may be inside
  // a collective right now, which it completes as a live rank would have).
  auto die_in_hook = [&](RankId v) -> Status {
    note_hit(v);
    cluster->request_kill(v);
    cluster->wait_killed(v, 30s);
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

  auto created = LocalCluster::create(initial, topo, std::vector<int64_t>(L, fx.model.expert_bytes()), co);
  OMNI_CHECK_MSG(created.ok(), created.status().to_string());
  cluster = created->get();
  for (RankId q = 0; q < R; ++q)
    for (LayerId l = 0; l < L; ++l)
      for (SlotId s = 0; s < S; ++s)
        if (const ExpertId e = initial.expert_at(l, q, s); e >= 0)
          OMNI_CHECK(cluster->store(q).write_slot(l, s, 0, fx.truth[static_cast<size_t>(l)][static_cast<size_t>(e)]).ok());
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
        if (cluster->killed(r) && !detected[static_cast<size_t>(r)]) v = r;
      int32_t live = 0;
      for (RankId r = 0; r < R; ++r) live += cluster->killed(r) ? 0 : 1;
      if (v < 0 && finished >= live) break;
      if (v < 0) {
        cv.wait_for(lock, 2ms);
        continue;
      }
      detected[static_cast<size_t>(v)] = 1;
      std::vector<RankId> targets;
      for (RankId r = 0; r < R; ++r)
        if (!cluster->killed(r)) targets.push_back(r);
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(d)));
      const RankId one[] = {v};
      for (RankId r : targets) OMNI_CHECK(cluster->manager(r).fail_ranks(one).ok());
      lock.lock();
    }
  });

  const Status run = cluster->run([&](RankId q) -> Status {
    PlacementManager& pm = cluster->manager(q);
    Result& out = per_rank[static_cast<size_t>(q)];
    const bool victim = std::find(doomed.begin(), doomed.end(), q) != doomed.end();
    std::vector<ExpertId> ids(32);
    std::vector<GlobalSlot> slots(32);
    auto note = [&](const std::string& what) {
      if (out.violations++ == 0) out.detail = "rank " + std::to_string(q) + ": " + what;
    };
    // A dead rank leaves the lockstep for good (its manager stays until the
    // cluster closes, cut off from the survivors then).
    auto die = [&] {
      settled[static_cast<size_t>(q)] = 1;
      sync.arrive_and_drop();
      return ok_status();
    };
    for (int64_t step = 0; step < max_steps; ++step) {
      // Phase A: serve.
      if (cluster->checkpoint(q)) return die();
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
            if (before->placement().expert_at(l, g) == kEmptySlot && cluster->killed(owner) &&
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
          if (cluster->killed(owner)) ++out.window_tokens;  // dies with the rank, before detection
          const auto data = cluster->store(owner).slot_data(l, before->placement().local_slot(l, g));
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
      if (victim && moment == Moment::kIdle && step == kill_step) {
        note_hit(q);
        cluster->kill(q);
      }
      if (victim && step == kill_step + 20) cluster->kill(q);  // fallback: the moment never came (not counted)
      if (cluster->checkpoint(q)) return die();
      const uint64_t epoch_before = pm.epoch();
      if (const Status sb = pm.step_boundary(step); !sb.ok()) note("step_boundary: " + sb.to_string());
      if (victim && moment == Moment::kAfterCommit && is_armed(q) && pm.epoch() != epoch_before) {
        note_hit(q);
        cluster->kill(q);
      }
      const auto snap = pm.snapshot();
      for (LayerId l = 0; l < L; ++l)
        for (SlotId s = 0; s < S; ++s) {
          const ExpertId e = snap->placement().expert_at(l, q, s);
          if (e < 0) continue;
          const auto data = cluster->store(q).slot_data(l, s);
          if (std::memcmp(data.data(), fx.truth[static_cast<size_t>(l)][static_cast<size_t>(e)].data(), data.size()) != 0)
            note("own slot " + std::to_string(s) + " of layer " + std::to_string(l) + " corrupted at step " +
                 std::to_string(step));
        }
      if (cluster->checkpoint(q)) return die();
      // Settled: every victim is dead and failed over here, and redundancy
      // was rebuilt since (a kill not yet known here keeps the run going).
      const auto st = pm.stats();
      settled[static_cast<size_t>(q)] = step >= min_steps && pm.failed_ranks().size() == doomed.size() &&
                                                 st.redundancy_rebuilt_ns != 0
                                             ? 1
                                             : 0;
      std::this_thread::sleep_for(100us);  // a forward pass takes time
      sync.arrive_and_wait();
      if (stop_now) break;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      ++finished;
      cv.notify_all();
    }
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
    return ok_status();
  });
  // The detector calls fail_ranks on the survivors' managers: it ends before
  // the cluster (and the managers) go.
  detector.join();
  EXPECT_TRUE(run.ok()) << run;
  Result total;
  for (RankId q = 0; q < R; ++q) {
    total.injected += cluster->killed(q) ? 1 : 0;
    total.at_moment += cluster->killed(q) && hit[static_cast<size_t>(q)] ? 1 : 0;
  }
  std::pair<uint64_t, uint64_t> first{0, 0};
  bool have = false;
  for (RankId q = 0; q < R; ++q) {
    const Result& r = per_rank[static_cast<size_t>(q)];
    total.violations += r.violations;
    total.lost_tokens += r.lost_tokens;
    total.window_tokens += r.window_tokens;
    total.detail += r.detail;
    if (cluster->killed(q)) continue;
    total.lost_at_end += r.lost_at_end;
    total.restored = std::max(total.restored, r.restored);
    total.rebuilt = total.rebuilt && r.rebuilt;
    if (!have) first = final_state[static_cast<size_t>(q)], have = true;
    if (final_state[static_cast<size_t>(q)] != first) total.agree = false;
  }
  created->reset();  // closes the cluster: the killed ranks are cut off, every manager stops
  return total;
}

int64_t scenarios_per_case(int64_t fallback) {
  if (const char* v = std::getenv("OMNI_FAULT_SCENARIOS")) return std::max<int64_t>(1, std::atoll(v));
  return fallback;
}

// Totals over the cases that ran in this process, checked and printed after
// the last test (FaultInjectionTotals below), whatever ran and in which order.
struct Totals {
  int64_t scenarios = 0, retried = 0, fallback_kills = 0, lost_tokens = 0, window_tokens = 0, restored = 0,
          violations = 0;
  std::array<int64_t, kNumMoments> at_moment{};  // failures injected at their moment, per moment
  std::map<std::string, bool> cases;              // case name -> ran its default number of scenarios
};
Totals g_totals;

// A scenario whose victims were not all killed at their moment is run again
// with another seed, at most this many times in all.
constexpr int32_t kMaxAttempts = 8;

void run_case(const std::string& name, Moment moment, int32_t victims, uint64_t base_seed, int64_t default_n) {
  const Fixture& fx = fixture();
  const int64_t n = scenarios_per_case(default_n);
  g_totals.cases[name] = false;
  for (int64_t i = 0; i < n; ++i) {
    const bool safetensors = i % 3 == 0;
    Result r;
    std::string where;
    for (int32_t attempt = 0; attempt < kMaxAttempts; ++attempt) {
      const uint64_t seed = base_seed * 1000003 + static_cast<uint64_t>(i) + static_cast<uint64_t>(attempt) * 7919 * 1000003;
      r = run_scenario(fx, seed, moment, victims, safetensors);
      where = std::string("moment ") + moment_name(moment) + ", victims " + std::to_string(victims) + ", seed " +
              std::to_string(seed) + (safetensors ? ", safetensors" : ", host memory");
      // Every attempt is a real failure scenario: all of them are checked.
      g_totals.violations += r.violations;
      ASSERT_EQ(r.injected, victims) << where;
      ASSERT_EQ(r.violations, 0) << where << ": " << r.detail;
      ASSERT_TRUE(r.agree) << where << ": survivors disagree on epoch or checksum";
      ASSERT_EQ(r.lost_at_end, 0) << where << ": experts still lost at the end: " << r.detail;
      ASSERT_TRUE(r.rebuilt) << where << ": redundancy never rebuilt: " << r.detail;
      g_totals.lost_tokens += r.lost_tokens;
      g_totals.window_tokens += r.window_tokens;
      g_totals.restored += r.restored;
      g_totals.fallback_kills += r.injected - r.at_moment;
      if (r.at_moment == victims) break;
      ++g_totals.retried;
    }
    ASSERT_EQ(r.at_moment, victims) << where << ": the " << moment_name(moment) << " moment never came in "
                                    << kMaxAttempts << " seeds";
    g_totals.at_moment[static_cast<size_t>(moment)] += r.at_moment;
    ++g_totals.scenarios;
  }
  g_totals.cases[name] = std::getenv("OMNI_FAULT_SCENARIOS") == nullptr;
}

TEST(FaultInjection, KillAtIdleStep) { run_case("idle", Moment::kIdle, 1, 1, 200); }
TEST(FaultInjection, KillSenderWithWeightsInFlight) { run_case("sender", Moment::kSender, 1, 2, 200); }
TEST(FaultInjection, KillReceiverWithWeightsInFlight) { run_case("receiver", Moment::kReceiver, 1, 3, 200); }
TEST(FaultInjection, KillRightAfterCommit) { run_case("after-commit", Moment::kAfterCommit, 1, 4, 200); }
TEST(FaultInjection, KillTwoRanks) { run_case("two-ranks", Moment::kIdle, 2, 5, 100); }

// The check above can fail: with the first round after the fallback kill
// (kill step <= 12, fallback 20 steps later, first round at step 40) a sender
// is never killed at its moment, and the scenario says so.
TEST(FaultInjection, AMomentThatNeverComesIsNotCountedAsHit) {
  const Fixture& fx = fixture();
  for (Moment m : {Moment::kSender, Moment::kReceiver, Moment::kAfterCommit}) {
    const Result r = run_scenario(fx, 77, m, 1, false, /*replan_interval=*/40);
    EXPECT_EQ(r.injected, 1) << moment_name(m);
    EXPECT_EQ(r.at_moment, 0) << moment_name(m);
    EXPECT_EQ(r.violations, 0) << moment_name(m) << ": " << r.detail;
    EXPECT_EQ(r.lost_at_end, 0) << moment_name(m) << ": " << r.detail;
  }
}

// After the last test: the summary of what ran, with the counts as counted.
class FaultInjectionTotals : public ::testing::Environment {
 public:
  void TearDown() override {
    const auto& t = g_totals;
    int64_t injected = 0;
    for (int64_t v : t.at_moment) injected += v;
    std::printf("fault injection: %lld scenarios (%lld run again with another seed: %lld kills fell back to a plain "
                "kill), %lld failures injected at their moment (idle %lld, sender %lld, receiver %lld, after-commit "
                "%lld), %lld experts restored, %lld tokens marked lost, %lld tokens sent to a killed rank before "
                "detection, %lld violations\n",
                static_cast<long long>(t.scenarios), static_cast<long long>(t.retried),
                static_cast<long long>(t.fallback_kills), static_cast<long long>(injected),
                static_cast<long long>(t.at_moment[0]), static_cast<long long>(t.at_moment[1]),
                static_cast<long long>(t.at_moment[2]), static_cast<long long>(t.at_moment[3]),
                static_cast<long long>(t.restored), static_cast<long long>(t.lost_tokens),
                static_cast<long long>(t.window_tokens), static_cast<long long>(t.violations));
    EXPECT_EQ(t.violations, 0);
    // The issue asks for at least 1000 injected failures: what the five cases
    // give at their default counts (OMNI_FAULT_SCENARIOS or a filter runs fewer).
    bool all_in_full = t.cases.size() == 5;
    for (const auto& [name, full] : t.cases) all_in_full = all_in_full && full;
    if (all_in_full) {
      EXPECT_GE(injected, 1000);
    }
  }
};
const auto* const g_totals_env = ::testing::AddGlobalTestEnvironment(new FaultInjectionTotals);

}  // namespace
}  // namespace omni
