#include "demo/demo.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <thread>

#include "demo/rank_loop.h"
#include "demo/survivor_collective.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/runtime/local_cluster.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/failure_detector.h"

namespace omni {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// What every rank shares: the model, the topology and the initial (static)
// placement, made the same way on every rank or once for all.
struct DemoSetup {
  ToyMoE model;
  Topology topology;
  Placement initial;
  PlanInput plan_input;  // how `initial` was planned (load: window 0); the oracle plans the same way
};

Status check_config(const DemoConfig& c, const DemoWorkload& w, int32_t R) {
  const int32_t W = w.routing.num_windows();
  if (static_cast<int32_t>(w.window_names.size()) != W)
    return invalid_argument_error(str_cat("demo: ", w.window_names.size(), " window names for ", W, " windows"));
  if (c.steps < 1 || c.ranks_per_host < 1 || R % c.ranks_per_host != 0)
    return invalid_argument_error(str_cat("demo: need steps >= 1 (", c.steps, ") and ranks_per_host dividing ", R,
                                          " ranks (", c.ranks_per_host, ")"));
  if (int64_t{R} * c.slots_per_rank < w.routing.num_experts())
    return invalid_argument_error(str_cat("demo: ", R, " ranks x ", c.slots_per_rank, " slots cannot hold ",
                                          w.routing.num_experts(), " experts"));
  return ok_status();
}

// The initial (and static) placement: the planner fitted on window 0, as a
// deployment profiled once would ship it.
StatusOr<std::unique_ptr<DemoSetup>> make_setup(const DemoConfig& c, const DemoWorkload& w, int32_t R) {
  OMNI_RETURN_IF_ERROR(check_config(c, w, R));
  OMNI_ASSIGN_OR_RETURN(Topology topo, Topology::uniform(R, c.ranks_per_host));
  OMNI_ASSIGN_OR_RETURN(ToyMoE model, ToyMoE::create({w.routing.num_layers(), w.routing.num_experts(), c.hidden, c.seed}));
  OMNI_ASSIGN_OR_RETURN(auto planner, make_planner(c.manager.planner_spec));
  auto setup = std::make_unique<DemoSetup>(DemoSetup{std::move(model), std::move(topo), Placement(), PlanInput()});
  PlanInput& in = setup->plan_input;
  in.load = &w.routing.window(0);
  in.num_ranks = R;
  in.slots_per_rank = {c.slots_per_rank};
  in.topology = &setup->topology;
  OMNI_ASSIGN_OR_RETURN(PlanResult first, planner->plan(in));
  setup->initial = std::move(first.placement);
  return setup;
}

// Writes the initial placement's experts into rank q's slots.
Status load_initial_weights(const ToyMoE& model, const Placement& initial, RankId q, WeightStore& store) {
  std::vector<std::byte> buf(static_cast<size_t>(model.expert_bytes()));
  for (LayerId l = 0; l < initial.num_layers(); ++l)
    for (SlotId s = 0; s < initial.slots_per_rank(l); ++s) {
      const ExpertId e = initial.expert_at(l, q, s);
      if (e < 0) continue;
      OMNI_RETURN_IF_ERROR(model.expert_weights(l, e, buf));
      OMNI_RETURN_IF_ERROR(store.write_slot(l, s, 0, buf));
    }
  return ok_status();
}

// The slots rank q holds under `placement` whose bytes differ from their
// expert's weights: {slots checked, slots corrupted}.
StatusOr<std::pair<int64_t, int64_t>> check_slot_weights(const ToyMoE& model, const Placement& placement, RankId q,
                                                        const HostWeightStore& store) {
  std::vector<std::byte> want(static_cast<size_t>(model.expert_bytes()));
  int64_t checked = 0, corrupted = 0;
  for (LayerId l = 0; l < placement.num_layers(); ++l)
    for (SlotId s = 0; s < placement.slots_per_rank(l); ++s) {
      const ExpertId e = placement.expert_at(l, q, s);
      if (e < 0) continue;
      OMNI_RETURN_IF_ERROR(model.expert_weights(l, e, want));
      const std::span<const std::byte> have = store.slot_data(l, s);
      ++checked;
      if (have.size() != want.size() || std::memcmp(have.data(), want.data(), want.size()) != 0) ++corrupted;
    }
  return std::make_pair(checked, corrupted);
}

// Every `progress_every` steps: the wrong and checked outputs over the ranks
// (collective), and the callback on the lowest live rank.
Status report_progress(Transport& t, const DemoConfig& c, const DemoWorkload& w, const PlacementManager& pm,
                       const DemoRankLoop& loop, int64_t step) {
  if (c.progress_every <= 0 || ((step + 1) % c.progress_every != 0 && step + 1 != c.steps)) return ok_status();
  std::vector<int64_t> v = {loop.counts().wrong, loop.counts().checked};
  OMNI_RETURN_IF_ERROR(all_reduce_among_survivors(t, std::span<int64_t>(v), ReduceOp::kSum, c.manager.collective_timeout,
                                                  c.injects_failures()));
  if (t.rank() == t.live_ranks().front() && c.progress) {
    const auto st = pm.stats();
    const int32_t win = w.routing.window_of(step);
    c.progress(DemoProgress{step + 1, c.steps, win, w.window_names[static_cast<size_t>(win)], st.epoch,
                            st.rounds_started, st.experts_moved, v[0], v[1]});
  }
  return ok_status();
}

// How a rank crashes or stalls, and leaves once fenced: what differs between
// ranks as threads (LocalCluster) and ranks as processes.
struct FailureHooks {
  std::function<void()> crash;                            // a process never returns from it
  std::function<void(std::chrono::milliseconds)> stall;   // returns when the rank runs again
  std::function<void()> leave;                            // the rank was fenced: it is gone for the others
  std::function<int64_t()> detected_ns;                   // this rank's first detection (0: none)
};

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Stops this process (SIGSTOP: every thread, heartbeats included) for d; a
// child process resumes it. The child only sleeps and signals
// (async-signal-safe calls), as it must after fork() in a threaded process.
void stop_this_process_for(std::chrono::milliseconds d) {
  const pid_t self = ::getpid();
  const pid_t waker = ::fork();
  if (waker == 0) {
    timespec ts{static_cast<time_t>(d.count() / 1000), static_cast<long>(d.count() % 1000) * 1000000L};
    while (::nanosleep(&ts, &ts) != 0) {
    }
    ::kill(self, SIGCONT);
    ::_exit(0);
  }
  if (waker < 0) {  // no child to resume us: stall the threads we can instead
    std::this_thread::sleep_for(d);
    return;
  }
  ::raise(SIGSTOP);
  ::waitpid(waker, nullptr, 0);
}

// At a crash or stall step every live rank learns when the victims stop, by
// their own clock taken just before (one all-gather; 0 from the others). A
// collective cut short by an earlier failure is tried again.
StatusOr<int64_t> note_failure_time(Transport& t, bool victim, Timeout timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const int64_t mine = victim ? steady_ns() : 0;
    std::vector<std::byte> all(sizeof(int64_t) * static_cast<size_t>(t.size()));
    Status s = t.all_gather(std::as_bytes(std::span<const int64_t>(&mine, 1)), all, timeout);
    if (s.ok()) {
      int64_t latest = 0;
      for (RankId r = 0; r < t.size(); ++r) {
        int64_t v = 0;
        std::memcpy(&v, all.data() + static_cast<size_t>(r) * sizeof(v), sizeof(v));
        latest = std::max(latest, v);
      }
      return latest;
    }
    OMNI_RETURN_IF_ERROR(t.fence_status());
    if ((s.code() != StatusCode::kUnavailable && s.code() != StatusCode::kFailedPrecondition) || Clock::now() > deadline)
      return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// A stalled rank whose serving failed after the stall: fenced (it was
// declared failed meanwhile) is its expected end; anything else is an error.
StatusOr<DemoReport> after_stall(Transport& t, const Status& error, const FailureHooks& hooks) {
  // The fence may still be on its way (the serving call failed first).
  const auto until = Clock::now() + std::chrono::seconds(2);
  while (t.fence_status().ok() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const Status fenced = t.fence_status();
  if (fenced.ok()) return error.with_context(str_cat("demo: rank ", t.rank(), " after its stall"));
  hooks.leave();
  DemoReport gone;
  gone.rank_failed = true;
  gone.fenced = fenced.message();
  return gone;
}

// One rank's whole run: serve every step, then sum the figures over the
// ranks (collective among the live ranks) into its report. The ranks in
// config.fail_ranks crash before step fail_at_step, config.stall_rank stalls
// before stall_at_step (hooks say how).
StatusOr<DemoReport> run_rank(const DemoRank& rank, const FailureHooks& hooks, const DemoConfig& c,
                              const DemoWorkload& w, const DemoSetup& setup, const BackupSource* backup,
                              Clock::time_point t_start) {
  Transport& t = *rank.transport;
  PlacementManager& pm = *rank.manager;
  const RankId q = t.rank();
  const int32_t R = t.size();
  const bool failing = c.injects_failures();
  const bool crashes = std::find(c.fail_ranks.begin(), c.fail_ranks.end(), q) != c.fail_ranks.end();
  const bool stalls = q == c.stall_rank;
  int64_t event_ns = 0;  // the first crash or stall, by the victim's clock
  bool stalled = false;
  OMNI_ASSIGN_OR_RETURN(auto loop, DemoRankLoop::create(rank, c, w.routing, setup.model, setup.initial, setup.topology));
  for (int64_t step = 0; step < c.steps; ++step) {
    if (c.on_step) c.on_step(step, q, pm);
    const bool crash_step = !c.fail_ranks.empty() && step == c.fail_at_step;
    const bool stall_step = c.stall_rank >= 0 && step == c.stall_at_step;
    if (crash_step || stall_step) {
      OMNI_ASSIGN_OR_RETURN(const int64_t at, note_failure_time(t, (crashes && crash_step) || (stalls && stall_step),
                                                                 c.manager.collective_timeout));
      if (event_ns == 0) event_ns = at;
      if (crashes && crash_step) {
        // Crash: stop serving and go silent (no goodbye heartbeat).
        hooks.crash();
        DemoReport dead;
        dead.rank_failed = true;
        return dead;
      }
      if (stalls && stall_step) {
        hooks.stall(c.stall_ms);
        stalled = true;
      }
    }
    Status s = loop->serve_step(step);
    if (s.ok()) s = report_progress(t, c, w, pm, *loop, step);
    if (!s.ok()) {
      if (stalled) return after_stall(t, s, hooks);
      return s;
    }
  }
  // A stalled rank that was away too long to be a member any more finds out
  // at the latest here (its transport is fenced), if serving did not tell it.
  if (stalled && !t.fence_status().ok()) return after_stall(t, t.fence_status(), hooks);
  const Timeout timeout = c.manager.collective_timeout;
  DemoFailure fr;
  fr.tokens_lost_expert = loop->tokens_lost_expert();
  fr.requests_reserved = loop->requests_reserved();
  if (failing) {
    SurvivorFailureView view;
    view.failed = c.fail_ranks;
    view.fail_at_step = c.fail_at_step;
    if (c.stall_rank >= 0) {
      view.failed.push_back(c.stall_rank);
      view.stall_rank = c.stall_rank;
      view.stall_ms = c.stall_ms.count();
      view.fail_at_step = c.fail_ranks.empty() ? c.stall_at_step : std::min(c.fail_at_step, c.stall_at_step);
    }
    view.backup = backup;
    view.kill_ns = event_ns;
    view.detected_ns = hooks.detected_ns();
    view.tokens_lost_expert = loop->tokens_lost_expert();
    view.requests_reserved = loop->requests_reserved();
    OMNI_ASSIGN_OR_RETURN(fr, gather_failure_figures(t, pm, view, timeout));
  }

  // Sum everything over the ranks.
  OMNI_RETURN_IF_ERROR(loop->loads().all_reduce(t, timeout, failing));
  const ServeCounts& counts = loop->counts();
  OMNI_ASSIGN_OR_RETURN(const auto weights, check_slot_weights(setup.model, pm.snapshot()->placement(), q, *rank.store));
  std::vector<int64_t> totals = {counts.checked, counts.wrong, counts.misrouted, weights.first, weights.second};
  OMNI_RETURN_IF_ERROR(all_reduce_among_survivors(t, std::span<int64_t>(totals), ReduceOp::kSum, timeout, failing));
  std::vector<double> times = {loop->dispatch_seconds(), loop->step_boundary_seconds()};
  OMNI_RETURN_IF_ERROR(all_reduce_among_survivors(t, std::span<double>(times), ReduceOp::kSum, timeout, failing));

  OMNI_ASSIGN_OR_RETURN(auto planner, make_planner(c.manager.planner_spec));
  DemoReport rep;
  rep.ranks = R;
  rep.steps = c.steps;
  rep.planner = planner->spec();
  rep.dispatch = c.manager.dispatch_mode == DispatchMode::kPerBatch ? "per-batch" : "shares";
  rep.transport = std::string(t.backend());
  rep.manager = pm.stats();
  rep.outputs_checked = totals[0];
  rep.wrong_outputs = totals[1];
  rep.misrouted = totals[2];
  rep.weights_checked = totals[3];
  rep.weights_corrupted = totals[4];
  const double per_rank_step = 1e6 / static_cast<double>(R) / static_cast<double>(c.steps);
  rep.dispatch_us_per_step = times[0] * per_rank_step;
  rep.step_boundary_us_per_step = times[1] * per_rank_step;
  rep.engine_us_per_step = rep.dispatch_us_per_step + rep.step_boundary_us_per_step;
  // Figures per window, then per phase; rank 0 also plans each window on its
  // own counts (the oracle column).
  OraclePricing oracle;
  oracle.planner = q == 0 ? planner.get() : nullptr;
  oracle.input = setup.plan_input;
  oracle.mode = c.manager.dispatch_mode;
  OMNI_ASSIGN_OR_RETURN(PhaseTable table, make_phase_table(loop->loads(), w.window_names, oracle));
  rep.phases = std::move(table.phases);
  rep.overall = std::move(table.overall);
  rep.wall_seconds = seconds_since(t_start);
  rep.failure = fr;
  return rep;
}

}  // namespace

StatusOr<std::vector<DemoReport>> run_local_demo(int32_t num_ranks, const DemoConfig& c, const DemoWorkload& w) {
  const auto t_start = Clock::now();
  OMNI_ASSIGN_OR_RETURN(auto setup, make_setup(c, w, num_ranks));
  const bool failing = c.injects_failures();
  LocalClusterOptions co;
  co.manager = c.manager;
  std::unique_ptr<DemoBackups> backups;
  if (failing) {
    if (!c.fail_ranks.empty())
      OMNI_RETURN_IF_ERROR(check_failure_injection(c.fail_ranks, c.fail_at_step, c.steps, c.backup, num_ranks));
    if (c.stall_rank >= 0)
      OMNI_RETURN_IF_ERROR(
          check_stall_injection(c.stall_rank, c.stall_at_step, c.stall_ms, c.steps, c.fail_ranks, num_ranks));
    OMNI_ASSIGN_OR_RETURN(backups, DemoBackups::create(c.backup, setup->model, num_ranks));
    co.backups = backups->sources();
    // Heartbeats: the detectors fail the dead ranks over in the managers.
    co.heartbeats = true;
    co.detector.period = c.heartbeat_period;
    co.detector.timeout = c.heartbeat_timeout;
  }
  const std::vector<int64_t> slot_bytes(static_cast<size_t>(w.routing.num_layers()), setup->model.expert_bytes());
  OMNI_ASSIGN_OR_RETURN(auto cluster, LocalCluster::create(setup->initial, setup->topology, slot_bytes, co));
  for (RankId q = 0; q < num_ranks; ++q)
    OMNI_RETURN_IF_ERROR(load_initial_weights(setup->model, setup->initial, q, cluster->store(q)));
  std::vector<DemoReport> reports(static_cast<size_t>(num_ranks));
  OMNI_RETURN_IF_ERROR(cluster->run([&](RankId q) -> Status {
    const DemoRank rank{&cluster->transport(q), &cluster->manager(q), &cluster->store(q)};
    const BackupSource* backup = backups ? backups->sources()[static_cast<size_t>(q)] : nullptr;
    FailureHooks hooks;
    // A crashed or fenced rank: the cluster keeps its manager until the survivors are done.
    hooks.crash = [&cluster, q] { cluster->kill(q); };
    hooks.leave = hooks.crash;
    hooks.stall = [&cluster, q](std::chrono::milliseconds d) { cluster->stall(q, d); };
    hooks.detected_ns = [&cluster, q] { return cluster->first_detection_ns(q); };
    OMNI_ASSIGN_OR_RETURN(reports[static_cast<size_t>(q)], run_rank(rank, hooks, c, w, *setup, backup, t_start));
    return ok_status();
  }));
  cluster->close();  // before the backups it reads go
  return reports;
}

StatusOr<DemoReport> run_demo_rank(Transport& t, const DemoConfig& c, const DemoWorkload& w) {
  const auto t_start = Clock::now();
  const bool failing = c.injects_failures();
  if (failing) {
    if (t.backend() == "mpi")
      return invalid_argument_error(
          "demo: failure injection across processes needs a transport that survives a dead peer (--transport ucx); "
          "with MPI the death of one process ends the job");
    if (!c.fail_ranks.empty())
      OMNI_RETURN_IF_ERROR(check_failure_injection(c.fail_ranks, c.fail_at_step, c.steps, c.backup, t.size()));
    if (c.stall_rank >= 0)
      OMNI_RETURN_IF_ERROR(
          check_stall_injection(c.stall_rank, c.stall_at_step, c.stall_ms, c.steps, c.fail_ranks, t.size()));
  }
  OMNI_ASSIGN_OR_RETURN(auto setup, make_setup(c, w, t.size()));
  const int32_t L = w.routing.num_layers();
  OMNI_ASSIGN_OR_RETURN(auto store, HostWeightStore::create(std::vector<int64_t>(static_cast<size_t>(L), setup->model.expert_bytes()),
                                                            std::vector<int32_t>(static_cast<size_t>(L), c.slots_per_rank),
                                                            c.manager.staging_bytes_per_rank));
  OMNI_RETURN_IF_ERROR(load_initial_weights(setup->model, setup->initial, t.rank(), *store));
  // This process's backup (as its host would keep one).
  std::unique_ptr<DemoBackups> backups;
  PlacementManagerOptions mo = c.manager;
  if (failing) {
    OMNI_ASSIGN_OR_RETURN(backups, DemoBackups::create(c.backup, setup->model, 1));
    mo.backup = backups->sources()[0];
  }
  OMNI_ASSIGN_OR_RETURN(auto pm, PlacementManager::create(t, setup->topology, setup->initial, *store, mo));
  // Heartbeats: the detector fails dead ranks over in the manager (and is
  // stopped before the manager goes).
  std::atomic<int64_t> detected_ns{0};
  std::unique_ptr<FailureDetector> detector;
  if (failing) {
    FailureDetectorOptions fo;
    fo.period = c.heartbeat_period;
    fo.timeout = c.heartbeat_timeout;
    PlacementManager* manager = pm.get();
    fo.on_change = [manager, &detected_ns](const Membership& m) {
      int64_t zero = 0;
      detected_ns.compare_exchange_strong(zero, steady_ns());
      manager->on_membership(m);
    };
    OMNI_ASSIGN_OR_RETURN(detector, FailureDetector::start(t, fo));
    OMNI_RETURN_IF_ERROR(t.barrier(c.manager.collective_timeout));  // every detector runs before anyone fails
  }
  FailureHooks hooks;
  hooks.crash = [] {
    std::fflush(nullptr);
    ::raise(SIGKILL);
  };
  hooks.stall = [](std::chrono::milliseconds d) { stop_this_process_for(d); };
  hooks.leave = [&detector] {
    if (detector) detector->stop(/*graceful=*/false);
  };
  hooks.detected_ns = [&detected_ns] { return detected_ns.load(); };
  auto report = run_rank(DemoRank{&t, pm.get(), store.get()}, hooks, c, w, *setup, failing ? mo.backup : nullptr, t_start);
  if (detector) detector->stop(/*graceful=*/report.ok() && !report->rank_failed);
  return report;
}

}  // namespace omni
