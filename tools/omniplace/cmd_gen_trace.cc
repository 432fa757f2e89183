// omniplace gen-trace: write a seeded synthetic workload as a directory of
// per-window load files (docs/simulator.md, "Synthetic workloads").
#include "omniplace/arg_checks.h"
#include "omniplace/command.h"
#include "omniplace/json_out.h"
#include "omniplace/sim_cli_options.h"
#include "omniplacement/sim/trace_files.h"

namespace {

struct GenTraceOptions {
  omni::cli::WorkloadCliOptions workload;
  std::string out;
  int64_t windows = 100;
  int64_t window_steps = 100;
  std::string format = "npy";
  bool json = false;
};

int run_gen_trace(const GenTraceOptions& o) {
  auto params = o.workload.resolve();
  if (!params.ok()) return omni::cli::fail("gen-trace", params.status());
  auto paths = omni::sim::write_synthetic_trace(*params, o.windows, o.window_steps, o.out, o.format);
  if (!paths.ok()) return omni::cli::fail("gen-trace", paths.status());
  const std::string replay =
      "omniplace simulate --trace " + o.out + " --window-steps " + std::to_string(o.window_steps);
  if (o.json) {
    omni::cli::print_json({{"out", o.out},
                           {"format", o.format},
                           {"windows", paths->size()},
                           {"window_steps", o.window_steps},
                           {"num_layers", params->num_layers},
                           {"num_experts", params->num_experts},
                           {"seed", params->seed},
                           {"files", *paths},
                           {"replay", replay}});
    return omni::cli::kExitOk;
  }
  std::cout << "wrote " << paths->size() << " windows of " << o.window_steps << " steps (" << params->num_layers
            << " layers x " << params->num_experts << " experts, seed " << params->seed << ") to " << o.out << "\n"
            << "replay: " << replay << "\n";
  return omni::cli::kExitOk;
}

omni::cli::RunFn setup_gen_trace(CLI::App& app) {
  auto opts = std::make_shared<GenTraceOptions>();
  auto* sub = app.add_subcommand("gen-trace", "Write a seeded synthetic expert-load trace (skew, drift, phases, bursts, groups)");
  sub->footer(
      "Writes OUT/window_000000.npy, ... : each [layers, experts] int64, the tokens of --window-steps steps.\n"
      "The same options and --seed give the same files.\n"
      "Example:\n"
      "  omniplace gen-trace --out trace_dir --windows 100 --window-steps 100 --drift 0.0002 --phase-period 2500");
  sub->add_option("--out", opts->out, "Output directory (created; must hold no window files)")->required();
  sub->add_option("--windows", opts->windows, "Number of windows")
      ->check(omni::cli::int_range(1, 1'000'000))
      ->capture_default_str();
  sub->add_option("--window-steps", opts->window_steps, "Steps summed into each window")
      ->check(omni::cli::int_range(1, omni::cli::kMaxCliSteps))
      ->capture_default_str();
  sub->add_option("--format", opts->format, "npy or csv")->check(CLI::IsMember({"npy", "csv"}))->capture_default_str();
  sub->add_flag("--json", opts->json, "Print one JSON object (sizes, seed, the files written, the replay command)");
  opts->workload.add_to(sub, "Synthetic workload");
  return [opts] { return run_gen_trace(*opts); };
}

}  // namespace

// Registered by hand: the command name has a dash.
static const omni::cli::CommandRegistrar omni_cli_registrar_gen_trace({"gen-trace", 61, setup_gen_trace});
