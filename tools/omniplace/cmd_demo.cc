// omniplace demo: N ranks serve a toy MoE model with real arithmetic on the
// shipped Qwen1.5-MoE routing time series while placement changes under them.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "demo/demo.h"
#include "omniplace/arg_checks.h"
#include "omniplace/command.h"
#include "omniplace/install_paths.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/transport/mpi_transport.h"
#include "omniplacement/transport/ucx_transport.h"

namespace {

// The trace the demo serves by default, relative to the sample data dir.
constexpr const char* kDefaultTrace = "traces/qwen15moe_expert_freq_by_iteration.csv";

struct DemoArgs {
  int32_t ranks = 12;
  int32_t ranks_per_host = 0;  // 0: 4 when it divides the ranks, else one host
  int32_t slots_per_rank = 0;  // 0: 72 slots in all (6 per rank at 12 ranks)
  int32_t total_slots = 72;
  int64_t steps = 600;
  int64_t steps_per_window = 10;
  // Twice per trace window: the second half of each window is served by a
  // plan that has seen its first half (1.029 against 1.038 at 10 steps, with
  // fewer experts moved; README, "The demo").
  int64_t interval = 5;
  int32_t cadence = 1;
  int32_t layers_per_commit = 0;
  int32_t tokens = 64;
  int32_t max_moves_per_rank = -1;
  double min_gain = 0.0;
  int64_t stage_wait_ms = 0;
  double decay = 0.0;
  double volatility = 0.0;
  int32_t plan_samples = omni::PlacementManagerOptions{}.plan_samples;
  int64_t shift_check = omni::PlacementManagerOptions{}.shift_check_steps;
  double shift_threshold = omni::PlacementManagerOptions{}.shift_threshold;
  std::string planner = "omni";
  std::string dispatch = "per-batch";
  std::string transport = "local";
  std::string trace;  // empty: the shipped Qwen1.5-MoE series (kDefaultTrace in the data dir)
  std::vector<std::string> datasets = {"bookcorpus", "wikitext", "wmt19"};
  uint64_t seed = 1;
  bool json = false;
  bool static_only = false;
  std::vector<int32_t> fail_ranks;
  int32_t fail_host = -1;
  int64_t fail_at_step = -1;
  int32_t stall_rank = -1;
  int64_t stall_at_step = -1;
  int64_t stall_ms = 5000;
  int64_t heartbeat_ms = 10;
  int64_t heartbeat_timeout_ms = 200;  // 50 ms gives false failures on a loaded 2-core machine
  std::string backup = "host";
  bool strict = false;
};

// Most ranks the demo runs (each rank of the local transport is a few threads).
constexpr int32_t kMaxDemoRanks = 1024;

// Checks between options that ranges alone cannot express; a usage error names the option.
std::string check_demo_args(const DemoArgs& a) {
  using omni::str_cat;
  if (a.transport == "local") {
    if (a.ranks_per_host > 0 && a.ranks % a.ranks_per_host != 0) {
      return str_cat("--ranks-per-host ", a.ranks_per_host, " must divide --ranks ", a.ranks);
    }
    for (int32_t r : a.fail_ranks) {
      if (r < 0 || r >= a.ranks) return str_cat("--fail-rank ", r, ": ranks are 0..", a.ranks - 1);
    }
    if (a.stall_rank >= a.ranks) return str_cat("--stall-rank ", a.stall_rank, ": ranks are 0..", a.ranks - 1);
  }
  if (a.transport == "mpi" && (!a.fail_ranks.empty() || a.fail_host >= 0 || a.stall_rank >= 0)) {
    return "--fail-rank, --fail-host and --stall-rank need --transport local or ucx (with MPI the death of one "
           "process ends the job; scripts/demo_mpi.sh runs ucx)";
  }
  if (a.fail_at_step >= a.steps) {
    return str_cat("--fail-at-step ", a.fail_at_step, " must be below --steps ", a.steps);
  }
  if (a.stall_at_step >= a.steps) {
    return str_cat("--stall-at-step ", a.stall_at_step, " must be below --steps ", a.steps);
  }
  if (a.stall_rank >= 0 && std::find(a.fail_ranks.begin(), a.fail_ranks.end(), a.stall_rank) != a.fail_ranks.end()) {
    return str_cat("--stall-rank ", a.stall_rank, " is also a --fail-rank: a rank either crashes or stalls");
  }
  if (a.heartbeat_timeout_ms <= a.heartbeat_ms) {
    return str_cat("--heartbeat-timeout-ms ", a.heartbeat_timeout_ms, " must exceed --heartbeat-ms ", a.heartbeat_ms);
  }
  return {};
}

// Why the survivors of the failure cannot restore every lost expert, or "".
std::string capacity_warning(int32_t ranks, int32_t failed, int32_t slots_per_rank, int32_t experts) {
  const int64_t survivors = ranks - failed;
  const int64_t slots = survivors * slots_per_rank;
  if (failed == 0 || slots >= experts) return {};
  return omni::str_cat("capacity cannot restore: ", survivors, " surviving ranks x ", slots_per_rank, " slots = ",
                       slots, " slots per layer for ", experts, " experts; at least ", experts - slots,
                       " experts per layer stay lost (their tokens are reported, not served); give more "
                       "--slots-per-rank or fail fewer ranks");
}

nlohmann::json failure_json(const omni::DemoFailure& f) {
  return {{"failed_ranks", f.failed},
          {"declared_failed", f.declared_failed},
          {"fail_at_step", f.fail_at_step},
          {"stall_rank", f.stall_rank >= 0 ? nlohmann::json(f.stall_rank) : nlohmann::json(nullptr)},
          {"stall_ms", f.stall_ms},
          {"backup", f.backup},
          {"detection_ms", f.detection_ms},
          {"detection_all_survivors_ms", f.detection_all_ms},
          {"failover_ms", f.failover_ms},
          {"failover_cost_us", f.failover_cost_us},
          {"experts_lost", f.experts_lost},
          {"experts_restored", f.experts_restored},
          {"restore_ms", f.restore_ms},
          {"restore_us_per_expert", f.restore_us_per_expert},
          {"full_redundancy_ms", f.redundancy_ms},
          {"tokens_of_lost_experts", f.tokens_lost_expert},
          {"requests_reserved", f.requests_reserved}};
}

void print_failure(const omni::DemoFailure& f) {
  auto when = [](double ms) {
    std::ostringstream os;
    if (ms < 0) os << "not reached";
    else os << std::fixed << std::setprecision(2) << ms << " ms";
    return os.str();
  };
  auto list = [](const std::vector<omni::RankId>& v) {
    std::string out;
    for (auto r : v) out += (out.empty() ? "" : ",") + std::to_string(r);
    return out;
  };
  std::vector<omni::RankId> crashed;
  for (auto r : f.failed)
    if (r != f.stall_rank) crashed.push_back(r);
  std::string what;
  if (!crashed.empty()) what = "rank(s) " + list(crashed) + " crashed";
  if (f.stall_rank >= 0)
    what += (what.empty() ? "" : ", ") + std::string("rank ") + std::to_string(f.stall_rank) + " stalled for " +
            std::to_string(f.stall_ms) + " ms";
  std::cout << std::fixed << std::setprecision(2) << "  failure                  " << what << " from step "
            << f.fail_at_step << " (backup: " << f.backup << "); declared failed: " << list(f.declared_failed)
            << (f.declared_failed == f.failed ? "" : "   <-- DIFFERS FROM THE RANKS MADE TO FAIL") << "\n"
            << "    detection              " << when(f.detection_ms) << " (all survivors: " << when(f.detection_all_ms)
            << ")\n"
            << "    failover               " << when(f.failover_ms)
            << " (detection to every survivor routing on the new map; " << f.failover_cost_us << " us per rank)\n"
            << "    lost experts           " << f.experts_lost << " (no surviving replica), " << f.experts_restored
            << " restored\n"
            << "    restore                " << when(f.restore_ms) << " (" << f.restore_us_per_expert
            << " us per expert from the backup)\n"
            << "    full redundancy again  " << when(f.redundancy_ms) << "\n"
            << "    tokens of lost experts " << f.tokens_lost_expert << " (marked, not served, until restored)\n"
            << "    requests re-served     " << f.requests_reserved << " (died with the rank, served on the new map)\n";
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  std::ostringstream os;
  os << std::fixed << std::setprecision(u == 0 ? 0 : 1) << b << " " << units[u];
  return os.str();
}

nlohmann::json to_json(const omni::DemoReport& r, const DemoArgs& a, const omni::DemoConfig& c,
                       const std::string& warning) {
  nlohmann::json phases = nlohmann::json::array();
  for (const auto& p : r.phases)
    phases.push_back({{"phase", p.name}, {"windows", p.num_windows}, {"dynamic_max_over_mean", p.dynamic},
                      {"static_max_over_mean", p.static_}, {"oracle_max_over_mean", p.oracle}});
  const auto& m = r.manager;
  return {{"ranks", r.ranks},
          {"ranks_per_host", c.ranks_per_host},
          {"slots_per_rank", c.slots_per_rank},
          {"steps", r.steps},
          {"steps_per_window", a.steps_per_window},
          {"interval", a.interval},
          {"planner", r.planner},
          {"dispatch", r.dispatch},
          {"transport", r.transport},
          {"replans", m.rounds_started},
          {"rounds_completed", m.rounds_completed},
          {"rounds_no_change", m.rounds_no_change},
          {"rounds_aborted", m.rounds_aborted},
          {"last_abort", m.last_abort},
          {"epochs_committed", m.epoch},
          {"experts_moved", m.experts_moved},
          {"bytes_moved", m.bytes_moved},
          {"outputs_checked", r.outputs_checked},
          {"wrong_outputs", r.wrong_outputs},
          {"misrouted", r.misrouted},
          {"weights_checked", r.weights_checked},
          {"weights_corrupted", r.weights_corrupted},
          {"phases", phases},
          {"overall",
           {{"windows", r.overall.num_windows},
            {"dynamic_max_over_mean", r.overall.dynamic},
            {"static_max_over_mean", r.overall.static_},
            {"oracle_max_over_mean", r.overall.oracle}}},
          {"engine_us_per_step", r.engine_us_per_step},
          {"dispatch_us_per_step", r.dispatch_us_per_step},
          {"step_boundary_us_per_step", r.step_boundary_us_per_step},
          {"shift_check_steps", c.manager.shift_check_steps},
          {"shift_threshold", c.manager.shift_threshold},
          {"shift_rounds", m.shift_rounds},
          {"shift_checks", m.shift_checks},
          {"shift_collectives", m.shift_collectives},
          {"agreement_collectives", m.agreement_collectives},
          {"agreement_us_mean", m.agreement_collectives ? m.agreement_seconds * 1e6 / m.agreement_collectives : 0.0},
          {"commit_us_mean_excluding_copy", m.batches_committed ? m.commit_seconds * 1e6 / m.batches_committed : 0.0},
          {"staging_copy_us_mean", m.batches_committed ? m.staging_copy_seconds * 1e6 / m.batches_committed : 0.0},
          {"planning_seconds", m.planning_seconds},
          {"wall_seconds", r.wall_seconds},
          {"failure", r.failure.injected ? failure_json(r.failure) : nlohmann::json(nullptr)},
          {"capacity_warning", warning.empty() ? nlohmann::json(nullptr) : nlohmann::json(warning)}};
}

void print_table(const omni::DemoReport& r, const DemoArgs& a, const std::string& warning) {
  const auto& m = r.manager;
  std::cout << std::fixed;
  std::cout << "\n  steps                    " << r.steps << "\n"
            << "  re-plans                 " << m.rounds_started << "  (" << m.rounds_completed << " moved, "
            << m.rounds_no_change << " unchanged, " << m.rounds_aborted << " aborted)\n"
            << "  shift re-plans           " << m.shift_rounds << "  (" << m.shift_checks << " checks)\n"
            << "  epochs committed         " << m.epoch << "\n"
            << "  experts moved            " << m.experts_moved << "\n"
            << "  bytes moved              " << human_bytes(static_cast<double>(m.bytes_moved)) << "\n"
            << "  outputs checked          " << r.outputs_checked << "\n"
            << "  wrong outputs            " << r.wrong_outputs << (r.wrong_outputs == 0 ? "" : "   <-- ERROR") << "\n"
            << "  slot weights at the end  " << r.weights_checked << " checked, " << r.weights_corrupted
            << " differ from their expert" << (r.weights_corrupted == 0 ? "" : "   <-- ERROR") << "\n"
            << std::setprecision(1) << "  engine thread per step   " << r.engine_us_per_step << " us  (record+dispatch "
            << r.dispatch_us_per_step << " us, step_boundary " << r.step_boundary_us_per_step << " us)\n"
            << "  commit step (rank 0)     agreement " << (m.agreement_collectives ? m.agreement_seconds * 1e6 / m.agreement_collectives : 0.0)
            << " us per collective (" << m.agreement_collectives << "), commit "
            << (m.batches_committed ? m.commit_seconds * 1e6 / m.batches_committed : 0.0) << " us + staging copy "
            << (m.batches_committed ? m.staging_copy_seconds * 1e6 / m.batches_committed : 0.0) << " us per epoch\n"
            << "  wall time                " << r.wall_seconds << " s\n";
  if (r.failure.injected) print_failure(r.failure);
  if (!warning.empty()) std::cout << "  WARNING                  " << warning << "\n";
  std::cout << "\n";
  std::cout << "  max/mean rank load (each window's " << a.steps_per_window
            << " steps summed; mean over windows and layers)\n";
  std::cout << "  phase        windows   dynamic   static   oracle\n";
  auto row = [](const omni::DemoPhase& p) {
    std::cout << "  " << std::left << std::setw(12) << p.name << std::right << std::setw(8) << p.num_windows
              << std::setprecision(3) << std::setw(10) << p.dynamic << std::setw(9) << p.static_ << std::setw(9)
              << p.oracle << "\n";
  };
  for (const auto& p : r.phases) row(p);
  row(r.overall);
  std::cout << "  (dynamic: this run; static: the initial placement kept; oracle: " << r.planner
            << " planned on each window's own counts)\n";
}

omni::cli::RunFn setup_demo(CLI::App& app) {
  auto args = std::make_shared<DemoArgs>();
  auto* sub = app.add_subcommand("demo",
                                 "Serve a toy MoE model on N ranks while placement changes; check every output");
  sub->add_option("--ranks", args->ranks, "ranks (threads with --transport local)")
      ->check(omni::cli::int_range(1, kMaxDemoRanks))->capture_default_str();
  sub->add_option("--ranks-per-host", args->ranks_per_host, "ranks per host (0: 4 when it divides the ranks, else one host)")
      ->check(omni::cli::int_range(0, kMaxDemoRanks))->capture_default_str();
  sub->add_option("--slots-per-rank", args->slots_per_rank,
                  "expert slots per rank and layer (0: ceil(72 / ranks), i.e. 12 redundant slots for 60 experts; "
                  "with --fail-rank or --stall-rank, at least enough for the survivors to hold every expert)")
      ->check(omni::cli::int_range(0, omni::kMaxSlotsPerRank))->capture_default_str();
  sub->add_option("--steps", args->steps, "forward passes")
      ->check(omni::cli::int_range(1, omni::cli::kMaxCliSteps))->capture_default_str();
  sub->add_option("--steps-per-window", args->steps_per_window, "steps per trace window")
      ->check(omni::cli::int_range(1, omni::cli::kMaxCliSteps))->capture_default_str();
  sub->add_option("--interval", args->interval, "re-plan every this many steps")
      ->check(omni::cli::int_range(1, omni::cli::kMaxCliSteps))->capture_default_str();
  sub->add_option("--cadence", args->cadence, "agreement collective every this many steps")
      ->check(omni::cli::int_range(1, 1 << 20))->capture_default_str();
  sub->add_option("--layers-per-commit", args->layers_per_commit, "layers per commit (0: all)")
      ->check(omni::cli::int_range(0, omni::kMaxLayers))->capture_default_str();
  sub->add_option("--tokens", args->tokens, "tokens per rank, step and layer")
      ->check(omni::cli::int_range(1, 1 << 16))->capture_default_str();
  sub->add_option("--planner", args->planner, "planner spec, e.g. omni, eplb")->capture_default_str();
  sub->add_option("--max-moves-per-rank", args->max_moves_per_rank,
                  "slots per rank and layer that may change per re-plan (-1: no limit; needs omni)")
      ->check(omni::cli::int_range(-1, omni::kMaxSlotsPerRank))->capture_default_str();
  sub->add_option("--min-gain", args->min_gain, "skip re-plans improving max/mean by less")
      ->check(omni::cli::number_range(0, 1e6))->capture_default_str();
  sub->add_option("--stage-wait-ms", args->stage_wait_ms,
                  "engine waits up to this long for its staged batch before voting (0: never; >0: commit steps "
                  "independent of machine load)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{60000}));
  sub->add_option("--ema-decay", args->decay, "plan on an EMA of the windows with this decay (0: last window)")
      ->check(omni::cli::number_range(0, 1, /*hi_open=*/true))->capture_default_str();
  sub->add_option("--plan-samples", args->plan_samples,
                  "the planner also gets the last N aggregated windows one by one (omni forecasts from them)")
      ->check(omni::cli::int_range(1, 1 << 10))->capture_default_str();
  sub->add_option("--shift-check", args->shift_check,
                  "re-plan at once when the load of the last N steps costs more than the plan promised "
                  "(0: off; -1: a tenth of --interval)")
      ->check(omni::cli::int_range(-1, omni::cli::kMaxCliSteps))->capture_default_str();
  sub->add_option("--shift-threshold", args->shift_threshold,
                  "max/mean above the plan's promise that counts as a shift (with --shift-check)")
      ->check(omni::cli::number_range(0, 1e6))->capture_default_str();
  sub->add_option("--volatility", args->volatility, "plan on load + this x |load - previous window|")
      ->check(omni::cli::number_range(0, 1e6))->capture_default_str();
  sub->add_option("--dispatch", args->dispatch, "per-batch or shares")
      ->check(CLI::IsMember({"per-batch", "shares"}))
      ->capture_default_str();
  sub->add_option("--transport", args->transport,
                  "local (threads), mpi or ucx (processes under mpirun; ucx survives a dead peer: "
                  "scripts/demo_mpi.sh)")
      ->check(CLI::IsMember({"local", "mpi", "ucx"}))
      ->capture_default_str();
  sub->add_option("--trace", args->trace, std::string("per-iteration trace CSV (default: ") + kDefaultTrace +
                                             " in the sample data)");
  sub->add_option("--datasets", args->datasets, "datasets of the trace, in order")->delimiter(',');
  sub->add_option("--seed", args->seed, "seed of the token draws and weights")->capture_default_str();
  sub->add_flag("--static", args->static_only, "dynamic placement off (baseline run)");
  sub->add_option("--fail-rank", args->fail_ranks, "crash this rank (repeatable; local or ucx transport)")
      ->check(omni::cli::int_range(0, kMaxDemoRanks - 1));
  sub->add_option("--fail-host", args->fail_host, "crash every rank of this host (local or ucx transport)")
      ->check(omni::cli::int_range(0, kMaxDemoRanks - 1));
  sub->add_option("--fail-at-step", args->fail_at_step, "step before which the ranks crash (default: steps / 2)")
      ->check(omni::cli::int_range(0, omni::cli::kMaxCliSteps));
  sub->add_option("--stall-rank", args->stall_rank,
                  "stop this rank (a thread, or a process with SIGSTOP) for --stall-ms: declared failed, fenced "
                  "when it comes back (local or ucx transport)")
      ->check(omni::cli::int_range(0, kMaxDemoRanks - 1));
  sub->add_option("--stall-at-step", args->stall_at_step, "step before which it stalls (default: steps / 2)")
      ->check(omni::cli::int_range(0, omni::cli::kMaxCliSteps));
  sub->add_option("--stall-ms", args->stall_ms, "how long the stall lasts")
      ->check(omni::cli::int_range(1, omni::cli::kMaxCliMs))->capture_default_str();
  sub->add_option("--heartbeat-ms", args->heartbeat_ms, "failure detector heartbeat period")
      ->check(omni::cli::int_range(1, 60000))->capture_default_str();
  sub->add_option("--heartbeat-timeout-ms", args->heartbeat_timeout_ms,
                  "silence after which a rank is declared failed")
      ->check(omni::cli::int_range(1, omni::cli::kMaxCliMs))->capture_default_str();
  sub->add_option("--backup", args->backup, "where lost experts are restored from")
      ->check(CLI::IsMember({"host", "safetensors", "none"}))
      ->capture_default_str();
  sub->add_flag("--json", args->json, "print the result as one JSON object");
  sub->add_flag("--strict", args->strict,
                "exit 1 when the survivors of --fail-rank/--fail-host lack the slots to restore every expert");
  sub->footer(
      "Example:\n  omniplace demo                      # 12 ranks x 6 slots, Qwen1.5-MoE series, 600 steps\n"
      "  omniplace demo --ranks 8 --steps 200 --planner eplb --json\n"
      "  omniplace demo --fail-rank 5 --fail-at-step 300   # crash rank 5: detection, failover, restore\n"
      "  omniplace demo --stall-rank 5 --stall-at-step 300 --stall-ms 5000   # stall: declared failed, then fenced\n"
      "  mpirun -np 4 omniplace demo --transport mpi\n"
      "  bash scripts/demo_mpi.sh 4 --fail-rank 2 --fail-at-step 200 --json   # processes over UCX, one killed");
  return [args] {
    const DemoArgs& a = *args;
    if (const std::string bad = check_demo_args(a); !bad.empty()) {
      std::cerr << "omniplace demo: " << bad << "\nRun with --help for more information.\n";
      return omni::cli::kExitUsage;
    }
    std::string trace_path = a.trace;
    if (trace_path.empty()) {
      auto data = omni::cli::data_dir();
      if (!data.ok()) return omni::cli::fail("demo", data.status());
      trace_path = (*data / kDefaultTrace).string();
    }
    auto workload = omni::trace_workload(trace_path, a.datasets, a.steps_per_window, a.tokens, 4, a.seed);
    if (!workload.ok()) return omni::cli::fail("demo", workload.status());
    omni::DemoConfig c;
    c.steps = a.steps;
    c.seed = a.seed;
    c.manager.dynamic = !a.static_only;
    c.manager.planner_spec = a.planner;
    c.manager.replan_interval_steps = a.interval;
    c.manager.commit_cadence_steps = a.cadence;
    c.manager.layers_per_commit = a.layers_per_commit;
    c.manager.max_moves_per_rank = a.max_moves_per_rank;
    c.manager.min_gain = a.min_gain;
    c.manager.stage_wait = std::chrono::milliseconds(a.stage_wait_ms);
    c.manager.ema_decay = a.decay;
    c.manager.volatility_weight = a.volatility;
    c.manager.plan_samples = a.plan_samples;
    c.manager.shift_check_steps = a.shift_check;
    c.manager.shift_threshold = a.shift_threshold;
    c.manager.dispatch_mode = a.dispatch == "shares" ? omni::DispatchMode::kShares : omni::DispatchMode::kPerBatch;
    const bool tty = isatty(fileno(stderr)) != 0;
    c.progress_every = std::max<int64_t>(1, a.steps / 30);
    auto header = [&](int32_t ranks) {
      if (a.json) return;
      std::cout << "OmniPlacement demo: " << ranks << " ranks x " << c.slots_per_rank << " slots ("
                << c.ranks_per_host << " per host, " << a.transport << " transport), Qwen1.5-MoE series "
                << workload->routing.num_layers() << " layers x " << workload->routing.num_experts()
                << " experts, top-" << workload->routing.top_k() << ", " << a.tokens << " tokens per rank and step; planner " << a.planner
                << ", dispatch " << a.dispatch << ", re-plan every " << a.interval << " steps\n"
                << std::flush;
    };
    if (!a.json) {
      c.progress = [tty](const omni::DemoProgress& p) {
        std::fprintf(stderr, "%sstep %lld/%lld  %s window %d  epoch %llu  re-plans %lld  experts moved %lld  wrong %lld/%lld%s",
                     tty ? "\r" : "", static_cast<long long>(p.step), static_cast<long long>(p.steps), p.phase.c_str(),
                     p.window, static_cast<unsigned long long>(p.epoch), static_cast<long long>(p.rounds_started),
                     static_cast<long long>(p.experts_moved), static_cast<long long>(p.wrong_outputs),
                     static_cast<long long>(p.outputs_checked), tty ? "   " : "\n");
        std::fflush(stderr);
      };
    }
    auto hosts_for = [&](int32_t ranks) {
      if (a.ranks_per_host > 0) return a.ranks_per_host;
      return ranks % 4 == 0 ? 4 : ranks;
    };
    // With --fail-rank or --stall-rank the default leaves the survivors room
    // for every expert (at 4 ranks, 72 slots would leave 54 on 3 survivors for
    // 60 experts). A host failure keeps the plain default and its capacity
    // warning: choose --slots-per-rank for it.
    auto slots_for = [&](int32_t ranks) {
      if (a.slots_per_rank > 0) return a.slots_per_rank;
      int32_t s = (a.total_slots + ranks - 1) / ranks;
      const int32_t failing = static_cast<int32_t>(a.fail_ranks.size()) + (a.stall_rank >= 0 ? 1 : 0);
      const int32_t survivors = ranks - failing;
      if (failing > 0 && a.fail_host < 0 && survivors > 0)
        s = std::max(s, (workload->routing.num_experts() + survivors - 1) / survivors);
      return s;
    };
    omni::DemoReport report;
    std::string warning;  // capacity that cannot restore after the injected failure
    // Failure injection, the same for every transport: which ranks crash or
    // stall, and the capacity warning (a usage error when nobody survives).
    auto inject = [&](int32_t ranks) -> omni::Status {
      c.fail_ranks.assign(a.fail_ranks.begin(), a.fail_ranks.end());
      if (a.fail_host >= 0) {
        if (a.fail_host >= ranks / c.ranks_per_host)
          return omni::invalid_argument_error(
              omni::str_cat("--fail-host ", a.fail_host, ": hosts are 0..", ranks / c.ranks_per_host - 1));
        for (int32_t r = a.fail_host * c.ranks_per_host; r < (a.fail_host + 1) * c.ranks_per_host; ++r)
          if (std::find(c.fail_ranks.begin(), c.fail_ranks.end(), r) == c.fail_ranks.end()) c.fail_ranks.push_back(r);
      }
      for (int32_t r : c.fail_ranks)
        if (r >= ranks) return omni::invalid_argument_error(omni::str_cat("--fail-rank ", r, ": ranks are 0..", ranks - 1));
      if (a.stall_rank >= ranks)
        return omni::invalid_argument_error(omni::str_cat("--stall-rank ", a.stall_rank, ": ranks are 0..", ranks - 1));
      const int32_t failing = static_cast<int32_t>(c.fail_ranks.size()) + (a.stall_rank >= 0 ? 1 : 0);
      if (failing >= ranks)
        return omni::invalid_argument_error(omni::str_cat("--fail-rank/--fail-host/--stall-rank would take all ", ranks,
                                                          " ranks down; leave at least one survivor"));
      if (!c.fail_ranks.empty()) c.fail_at_step = a.fail_at_step >= 0 ? a.fail_at_step : a.steps / 2;
      if (a.stall_rank >= 0) {
        c.stall_rank = a.stall_rank;
        c.stall_at_step = a.stall_at_step >= 0 ? a.stall_at_step : a.steps / 2;
        c.stall_ms = std::chrono::milliseconds(a.stall_ms);
      }
      if (c.injects_failures()) {
        c.heartbeat_period = std::chrono::milliseconds(a.heartbeat_ms);
        c.heartbeat_timeout = std::chrono::milliseconds(a.heartbeat_timeout_ms);
        c.backup = a.backup;
      }
      warning = capacity_warning(ranks, failing, c.slots_per_rank, workload->routing.num_experts());
      return omni::ok_status();
    };
    // The lowest rank that neither crashes nor stalls prints the summary.
    auto reporter_of = [&]() {
      omni::RankId r = 0;
      while (std::find(c.fail_ranks.begin(), c.fail_ranks.end(), r) != c.fail_ranks.end() || r == c.stall_rank) ++r;
      return r;
    };
    if (a.transport == "mpi" || a.transport == "ucx") {
      // One process per rank, under mpirun (scripts/demo_mpi.sh for ucx).
      const bool ucx = a.transport == "ucx";
      const omni::Timeout boot = c.manager.collective_timeout;
      const omni::Status init =
          ucx ? omni::UcxTransport::init(nullptr, nullptr, boot) : omni::MpiTransport::init(nullptr, nullptr);
      if (!init.ok()) return omni::cli::fail("demo", init);
      std::unique_ptr<omni::Transport> world;
      if (ucx) {
        auto w = omni::UcxTransport::create_world(boot);
        if (!w.ok()) return omni::cli::fail("demo", w.status());
        world = std::move(*w);
      } else {
        auto w = omni::MpiTransport::create_world(boot);
        if (!w.ok()) return omni::cli::fail("demo", w.status());
        world = std::move(*w);
      }
      const omni::RankId me = world->rank();
      c.ranks_per_host = hosts_for(world->size());
      c.slots_per_rank = slots_for(world->size());
      if (auto st = inject(world->size()); !st.ok())
        return omni::cli::fail("demo", st.with_context(omni::str_cat("rank ", me)));
      const omni::RankId reporter = reporter_of();
      if (me == reporter) {
        if (!warning.empty()) std::cerr << "omniplace demo: WARNING: " << warning << "\n";
        header(world->size());
      } else {
        c.progress = nullptr;
      }
      auto r = omni::run_demo_rank(*world, c, *workload);
      world.reset();
      (void)(ucx ? omni::UcxTransport::finalize() : omni::MpiTransport::finalize());
      if (!r.ok()) return omni::cli::fail("demo", r.status().with_context(omni::str_cat("rank ", me)));
      if (r->rank_failed) {
        // The stalled rank, back: it learnt it was declared failed and leaves.
        std::fprintf(stderr, "rank %d: stopped for %lld ms before step %lld, then fenced out of the group: %s\n",
                     static_cast<int>(me), static_cast<long long>(a.stall_ms), static_cast<long long>(c.stall_at_step),
                     r->fenced.c_str());
        return me == c.stall_rank ? omni::cli::kExitOk : omni::cli::kExitInvalidInput;
      }
      if (me != reporter)
        return r->wrong_outputs == 0 && r->weights_corrupted == 0 ? omni::cli::kExitOk : omni::cli::kExitInvalidInput;
      report = *r;
    } else {
      c.slots_per_rank = slots_for(a.ranks);
      c.ranks_per_host = hosts_for(a.ranks);
      if (auto st = inject(a.ranks); !st.ok()) {
        std::cerr << "omniplace demo: " << st.message() << "\n";
        return omni::cli::kExitUsage;
      }
      if (!warning.empty()) std::cerr << "omniplace demo: WARNING: " << warning << "\n";
      header(a.ranks);
      auto reports = omni::run_local_demo(a.ranks, c, *workload);
      if (!reports.ok()) return omni::cli::fail("demo", reports.status());
      report = (*reports)[static_cast<size_t>(reporter_of())];
      if (c.stall_rank >= 0) {
        const auto& stalled = (*reports)[static_cast<size_t>(c.stall_rank)];
        if (stalled.rank_failed)
          std::fprintf(stderr, "rank %d: stopped for %lld ms before step %lld, then fenced out of the group: %s\n",
                       static_cast<int>(c.stall_rank), static_cast<long long>(a.stall_ms),
                       static_cast<long long>(c.stall_at_step), stalled.fenced.c_str());
      }
    }
    if (!a.json && tty) std::fprintf(stderr, "\n");
    if (a.json) {
      std::cout << to_json(report, a, c, warning).dump(2) << "\n";
    } else {
      print_table(report, a, warning);
    }
    if (report.wrong_outputs != 0 || report.weights_corrupted != 0) return omni::cli::kExitInvalidInput;
    if (a.strict && !warning.empty()) {
      std::cerr << "omniplace demo: --strict: " << warning << "\n";
      return omni::cli::kExitInvalidInput;
    }
    return omni::cli::kExitOk;
  };
}

}  // namespace

OMNI_CLI_COMMAND(demo, 10, setup_demo);
