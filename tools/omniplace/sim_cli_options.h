// Options shared by `omniplace simulate` and `omniplace gen-trace`: the
// synthetic workload's parameters (docs/simulator.md, "Synthetic workloads").
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "omniplacement/sim/workload.h"

namespace omni::cli {

struct WorkloadCliOptions {
  sim::WorkloadParams params;
  std::string skew = "zipf";
  bool no_noise = false;

  // Adds --layers, --experts, --top-k, --tokens, --skew, ... to `app`, under `group`.
  void add_to(CLI::App* app, const std::string& group) {
    auto& p = params;
    app->add_option("--layers", p.num_layers, "MoE layers")->group(group)->capture_default_str();
    app->add_option("--experts", p.num_experts, "Experts per layer")->group(group)->capture_default_str();
    app->add_option("--top-k", p.top_k, "Experts per token")->group(group)->capture_default_str();
    app->add_option("--tokens", p.tokens_per_step, "Tokens per step over the EP group")->group(group)->capture_default_str();
    app->add_option("--skew", skew, "zipf or lognormal")->group(group)->capture_default_str();
    app->add_option("--skew-param", p.skew_param, "Zipf exponent or lognormal sigma")->group(group)->capture_default_str();
    app->add_option("--skew-layer-spread", p.skew_layer_spread, "Per-layer spread of the skew parameter")
        ->group(group)->capture_default_str();
    app->add_option("--drift", p.drift_rate, "Popularity swaps per step per layer, as a fraction of experts")
        ->group(group)->capture_default_str();
    app->add_option("--phase-period", p.phase_period, "Steps between phase shifts (0: none)")->group(group)->capture_default_str();
    app->add_option("--phase-fraction", p.phase_fraction, "Fraction of experts reshuffled at a phase shift")
        ->group(group)->capture_default_str();
    app->add_option("--burst-prob", p.burst_prob, "Probability per layer and step that a burst starts")
        ->group(group)->capture_default_str();
    app->add_option("--burst-factor", p.burst_factor, "Weight multiplier of a bursting expert")->group(group)->capture_default_str();
    app->add_option("--burst-steps", p.burst_steps, "Length of a burst in steps")->group(group)->capture_default_str();
    app->add_option("--group-size", p.group_size, "Size of co-chosen expert groups (1: none)")->group(group)->capture_default_str();
    app->add_option("--group-sigma", p.group_sigma, "Lognormal sigma of a group's per-step factor")->group(group)->capture_default_str();
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
