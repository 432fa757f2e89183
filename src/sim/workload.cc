#include "omniplacement/sim/workload.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include "omniplacement/core/str_cat.h"

namespace omni::sim {

const char* skew_kind_name(SkewKind k) { return k == SkewKind::kZipf ? "zipf" : "lognormal"; }

StatusOr<SkewKind> parse_skew_kind(const std::string& name) {
  if (name == "zipf") return SkewKind::kZipf;
  if (name == "lognormal") return SkewKind::kLognormal;
  return invalid_argument_error(str_cat("workload: skew '", name, "' is not one of zipf, lognormal"));
}

namespace {
Status check_rate(const char* name, double v, double max) {
  if (!(std::isfinite(v) && v >= 0 && v <= max)) {
    return invalid_argument_error(str_cat("workload: ", name, " = ", v, " must be in [0, ", max, "]"));
  }
  return ok_status();
}
}  // namespace

Status WorkloadParams::validate() const {
  OMNI_RETURN_IF_ERROR(check_matrix_shape("workload", num_layers, kMaxLayers, num_experts, kMaxExperts));
  if (top_k < 1 || top_k > num_experts) {
    return invalid_argument_error(str_cat("workload: top_k ", top_k, " must be in [1, num_experts = ", num_experts, "]"));
  }
  // tokens * top_k stays far below 2^53 so that counts are exact doubles.
  if (tokens_per_step < 1 || tokens_per_step > (int64_t{1} << 40)) {
    return invalid_argument_error(str_cat("workload: tokens_per_step ", tokens_per_step, " must be in [1, 2^40]"));
  }
  OMNI_RETURN_IF_ERROR(check_rate("skew_param", skew_param, 16));
  OMNI_RETURN_IF_ERROR(check_rate("skew_layer_spread", skew_layer_spread, 1));
  OMNI_RETURN_IF_ERROR(check_rate("drift_rate", drift_rate, 16));
  if (phase_period < 0) return invalid_argument_error(str_cat("workload: phase_period ", phase_period, " must be >= 0"));
  OMNI_RETURN_IF_ERROR(check_rate("phase_fraction", phase_fraction, 1));
  OMNI_RETURN_IF_ERROR(check_rate("burst_prob", burst_prob, 1));
  OMNI_RETURN_IF_ERROR(check_rate("burst_factor", burst_factor, 1e6));
  if (burst_steps < 1) return invalid_argument_error(str_cat("workload: burst_steps ", burst_steps, " must be >= 1"));
  if (group_size < 1 || group_size > num_experts) {
    return invalid_argument_error(str_cat("workload: group_size ", group_size, " must be in [1, ", num_experts, "]"));
  }
  OMNI_RETURN_IF_ERROR(check_rate("group_sigma", group_sigma, 4));
  return ok_status();
}

double SyntheticWorkload::uniform() {
  // 53 random bits -> [0, 1); mt19937_64's output sequence is fixed by the standard.
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

double SyntheticWorkload::normal() {
  // Box-Muller gives two independent normals per pair of uniforms; the second
  // is kept for the next call. 1 - u keeps the logarithm finite.
  if (has_spare_normal_) {
    has_spare_normal_ = false;
    return spare_normal_;
  }
  const double u1 = 1.0 - uniform();
  const double u2 = uniform();
  const double radius = std::sqrt(-2.0 * std::log(u1));
  const double angle = 2.0 * std::numbers::pi * u2;
  spare_normal_ = radius * std::sin(angle);
  has_spare_normal_ = true;
  return radius * std::cos(angle);
}

int64_t SyntheticWorkload::poisson(double mean) {
  if (mean <= 0) return 0;
  if (mean > 30) return std::max<int64_t>(0, std::llround(mean + std::sqrt(mean) * normal()));
  // Knuth: multiply uniforms until the product drops below e^-mean.
  const double limit = std::exp(-mean);
  int64_t k = 0;
  double prod = uniform();
  while (prod > limit) {
    ++k;
    prod *= uniform();
  }
  return k;
}

StatusOr<SyntheticWorkload> SyntheticWorkload::create(const WorkloadParams& params) {
  OMNI_RETURN_IF_ERROR(params.validate());
  SyntheticWorkload w;
  w.params_ = params;
  w.rng_.seed(params.seed);
  const int32_t E = params.num_experts;
  w.layers_.resize(static_cast<size_t>(params.num_layers));
  for (LayerState& st : w.layers_) {
    st.skew = params.skew_param * (1.0 + params.skew_layer_spread * (2.0 * w.uniform() - 1.0));
    st.base_weight.resize(static_cast<size_t>(E));
    if (params.skew == SkewKind::kZipf) {
      for (int32_t i = 0; i < E; ++i) st.base_weight[static_cast<size_t>(i)] = std::pow(i + 1.0, -st.skew);
    } else {
      std::vector<double> z(static_cast<size_t>(E));
      for (double& v : z) v = w.normal();
      std::sort(z.begin(), z.end(), std::greater<double>());
      for (int32_t i = 0; i < E; ++i) st.base_weight[static_cast<size_t>(i)] = std::exp(st.skew * z[static_cast<size_t>(i)]);
    }
    st.expert_at.resize(static_cast<size_t>(E));
    std::iota(st.expert_at.begin(), st.expert_at.end(), 0);
    // Fisher-Yates with our own uniform draws (std::shuffle's use of the engine is unspecified).
    auto shuffle = [&w](std::vector<int32_t>& v) {
      for (size_t i = v.size(); i > 1; --i) {
        const size_t j = static_cast<size_t>(w.uniform() * static_cast<double>(i));
        std::swap(v[i - 1], v[std::min(j, i - 1)]);
      }
    };
    shuffle(st.expert_at);
    std::vector<int32_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    shuffle(order);
    st.group_of.resize(static_cast<size_t>(E));
    for (int32_t i = 0; i < E; ++i) st.group_of[static_cast<size_t>(order[static_cast<size_t>(i)])] = i / params.group_size;
  }
  return w;
}

void SyntheticWorkload::advance() {
  const int32_t E = params_.num_experts;
  auto pick = [&] { return static_cast<size_t>(std::min<double>(uniform() * E, E - 1)); };
  for (LayerState& st : layers_) {
    // Drift: popularity swaps.
    const int64_t swaps = poisson(params_.drift_rate * E);
    for (int64_t k = 0; k < swaps; ++k) std::swap(st.expert_at[pick()], st.expert_at[pick()]);
    // Phase shift: a random subset of positions exchange their experts.
    if (params_.phase_period > 0 && step_ % params_.phase_period == 0) {
      std::vector<size_t> pos;
      for (size_t i = 0; i < static_cast<size_t>(E); ++i)
        if (uniform() < params_.phase_fraction) pos.push_back(i);
      for (size_t i = pos.size(); i > 1; --i) {
        const size_t j = std::min(static_cast<size_t>(uniform() * static_cast<double>(i)), i - 1);
        std::swap(st.expert_at[pos[i - 1]], st.expert_at[pos[j]]);
      }
    }
    // Bursts: drop the finished ones, maybe start one.
    std::erase_if(st.bursts, [&](const Burst& b) { return b.end_step <= step_; });
    if (params_.burst_prob > 0 && uniform() < params_.burst_prob) {
      st.bursts.push_back(Burst{static_cast<ExpertId>(pick()), step_ + params_.burst_steps});
    }
  }
}

void SyntheticWorkload::weights(LayerId l, std::span<const double> group_factor, std::vector<double>& w) const {
  const LayerState& st = layers_[static_cast<size_t>(l)];
  const size_t E = static_cast<size_t>(params_.num_experts);
  w.assign(E, 0.0);
  for (size_t i = 0; i < E; ++i) w[static_cast<size_t>(st.expert_at[i])] = st.base_weight[i];
  for (const Burst& b : st.bursts) w[static_cast<size_t>(b.expert)] *= params_.burst_factor;
  if (!group_factor.empty())
    for (size_t e = 0; e < E; ++e) w[e] *= group_factor[static_cast<size_t>(st.group_of[e])];
  double sum = 0;
  for (double v : w) sum += v;
  if (sum > 0)
    for (double& v : w) v /= sum;
}

std::vector<double> SyntheticWorkload::probabilities(LayerId l) const {
  OMNI_CHECK(l >= 0 && l < params_.num_layers);
  std::vector<double> w;
  weights(l, {}, w);
  return w;
}

Status SyntheticWorkload::next(LoadMatrix* out) {
  if (out == nullptr) return invalid_argument_error("workload: next() needs an output matrix");
  if (step_ > 0) advance();
  const int32_t E = params_.num_experts;
  const int32_t num_groups = (E + params_.group_size - 1) / params_.group_size;
  counts_.resize(static_cast<size_t>(params_.num_layers) * static_cast<size_t>(E));
  const double assignments = static_cast<double>(params_.tokens_per_step) * params_.top_k;
  const double cap = static_cast<double>(params_.tokens_per_step);
  for (LayerId l = 0; l < params_.num_layers; ++l) {
    group_scratch_.clear();
    if (params_.group_size > 1 && params_.group_sigma > 0) {
      const double s = params_.group_sigma;
      for (int32_t g = 0; g < num_groups; ++g) group_scratch_.push_back(std::exp(s * normal() - 0.5 * s * s));
    }
    weights(l, group_scratch_, scratch_);
    for (ExpertId e = 0; e < E; ++e) {
      const double mean = std::min(cap, assignments * scratch_[static_cast<size_t>(e)]);
      counts_[static_cast<size_t>(l) * static_cast<size_t>(E) + static_cast<size_t>(e)] =
          params_.sampling_noise ? std::min<int64_t>(poisson(mean), params_.tokens_per_step) : std::llround(mean);
    }
  }
  OMNI_ASSIGN_OR_RETURN(*out, LoadMatrix::from_counts(params_.num_layers, E, counts_));
  ++step_;
  return ok_status();
}

Status SyntheticWorkload::next_window(int64_t steps, LoadMatrix* out) {
  if (steps < 1) return invalid_argument_error(str_cat("workload: window of ", steps, " steps must be >= 1"));
  if (out == nullptr) return invalid_argument_error("workload: next_window() needs an output matrix");
  OMNI_RETURN_IF_ERROR(next(out));
  LoadMatrix one;
  for (int64_t s = 1; s < steps; ++s) {
    OMNI_RETURN_IF_ERROR(next(&one));
    OMNI_RETURN_IF_ERROR(out->add(one));
  }
  return ok_status();
}

}  // namespace omni::sim
