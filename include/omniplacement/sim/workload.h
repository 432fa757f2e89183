// SyntheticWorkload: seeded, reproducible per-step expert loads with skew,
// drift, phase shifts, bursts and co-chosen expert groups.
//
// Model (docs/simulator.md, "Synthetic workloads"): every layer ranks its
// experts by popularity (a seeded random permutation). The expert at
// popularity position i has base weight 1 / (i + 1)^s (Zipf, exponent s) or
// exp(s * z_i) with z_i the i-th largest of E standard normal draws
// (lognormal, sigma s); s differs per layer by up to +-skew_layer_spread.
// Over time:
//   drift        each step, Poisson(drift_rate * E) swaps of the popularity
//                of two uniformly chosen experts (hot experts cool down and
//                cold ones heat up at that rate);
//   phase shift  every phase_period steps, phase_fraction of the experts
//                (chosen uniformly) have their popularity positions shuffled
//                among themselves (a change of dataset or tenant);
//   bursts       with probability burst_prob per layer and step, one uniformly
//                chosen expert's weight is multiplied by burst_factor for
//                burst_steps steps;
//   groups       experts form fixed random groups of group_size; each group's
//                weights share one lognormal(sigma = group_sigma) factor per
//                step (experts that tend to be chosen together).
// Expected tokens of expert e in a step: tokens_per_step * top_k * p_e (p the
// normalised weights), capped at tokens_per_step (a token picks an expert at
// most once); the count drawn is Poisson (normal approximation above 30).
// Random numbers come from std::mt19937_64 through our own transforms, so the
// same parameters and seed give the same loads on every platform.
//
//   omni::sim::WorkloadParams p;             // DeepSeek-V3-like decode defaults
//   p.drift_rate = 0.002;
//   auto gen = omni::sim::SyntheticWorkload::create(p);
//   omni::LoadMatrix step_load;
//   (void)gen->next(&step_load);             // [58, 256] counts of step 0
//
// Thread safety: a SyntheticWorkload is used by one thread at a time.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"

namespace omni::sim {

enum class SkewKind { kZipf, kLognormal };
const char* skew_kind_name(SkewKind k);  // "zipf", "lognormal"
StatusOr<SkewKind> parse_skew_kind(const std::string& name);

struct WorkloadParams {
  int32_t num_layers = 58;
  int32_t num_experts = 256;
  int32_t top_k = 8;
  // Tokens in one decode step over the whole EP group (64 ranks x 128).
  int64_t tokens_per_step = 8192;
  SkewKind skew = SkewKind::kZipf;
  double skew_param = 0.5;          // Zipf exponent s, or lognormal sigma
  double skew_layer_spread = 0.25;  // layer l's parameter is skew_param * (1 + spread * u_l), u_l in [-1, 1]
  double drift_rate = 0.0005;       // popularity swaps per step per layer, as a fraction of num_experts
  int64_t phase_period = 0;         // steps between phase shifts; 0: none
  double phase_fraction = 0.5;      // fraction of experts reshuffled at a phase shift
  double burst_prob = 0.0;          // probability per layer and step that a burst starts
  double burst_factor = 4.0;        // weight multiplier of a bursting expert
  int64_t burst_steps = 50;         // length of a burst
  int32_t group_size = 1;           // co-chosen group size; 1: no groups
  double group_sigma = 0.0;         // lognormal sigma of a group's per-step factor
  bool sampling_noise = true;       // false: counts are the rounded expectations
  uint64_t seed = 1;

  // OK when sizes are within core's limits and every rate is finite and in range.
  Status validate() const;
};

class SyntheticWorkload {
 public:
  static StatusOr<SyntheticWorkload> create(const WorkloadParams& params);

  const WorkloadParams& params() const { return params_; }
  // Steps produced so far.
  int64_t step() const { return step_; }
  // Writes the next step's counts into *out ([num_layers, num_experts],
  // kCounts) and advances the time by one step.
  Status next(LoadMatrix* out);
  // Sum of the next `steps` steps (a window), kCounts. steps >= 1.
  Status next_window(int64_t steps, LoadMatrix* out);
  // Normalised weights p_e of layer l in the current state (that of the last
  // step produced, or the initial one), without group factors or noise,
  // [num_experts]. Requires 0 <= l < num_layers.
  std::vector<double> probabilities(LayerId l) const;

 private:
  struct Burst {
    ExpertId expert;
    int64_t end_step;  // exclusive
  };
  struct LayerState {
    double skew = 1;
    std::vector<double> base_weight;         // [E] by popularity position
    std::vector<ExpertId> expert_at;         // [E] popularity position -> expert
    std::vector<int32_t> group_of;           // [E] expert -> group
    std::vector<Burst> bursts;
  };

  void advance();  // drift, phase shift, burst ends and starts: moves the state to step_
  void weights(LayerId l, std::span<const double> group_factor, std::vector<double>& w) const;
  double uniform();
  double normal();
  int64_t poisson(double mean);

  WorkloadParams params_;
  std::mt19937_64 rng_;
  int64_t step_ = 0;
  std::vector<LayerState> layers_;
  std::vector<double> scratch_;
  std::vector<double> group_scratch_;
  std::vector<int64_t> counts_;
  double spare_normal_ = 0;
  bool has_spare_normal_ = false;
};

}  // namespace omni::sim
