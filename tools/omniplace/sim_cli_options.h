// Options shared by `omniplace simulate` and `omniplace gen-trace`: the
// synthetic workload's parameters (docs/simulator.md, "Synthetic workloads").
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "omniplace/arg_checks.h"
#include "omniplacement/core/ids.h"
#include "omniplacement/sim/workload.h"

namespace omni::cli {

struct WorkloadCliOptions {
  sim::WorkloadParams params;
  std::string skew = "zipf";
  bool no_noise = false;

  // Adds --layers, --experts, --top-k, --tokens, --skew, ... to `app`, under `group`.
  void add_to(CLI::App* app, const std::string& group) {
    auto& p = params;
    // Ranges as WorkloadParams::validate() states them; checked here too so that the message names the option.
    app->add_option("--layers", p.num_layers, "MoE layers")
        ->check(int_range(1, kMaxLayers))->group(group)->capture_default_str();
    app->add_option("--experts", p.num_experts, "Experts per layer")
        ->check(int_range(1, kMaxExperts))->group(group)->capture_default_str();
    app->add_option("--top-k", p.top_k, "Experts per token (at most --experts)")
        ->check(int_range(1, kMaxExperts))->group(group)->capture_default_str();
    app->add_option("--tokens", p.tokens_per_step, "Tokens per step over the EP group")
        ->check(int_range(1, int64_t{1} << 40))->group(group)->capture_default_str();
    app->add_option("--skew", skew, "zipf or lognormal")
        ->check(CLI::IsMember({"zipf", "lognormal"}))->group(group)->capture_default_str();
    app->add_option("--skew-param", p.skew_param, "Zipf exponent or lognormal sigma")
        ->check(number_range(0, 16))->group(group)->capture_default_str();
    app->add_option("--skew-layer-spread", p.skew_layer_spread, "Per-layer spread of the skew parameter")
        ->check(number_range(0, 1))->group(group)->capture_default_str();
    app->add_option("--drift", p.drift_rate, "Popularity swaps per step per layer, as a fraction of experts")
        ->check(number_range(0, 16))->group(group)->capture_default_str();
    app->add_option("--phase-period", p.phase_period, "Steps between phase shifts (0: none)")
        ->check(int_range(0, kMaxCliSteps))->group(group)->capture_default_str();
    app->add_option("--phase-fraction", p.phase_fraction, "Fraction of experts reshuffled at a phase shift")
        ->check(number_range(0, 1))->group(group)->capture_default_str();
    app->add_option("--burst-prob", p.burst_prob, "Probability per layer and step that a burst starts")
        ->check(number_range(0, 1))->group(group)->capture_default_str();
    app->add_option("--burst-factor", p.burst_factor, "Weight multiplier of a bursting expert")
        ->check(number_range(0, 1e6))->group(group)->capture_default_str();
    app->add_option("--burst-steps", p.burst_steps, "Length of a burst in steps")
        ->check(int_range(1, kMaxCliSteps))->group(group)->capture_default_str();
    app->add_option("--group-size", p.group_size, "Size of co-chosen expert groups (1: none; at most --experts)")
        ->check(int_range(1, kMaxExperts))->group(group)->capture_default_str();
    app->add_option("--group-sigma", p.group_sigma, "Lognormal sigma of a group's per-step factor")
        ->check(number_range(0, 4))->group(group)->capture_default_str();
    app->add_flag("--no-noise", no_noise, "Counts are the rounded expectations (no Poisson noise)")->group(group);
    app->add_option("--seed", p.seed, "Random seed")->group(group)->capture_default_str();
  }

  // The parameters after parsing (skew name resolved).
  StatusOr<sim::WorkloadParams> resolve() const {
    sim::WorkloadParams p = params;
    OMNI_ASSIGN_OR_RETURN(p.skew, sim::parse_skew_kind(skew));
    p.sampling_noise = !no_noise;
    OMNI_RETURN_IF_ERROR(p.validate());
    return p;
  }
};

}  // namespace omni::cli
