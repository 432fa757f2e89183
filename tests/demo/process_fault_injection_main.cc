// One process of the multi-process fault-injection suite (driven by
// process_fault_injection.py; label mpi). Run under
// `mpirun --enable-recovery -np 4`: each process serves the demo over
// UcxTransport (short run: 80 steps, a re-plan every 4), and the scenario
// makes one or two of them die (SIGKILL) or stop (SIGSTOP) at a chosen
// protocol moment:
//
//   idle            victim A dies before serving step S
//   sender          A dies on its planner thread just before sending its k-th expert to another rank
//   receiver        A dies on its planner thread just before receiving its k-th expert
//   after_commit    A dies at the first step after its first committed epoch
//   stall           A stops for 2.5 s before step S (heartbeat timeout 1 s): declared failed, then fenced
//   restore         A dies before step S, then B dies just before its first restore from the backup
//
// Every parameter (victims, S, k) is drawn from --seed, the same on every
// process. A victim writes "<rank> <moment>" to <out>/moment_<rank> just
// before it dies (so the driver can check the intended moment was hit); the
// lowest surviving rank prints "RESULT <json>" with the survivors' summary.
//
//   process_fault_injection_test --scenario sender --seed 7 --out /tmp/x
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "demo/demo.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/transport/ucx_transport.h"

namespace {

using namespace std::chrono_literals;

struct Scenario {
  std::string name;
  omni::RankId a = -1;  // the (first) victim
  omni::RankId b = -1;  // the second victim (restore)
  int64_t step = -1;    // idle, stall, restore: before this step
  int64_t k = 0;        // sender / receiver: the k-th transfer (0-based)
};

Scenario draw(const std::string& name, uint64_t seed, int32_t ranks) {
  std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ULL + std::hash<std::string>()(name));
  Scenario s;
  s.name = name;
  s.a = static_cast<omni::RankId>(std::uniform_int_distribution<int32_t>(0, ranks - 1)(rng));
  s.step = std::uniform_int_distribution<int64_t>(8, 30)(rng);
  s.k = std::uniform_int_distribution<int64_t>(0, 3)(rng);
  if (name == "restore") {
    s.b = static_cast<omni::RankId>((s.a + 1 + std::uniform_int_distribution<int32_t>(0, ranks - 2)(rng)) % ranks);
  }
  return s;
}

// Records the moment, then dies as a whole process (no goodbye, no flush of anything else).
[[noreturn]] void die_at(const std::string& out, omni::RankId rank, const std::string& moment) {
  const std::string path = out + "/moment_" + std::to_string(rank);
  const std::string line = std::to_string(rank) + " " + moment + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    [[maybe_unused]] const ssize_t n = ::write(fd, line.data(), line.size());
    ::fsync(fd);
    ::close(fd);
  }
  ::raise(SIGKILL);
  for (;;) ::pause();
}

// A process that crashes on its own (not at its moment) leaves
// <out>/crash_<rank> with the signal and a backtrace, for the driver to report
// (SIGTERM included: mpirun ending a job whose other processes failed).
std::string g_crash_path;
extern "C" void on_crash(int sig) {
  const int fd = ::open(g_crash_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    char line[64];
    const int n = std::snprintf(line, sizeof line, "signal %d\n", sig);
    [[maybe_unused]] const ssize_t w = ::write(fd, line, static_cast<size_t>(n));
    void* frames[64];
    ::backtrace_symbols_fd(frames, ::backtrace(frames, 64), fd);
    ::close(fd);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

int main(int argc, char** argv) {
  std::string name, out = "/tmp";
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--scenario") name = argv[i + 1];
    else if (k == "--seed") seed = std::stoull(argv[i + 1]);
    else if (k == "--out") out = argv[i + 1];
  }
  const std::vector<std::string> known = {"idle", "sender", "receiver", "after_commit", "stall", "restore"};
  if (std::find(known.begin(), known.end(), name) == known.end()) {
    std::fprintf(stderr, "usage: %s --scenario idle|sender|receiver|after_commit|stall|restore --seed N --out DIR\n",
                 argv[0]);
    return 2;
  }
  if (auto st = omni::UcxTransport::init(&argc, &argv, 60s); !st.ok()) {
    std::fprintf(stderr, "FAIL: %s\n", st.to_string().c_str());
    return 1;
  }
  int rc = 0;
  {
    auto world = omni::UcxTransport::create_world(60s);
    if (!world.ok()) {
      std::fprintf(stderr, "FAIL: %s\n", world.status().to_string().c_str());
      return 1;
    }
    omni::Transport& t = **world;
    const omni::RankId me = t.rank();
    g_crash_path = out + "/crash_" + std::to_string(me);
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTERM}) ::signal(sig, on_crash);
    const Scenario sc = draw(name, seed, t.size());
    auto workload =
        omni::trace_workload(std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv",
                             {"bookcorpus", "wikitext", "wmt19"}, /*steps_per_window=*/4,
                             /*tokens_per_rank=*/8, /*top_k=*/4, seed);
    if (!workload.ok()) {
      std::fprintf(stderr, "FAIL: %s\n", workload.status().to_string().c_str());
      return 1;
    }
    omni::DemoConfig c;
    c.steps = 80;
    c.ranks_per_host = 2;
    c.slots_per_rank = name == "restore" ? 30 : 20;  // room for every expert on the survivors
    c.seed = seed;
    c.manager.planner_spec = "eplb";
    c.manager.replan_interval_steps = 4;
    c.heartbeat_period = 10ms;
    c.heartbeat_timeout = 1000ms;  // generous: no false failure beside two busy loops
    c.expect_failures = true;
    // Every rank waits (bounded) for its planner before voting, so a batch
    // commits at a step that does not depend on thread timing: the moments
    // (first transfers, first commit) come early in the run, never after the
    // survivors' final sums, even on a loaded machine.
    c.manager.stage_wait = 2000ms;
    // The moments. Hooks run on the victim only; each fires once.
    auto sent = std::make_shared<std::atomic<int64_t>>(0);
    auto received = std::make_shared<std::atomic<int64_t>>(0);
    auto commits = std::make_shared<std::atomic<int64_t>>(0);
    auto last_epoch = std::make_shared<std::atomic<uint64_t>>(0);
    if (name == "stall") {  // the demo's own stall (SIGSTOP, resumed by a child); every rank must know it
      c.stall_rank = sc.a;
      c.stall_at_step = sc.step;
      c.stall_ms = 2500ms;
    }
    if (me == sc.a && name == "sender") {
      c.manager.before_send = [&, sent](const omni::TransferEvent& e) -> omni::Status {
        if (e.round >= 1 && sent->fetch_add(1) == sc.k)
          die_at(out, me,
                 omni::str_cat("sender round ", e.round, " layer ", e.transfer.layer, " expert ", e.transfer.expert,
                               " to rank ", e.transfer.dst_rank));
        return omni::ok_status();
      };
    }
    if (me == sc.a && name == "receiver") {
      c.manager.before_transfer = [&, received](const omni::TransferEvent& e) -> omni::Status {
        if (e.round >= 1 && e.transfer.src_rank >= 0 && e.transfer.src_rank != me && received->fetch_add(1) == sc.k)
          die_at(out, me,
                 omni::str_cat("receiver round ", e.round, " layer ", e.transfer.layer, " expert ", e.transfer.expert,
                               " from rank ", e.transfer.src_rank));
        return omni::ok_status();
      };
    }
    if (me == sc.b && name == "restore") {
      c.manager.before_transfer = [&](const omni::TransferEvent& e) -> omni::Status {
        if (e.transfer.src_rank == omni::kFromBackup)
          die_at(out, me,
                 omni::str_cat("restore round ", e.round, " layer ", e.transfer.layer, " expert ", e.transfer.expert,
                               " from the backup"));
        return omni::ok_status();
      };
    }
    c.on_step = [&, commits, last_epoch](int64_t step, omni::RankId rank, const omni::PlacementManager& pm) {
      if (rank != sc.a) return;
      if ((name == "idle" || name == "restore") && step == sc.step)
        die_at(out, rank, omni::str_cat("idle step ", step));
      if (name == "after_commit") {
        const uint64_t epoch = pm.epoch();
        if (epoch != last_epoch->exchange(epoch) && commits->fetch_add(1) == 0)
          die_at(out, rank, omni::str_cat("after_commit epoch ", epoch, " step ", step));
      }
    };
    auto report = omni::run_demo_rank(t, c, *workload);
    world->reset();
    if (!report.ok()) {
      std::printf("rank %d: FAIL: %s\n", me, report.status().to_string().c_str());
      rc = 1;
    } else if (report->rank_failed) {
      std::printf("rank %d: FENCED %s\n", me, report->fenced.c_str());
    } else {
      // Lowest survivor: the summary.
      omni::RankId reporter = 0;
      while (reporter == sc.a || reporter == sc.b) ++reporter;
      if (me == reporter) {
        const auto& f = report->failure;
        nlohmann::json j = {{"scenario", name},
                            {"seed", seed},
                            {"victims", sc.b >= 0 ? std::vector<int>{sc.a, sc.b} : std::vector<int>{sc.a}},
                            {"declared_failed", f.declared_failed},
                            {"outputs_checked", report->outputs_checked},
                            {"wrong_outputs", report->wrong_outputs},
                            {"weights_checked", report->weights_checked},
                            {"weights_corrupted", report->weights_corrupted},
                            {"epochs", report->manager.epoch},
                            {"rounds_aborted", report->manager.rounds_aborted},
                            {"experts_lost", f.experts_lost},
                            {"experts_restored", f.experts_restored},
                            {"restore_ms", f.restore_ms},
                            {"full_redundancy_ms", f.redundancy_ms}};
        std::printf("RESULT %s\n", j.dump().c_str());
      }
      std::printf("rank %d: DONE\n", me);
    }
    std::fflush(stdout);
  }
  (void)omni::UcxTransport::finalize();
  return rc;
}
