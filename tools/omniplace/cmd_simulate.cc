// omniplace simulate: replay a trace under several placement policies side by
// side and price every step with the cost model (docs/simulator.md).
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "omniplace/arg_checks.h"
#include "omniplace/command.h"
#include "omniplace/install_paths.h"
#include "omniplace/sim_cli_options.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/placement_file.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/sim/policies.h"
#include "omniplacement/sim/trace_files.h"
#include "omniplacement/sim/sim.h"

namespace {

using omni::StatusOr;
namespace sim = omni::sim;

struct SimulateOptions {
  omni::cli::WorkloadCliOptions workload;
  int64_t steps = 1000;
  std::string trace;            // a trace file or directory (else the synthetic workload)
  std::string datasets;         // per-iteration trace CSVs: comma-separated datasets, in order
  int64_t window_steps = 1;     // steps each window of --trace holds
  std::string placement;        // placement in force for activation dumps
  int32_t ranks = 64;
  int32_t ranks_per_host = 8;
  int32_t slots_per_rank = 0;  // 0: ceil(experts / ranks) + 1
  std::string policies = "contiguous,static-eplb,static-omni,dynamic-eplb,dynamic-omni,oracle";
  int32_t groups = 0;          // 0: 8 when experts % 8 == 0 (DeepSeek-V3's n_group), else 1
  std::string eplb_spec = "eplb";
  std::string omni_spec = "omni";
  std::string dynamic_omni_spec = "omni";
  std::string oracle_spec = "omni";
  int32_t history = 1;
  // What the runtime hands its planner: its recent windows, and the dispatch it runs.
  int32_t samples = omni::PlacementManagerOptions{}.plan_samples;
  // Shift detection as the runtime does it (PlacementManagerOptions of the
  // same names): -1 is a tenth of the interval.
  int64_t shift_check = omni::PlacementManagerOptions{}.shift_check_steps;
  double shift_threshold = omni::PlacementManagerOptions{}.shift_threshold;
  int64_t interval = 100;
  std::string migration = "background";  // the runtime moves weights while serving
  // The runtime's migration budget (PlacementManagerOptions of the same names).
  int64_t staging_bytes_per_rank = omni::kDefaultStagingBytesPerRank;
  int32_t layers_per_commit = 0;
  // Replaced by --staging-bytes-per-rank: N experts of --expert-mb each (-1: not given).
  int32_t migration_per_round = -1;
  // Cost model, in the units users think in.
  double expert_mb = sim::CostParams{}.expert_bytes / 1e6;
  double dispatch_bytes = sim::CostParams{}.dispatch_bytes_per_token;
  double combine_bytes = sim::CostParams{}.combine_bytes_per_token;
  double compute_us_per_token = sim::CostParams{}.compute_s_per_token * 1e6;
  double compute_us_per_replica = 0;
  double layer_overhead_us = 0;
  double same_host_gbps = omni::LinkBandwidths{}.same_host_bytes_per_s / 1e9;
  double cross_host_gbps = omni::LinkBandwidths{}.cross_host_bytes_per_s / 1e9;
  double latency_us = omni::LinkBandwidths{}.latency_s * 1e6;
  std::string dispatch = omni::dispatch_mode_name(omni::PlacementManagerOptions{}.dispatch_mode);
  double allgather_us = sim::CostParams{}.batch_allgather_s * 1e6;
  std::string csv;
  std::string plot;
  bool json = false;
  bool progress = false;
  bool no_progress = false;
  bool steps_given = false;
};

nlohmann::json to_json(const sim::SimResult& r, const SimulateOptions& o, const sim::CostParams& cost) {
  nlohmann::json j;
  j["steps"] = r.num_steps;
  j["layers"] = r.num_layers;
  j["experts"] = r.num_experts;
  j["ranks"] = r.num_ranks;
  j["ranks_per_host"] = o.ranks_per_host;
  j["interval_steps"] = o.interval;
  j["migration"] = o.migration;
  j["staging_bytes_per_rank"] = o.staging_bytes_per_rank;
  j["layers_per_commit"] = o.layers_per_commit;
  j["shift_check_steps"] = omni::resolved_shift_check_steps(o.shift_check, o.interval);
  j["shift_threshold"] = o.shift_threshold;
  j["wall_s"] = r.wall_s;
  j["cost"] = {{"expert_bytes", cost.expert_bytes},
               {"dispatch_bytes_per_token", cost.dispatch_bytes_per_token},
               {"combine_bytes_per_token", cost.combine_bytes_per_token},
               {"compute_s_per_token", cost.compute_s_per_token},
               {"compute_s_per_replica", cost.compute_s_per_replica},
               {"layer_overhead_s", cost.layer_overhead_s},
               {"same_host_bytes_per_s", o.same_host_gbps * 1e9},
               {"cross_host_bytes_per_s", o.cross_host_gbps * 1e9},
               {"latency_s", o.latency_us * 1e-6}};
  // Only with per-batch dispatch, so that the default JSON stays as it was.
  if (cost.dispatch == omni::DispatchMode::kPerBatch) {
    j["cost"]["dispatch"] = omni::dispatch_mode_name(cost.dispatch);
    j["cost"]["batch_allgather_s"] = cost.batch_allgather_s;
  }
  for (const sim::PolicySummary& p : r.policies) {
    j["policies"].push_back({{"name", p.name},
                             {"kind", p.kind},
                             {"mean_step_s", p.mean_step_s},
                             {"p99_step_s", p.p99_step_s},
                             {"mean_max_over_mean", p.mean_max_over_mean},
                             {"mean_max_over_mean_after_first", p.mean_max_over_mean_after_first},
                             {"cross_host_bytes", p.cross_host_bytes},
                             {"moved_bytes", p.moved_bytes},
                             {"moved_experts", p.moved_experts},
                             {"migration_s", p.migration_s},
                             {"replans", p.replans},
                             {"shift_replans", p.shift_replans},
                             {"plan_wall_s", p.plan_wall_s}});
  }
  return j;
}

// Renders PNGs of the per-step CSV through the plot script shipped beside the
// executable (omniplace/install_paths.h; omniplacement.plot), with the
// omniplacement package found beside it on PYTHONPATH when there is one.
// shift_period > 0 marks the synthetic workload's phase shifts (every that many steps).
omni::Status plot_steps(const std::string& csv, const std::string& prefix, int64_t steps, int64_t shift_period) {
  OMNI_ASSIGN_OR_RETURN(const std::filesystem::path script, omni::cli::plot_script());
  auto quote = [](const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::string command;
  if (auto py_dir = omni::cli::python_package_dir()) {
    command = "PYTHONPATH=" + quote(py_dir->string()) + "${PYTHONPATH:+:$PYTHONPATH} ";
  }
  const int64_t every = std::max<int64_t>(1, steps / 2000);
  command += "/usr/bin/python3 " + quote(script.string()) + " " + quote(csv) + " " + quote(prefix) +
             " --every " + std::to_string(every);
  if (shift_period > 0) command += " --shift-every " + std::to_string(shift_period);
  command += " >&2";
  if (std::system(command.c_str()) != 0) {
    return omni::internal_error(omni::str_cat("simulate: plotting failed (", command,
                                              "); the plots need the Python module (OMNI_BUILD_PYTHON) and matplotlib"));
  }
  return omni::ok_status();
}

int run_simulate(const SimulateOptions& given) {
  const std::string cmd = "simulate";
  SimulateOptions o = given;
  if (o.migration_per_round >= 0)  // the old flag: N experts' worth of staging
    o.staging_bytes_per_rank = o.migration_per_round * std::llround(o.expert_mb * 1e6);
  auto params = o.workload.resolve();
  if (!params.ok()) return omni::cli::fail(cmd, params.status());
  sim::CostParams cost;
  cost.expert_bytes = o.expert_mb * 1e6;
  cost.dispatch_bytes_per_token = o.dispatch_bytes;
  cost.combine_bytes_per_token = o.combine_bytes;
  cost.compute_s_per_token = o.compute_us_per_token * 1e-6;
  cost.compute_s_per_replica = o.compute_us_per_replica * 1e-6;
  cost.layer_overhead_s = o.layer_overhead_us * 1e-6;
  auto dispatch = omni::parse_dispatch_mode(o.dispatch);
  if (!dispatch.ok()) return omni::cli::fail(cmd, dispatch.status());
  cost.dispatch = *dispatch;
  cost.batch_allgather_s = o.allgather_us * 1e-6;
  if (auto s = cost.validate(); !s.ok()) return omni::cli::fail(cmd, s);
  omni::LinkBandwidths links;
  links.same_host_bytes_per_s = o.same_host_gbps * 1e9;
  links.cross_host_bytes_per_s = o.cross_host_gbps * 1e9;
  links.latency_s = o.latency_us * 1e-6;
  auto topology = omni::Topology::uniform(o.ranks, o.ranks_per_host, links);
  if (!topology.ok()) return omni::cli::fail(cmd, topology.status());

  std::unique_ptr<sim::TraceSource> trace;
  if (o.trace.empty()) {
    auto synthetic = sim::SyntheticTrace::create(*params, o.steps);
    if (!synthetic.ok()) return omni::cli::fail(cmd, synthetic.status());
    trace = std::make_unique<sim::SyntheticTrace>(std::move(*synthetic));
  } else {
    sim::TraceFileOptions files;
    std::stringstream ss(o.datasets);
    for (std::string d; std::getline(ss, d, ',');)
      if (!d.empty()) files.datasets.push_back(d);
    std::optional<omni::PlacementFile> in_force;
    if (!o.placement.empty()) {
      auto p = omni::read_placement_file(o.placement);
      if (!p.ok()) return omni::cli::fail(cmd, p.status());
      in_force = std::move(*p);
      files.placement_in_force = &in_force->placement;
    }
    auto windows = sim::read_trace_windows(o.trace, files);
    if (!windows.ok()) return omni::cli::fail(cmd, windows.status());
    auto replay = sim::WindowTrace::create(std::move(*windows), o.window_steps);
    if (!replay.ok()) return omni::cli::fail(cmd, replay.status());
    trace = std::make_unique<sim::WindowTrace>(std::move(*replay));
  }
  const int32_t experts = trace->num_experts();
  if (o.groups > 0 && experts % o.groups != 0)
    return omni::cli::fail(cmd, omni::invalid_argument_error(omni::str_cat(
                                    "--groups ", o.groups, " does not divide the ", experts,
                                    " experts per layer: EPLB's hierarchical policy needs equal groups (valid: a "
                                    "divisor of ", experts, ", or 0 for the default)")));
  const int32_t spr = o.slots_per_rank > 0 ? o.slots_per_rank : (experts + o.ranks - 1) / o.ranks + 1;
  sim::PolicyContext ctx;
  ctx.topology = *topology;
  ctx.num_layers = trace->num_layers();
  ctx.num_experts = experts;
  ctx.slots_per_rank = spr;
  ctx.num_groups = o.groups > 0 ? o.groups : (experts % 8 == 0 ? 8 : 1);
  ctx.eplb_spec = o.eplb_spec;
  ctx.omni_spec = o.omni_spec;
  ctx.dynamic_omni_spec = o.dynamic_omni_spec;
  ctx.oracle_spec = o.oracle_spec;
  ctx.serving.dispatch = cost.dispatch;
  ctx.serving.window_steps = o.interval;
  ctx.serving.interval_steps = o.interval;
  ctx.serving.seconds_per_token = cost.compute_s_per_token > 0 ? cost.compute_s_per_token
                                                               : omni::ServingModel{}.seconds_per_token;
  ctx.serving.expert_bytes = cost.expert_bytes;
  auto policies = sim::make_policies(o.policies, ctx);
  if (!policies.ok()) return omni::cli::fail(cmd, policies.status());

  sim::SimOptions opts;
  opts.interval_steps = o.interval;
  auto mode = sim::parse_migration_mode(o.migration);
  if (!mode.ok()) return omni::cli::fail(cmd, mode.status());
  opts.migration_mode = *mode;
  opts.staging_bytes_per_rank = o.staging_bytes_per_rank;
  opts.layers_per_commit = o.layers_per_commit;
  opts.history_intervals = o.history;
  opts.sample_intervals = o.samples;
  opts.shift_check_steps = omni::resolved_shift_check_steps(o.shift_check, o.interval);
  opts.shift_threshold = o.shift_threshold;
  opts.cost = cost;
  opts.record_steps = !o.csv.empty() || !o.plot.empty();
  const bool show_progress = !o.no_progress && (o.progress || (isatty(STDERR_FILENO) && trace->num_steps() >= 1000));
  if (show_progress) {
    opts.progress = [](int64_t done, int64_t total) {
      const int width = 40;
      const int filled = static_cast<int>(std::lround(width * static_cast<double>(done) / static_cast<double>(total)));
      std::cerr << "\r[" << std::string(static_cast<size_t>(filled), '#')
                << std::string(static_cast<size_t>(width - filled), '.') << "] " << done << "/" << total << " steps"
                << std::flush;
      if (done == total) std::cerr << "\n";
    };
  }
  if (!o.trace.empty() && o.steps_given) opts.max_steps = o.steps;
  auto result = sim::simulate(*trace, *topology, *policies, opts);
  if (!result.ok()) return omni::cli::fail(cmd, result.status());
  const std::string csv = !o.csv.empty() ? o.csv : (o.plot.empty() ? "" : o.plot + "_steps.csv");
  if (!csv.empty()) {
    if (auto s = sim::write_steps_csv(*result, csv); !s.ok()) return omni::cli::fail(cmd, s);
  }
  if (!o.plot.empty()) {
    const int64_t shift_period = o.trace.empty() ? params->phase_period : 0;  // a replayed trace has no phases
    if (auto s = plot_steps(csv, o.plot, result->num_steps, shift_period); !s.ok()) return omni::cli::fail(cmd, s);
  }
  if (o.json) {
    std::cout << to_json(*result, o, cost).dump(2) << "\n";
  } else {
    std::cout << sim::summary_table(*result);
  }
  return omni::cli::kExitOk;
}

omni::cli::RunFn setup_simulate(CLI::App& app) {
  auto opts = std::make_shared<SimulateOptions>();
  auto* sub = app.add_subcommand("simulate", "Replay a trace under placement policies side by side and price each step");
  sub->footer(
      "Policies: contiguous, static-eplb, static-omni, dynamic-eplb, dynamic-omni, oracle, or\n"
      "<static|dynamic|oracle>:<planner spec>, e.g. dynamic:omni(max_moves_per_rank=2).\n"
      "Example (Qwen1.5-MoE, bookcorpus -> wikitext -> wmt19, 12 ranks on 3 hosts):\n"
      "  omniplace simulate --trace data/traces/qwen15moe_expert_freq_by_iteration.csv \\\n"
      "      --datasets bookcorpus,wikitext,wmt19 --ranks 12 --ranks-per-host 4 --interval 1\n"
      "Example (a DeepSeek-V3-like drifting decode workload on 64 ranks):\n"
      "  omniplace simulate --steps 2000 --drift 0.001 --phase-period 500 --csv steps.csv\n"
      "Example (budgeted incremental omni with shift detection, moved experts and realised balance):\n"
      "  omniplace simulate --steps 3000 --phase-period 1000 --migration background --shift-check 10 \\\n"
      "      --policies 'dynamic-eplb,dynamic:omni(max_moves_per_rank=1),oracle'");
  opts->workload.add_to(sub, "Synthetic workload");
  sub->add_option("--trace", opts->trace,
                  "Replay this trace: a directory of load files (.npy/.csv, or .txt dumps with --placement), a trace "
                  "CSV (data/traces) or one load file; without it, the synthetic workload")
      ->group("Trace");
  sub->add_option("--datasets", opts->datasets, "Per-iteration trace CSVs: datasets to replay, in order (default: all)")
      ->group("Trace");
  sub->add_option("--window-steps", opts->window_steps, "Steps each window of --trace holds (replayed as that many steps)")
      ->group("Trace")->check(omni::cli::int_range(1, omni::cli::kMaxCliSteps))->capture_default_str();
  sub->add_option("--placement", opts->placement, "Placement in force when the --trace activation dumps were taken")
      ->group("Trace");
  sub->add_option("--steps", opts->steps, "Steps to simulate (with --trace: at most this many)")
      ->check(omni::cli::int_range(1, omni::cli::kMaxCliSteps))
      ->each([opts](const std::string&) { opts->steps_given = true; })->capture_default_str();
  sub->add_option("--ranks", opts->ranks, "Ranks (devices) of the EP group")->group("Deployment")
      ->check(omni::cli::int_range(1, omni::kMaxRanks))->capture_default_str();
  sub->add_option("--ranks-per-host", opts->ranks_per_host, "Ranks per host")->group("Deployment")
      ->check(omni::cli::int_range(1, omni::kMaxRanks))->capture_default_str();
  sub->add_option("--slots-per-rank", opts->slots_per_rank, "Slots per rank (0: ceil(experts/ranks) + 1)")
      ->group("Deployment")->check(omni::cli::int_range(0, omni::kMaxSlotsPerRank))->capture_default_str();
  sub->add_option("--policies", opts->policies, "Comma-separated policies")->capture_default_str();
  sub->add_option("--interval", opts->interval, "Re-planning interval and window, steps")
      ->check(omni::cli::int_range(1, omni::cli::kMaxCliSteps))->capture_default_str();
  sub->add_option("--migration", opts->migration,
                  "stall: charge weight moves as a stall; background: move them while serving, switch when done")
      ->check(CLI::IsMember({"stall", "background"}))
      ->capture_default_str();
  auto* staging = sub->add_option("--staging-bytes-per-rank", opts->staging_bytes_per_rank,
                                  "Migration rounds as the runtime commits them: bytes of expert weights one rank "
                                  "receives per round, its staging memory (0: no limit)")
                      ->check(omni::cli::int_range(0, std::numeric_limits<int64_t>::max()))
                      ->capture_default_str();
  sub->add_option("--layers-per-commit", opts->layers_per_commit,
                  "Migration rounds as the runtime commits them: layers per round (0: no limit)")
      ->check(omni::cli::int_range(0, std::numeric_limits<int32_t>::max()))
      ->capture_default_str();
  sub->add_option("--migration-per-round", opts->migration_per_round,
                  "Replaced by --staging-bytes-per-rank: staging for N experts of --expert-mb per rank and round "
                  "(0: no limit)")
      ->check(omni::cli::int_range(0, omni::kMaxSlotsPerLayer))
      ->excludes(staging);
  sub->add_option("--history", opts->history, "Dynamic policies plan on the last N intervals")
      ->check(omni::cli::int_range(1, 1 << 20))->capture_default_str();
  sub->add_option("--samples", opts->samples,
                  "Dynamic policies also get the last N intervals one by one (omni forecasts the next interval from them)")
      ->check(omni::cli::int_range(1, 1 << 20))->capture_default_str();
  sub->add_option("--shift-check", opts->shift_check,
                  "Dynamic policies: every N steps, re-plan at once when the load of those steps is off the plan "
                  "(0: off; -1: a tenth of --interval, as the runtime)")
      ->check(omni::cli::int_range(-1, omni::cli::kMaxCliSteps))->capture_default_str();
  sub->add_option("--shift-threshold", opts->shift_threshold,
                  "Shift detection: re-plan when max/mean exceeds what the plan gave on its own load by this")
      ->check(omni::cli::number_range(0, 1e6))->capture_default_str();
  const std::string pl = "Planners";
  sub->add_option("--groups", opts->groups, "Expert groups for EPLB's hierarchical policy (0: 8 if experts % 8 == 0, else 1)")
      ->group(pl)->check(omni::cli::int_range(0, omni::kMaxExperts))->capture_default_str();
  sub->add_option("--eplb-spec", opts->eplb_spec, "Planner of static-eplb and dynamic-eplb")->group(pl)->capture_default_str();
  sub->add_option("--omni-spec", opts->omni_spec, "Planner of static-omni")->group(pl)->capture_default_str();
  sub->add_option("--dynamic-omni-spec", opts->dynamic_omni_spec, "Planner of dynamic-omni (given the placement in force)")
      ->group(pl)->capture_default_str();
  sub->add_option("--oracle-spec", opts->oracle_spec, "Planner of the oracle")->group(pl)->capture_default_str();
  const std::string c = "Cost model";
  sub->add_option("--expert-mb", opts->expert_mb, "Bytes of one expert's weights, MB")->group(c)
      ->check(omni::cli::number_range(1e-6, 1e9))->capture_default_str();
  sub->add_option("--dispatch-bytes", opts->dispatch_bytes, "Dispatch bytes per token-expert pair")->group(c)
      ->check(omni::cli::number_range(0, 1e12))->capture_default_str();
  sub->add_option("--combine-bytes", opts->combine_bytes, "Combine bytes per token-expert pair")->group(c)
      ->check(omni::cli::number_range(0, 1e12))->capture_default_str();
  sub->add_option("--compute-us-per-token", opts->compute_us_per_token, "Expert compute per token-expert pair, us")
      ->group(c)->check(omni::cli::number_range(0, 1e9))->capture_default_str();
  sub->add_option("--compute-us-per-replica", opts->compute_us_per_replica, "Fixed compute per loaded slot, us")
      ->group(c)->check(omni::cli::number_range(0, 1e9))->capture_default_str();
  sub->add_option("--layer-overhead-us", opts->layer_overhead_us, "Non-MoE time per layer, us")->group(c)
      ->check(omni::cli::number_range(0, 1e9))->capture_default_str();
  sub->add_option("--same-host-gbps", opts->same_host_gbps, "Same-host bandwidth per device, GB/s")->group(c)
      ->check(omni::cli::number_range(1e-9, 1e9))->capture_default_str();
  sub->add_option("--cross-host-gbps", opts->cross_host_gbps, "Cross-host bandwidth per device, GB/s")->group(c)
      ->check(omni::cli::number_range(1e-9, 1e9))->capture_default_str();
  sub->add_option("--latency-us", opts->latency_us, "Latency of one all-to-all phase or migration, us")
      ->group(c)->check(omni::cli::number_range(0, 1e9))->capture_default_str();
  sub->add_option("--dispatch", opts->dispatch,
                  "Replica split of each expert's tokens: shares (the plan's shares) or per-batch (the runtime's "
                  "split on each step's own loads, as DispatchMode::kPerBatch), for every policy")
      ->check(CLI::IsMember({"shares", "per-batch"}))
      ->group(c)->capture_default_str();
  sub->add_option("--allgather-us", opts->allgather_us,
                  "Per-batch dispatch: all-gather of the per-rank counts, us per layer")
      ->group(c)->check(omni::cli::number_range(0, 1e9))->capture_default_str();
  sub->add_option("--csv", opts->csv, "Write the per-step CSV here")->group("Output");
  sub->add_option("--plot", opts->plot,
                  "Write PREFIX_imbalance.png and PREFIX_step_time.png (and PREFIX_steps.csv without --csv)")
      ->group("Output");
  sub->add_flag("--json", opts->json, "Print the summary as JSON")->group("Output");
  sub->add_flag("--progress", opts->progress, "Always show the progress bar (default: on a terminal, 1000+ steps)")
      ->group("Output");
  sub->add_flag("--no-progress", opts->no_progress, "Never show the progress bar")->group("Output");
  return [opts] { return run_simulate(*opts); };
}

}  // namespace

OMNI_CLI_COMMAND(simulate, 60, setup_simulate);
