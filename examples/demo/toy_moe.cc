#include "demo/toy_moe.h"

#include <cstring>

#include "omniplacement/core/mix64.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

// Uniform in [-1, 1) with 24 bits of resolution (exact in float).
float unit_float(uint64_t h) { return static_cast<float>(static_cast<int64_t>(h >> 40) - (1 << 23)) / (1 << 23); }

}  // namespace

StatusOr<ToyMoE> ToyMoE::create(const ToyMoEConfig& c) {
  if (c.num_layers < 1 || c.num_layers > kMaxLayers || c.num_experts < 1 || c.num_experts > kMaxExperts ||
      c.hidden < 1 || c.hidden > 256) {
    return invalid_argument_error(str_cat("ToyMoE: need 1..", kMaxLayers, " layers, 1..", kMaxExperts,
                                          " experts and hidden in 1..256, got ", c.num_layers, ", ", c.num_experts,
                                          ", ", c.hidden));
  }
  if (int64_t{c.num_layers} * c.num_experts * (int64_t{c.hidden} * c.hidden + c.hidden) > (int64_t{1} << 28))
    return invalid_argument_error(str_cat("ToyMoE: ", c.num_layers, " layers x ", c.num_experts,
                                          " experts of hidden ", c.hidden, " exceed 2^28 weights"));
  ToyMoE m(c);
  const int64_t per = m.expert_bytes() / static_cast<int64_t>(sizeof(float));
  auto w = std::make_shared<std::vector<float>>(static_cast<size_t>(int64_t{c.num_layers} * c.num_experts * per));
  for (LayerId l = 0; l < c.num_layers; ++l)
    for (ExpertId e = 0; e < c.num_experts; ++e)
      for (int64_t i = 0; i < per; ++i)
        (*w)[static_cast<size_t>((int64_t{l} * c.num_experts + e) * per + i)] = m.weight_value(l, e, i);
  m.weights_ = std::move(w);
  return m;
}

std::span<const std::byte> ToyMoE::expert_span(LayerId l, ExpertId e) const {
  const int64_t per = expert_bytes() / static_cast<int64_t>(sizeof(float));
  const float* p = weights_->data() + (int64_t{l} * config_.num_experts + e) * per;
  return {reinterpret_cast<const std::byte*>(p), static_cast<size_t>(expert_bytes())};
}

int64_t ToyMoE::expert_bytes() const {
  const int64_t h = config_.hidden;
  return (h * h + h) * static_cast<int64_t>(sizeof(float));
}

float ToyMoE::weight_value(LayerId l, ExpertId e, int64_t i) const {
  const int64_t h = config_.hidden;
  if (i == h * h) return static_cast<float>(l) * 1000.0f + static_cast<float>(e);  // b[0]: names the expert
  const uint64_t key = mix64(config_.seed ^ mix64((static_cast<uint64_t>(l) << 32) | static_cast<uint32_t>(e)));
  return unit_float(mix64(key + static_cast<uint64_t>(i)));
}

Status ToyMoE::expert_weights(LayerId l, ExpertId e, std::span<std::byte> out) const {
  if (l < 0 || l >= config_.num_layers || e < 0 || e >= config_.num_experts)
    return out_of_range_error(str_cat("ToyMoE::expert_weights: layer ", l, ", expert ", e, " outside ",
                                      config_.num_layers, " layers x ", config_.num_experts, " experts"));
  if (static_cast<int64_t>(out.size()) != expert_bytes())
    return invalid_argument_error(str_cat("ToyMoE::expert_weights: buffer has ", out.size(), " bytes, need ",
                                          expert_bytes()));
  const auto src = expert_span(l, e);
  std::memcpy(out.data(), src.data(), src.size());
  return ok_status();
}

void ToyMoE::apply(std::span<const std::byte> weights, int32_t hidden, std::span<const float> x, float gate,
                   std::span<float> y) {
  const auto h = static_cast<size_t>(hidden);
  OMNI_CHECK(weights.size() == (h * h + h) * sizeof(float) && x.size() == h && y.size() == h);
  // memcpy per row: the slot bytes need not be float-aligned for every store.
  float row[256];
  for (size_t i = 0; i < h; ++i) {
    std::memcpy(row, weights.data() + i * h * sizeof(float), h * sizeof(float));
    float acc = 0;
    for (size_t j = 0; j < h; ++j) acc += row[j] * x[j];
    float b;
    std::memcpy(&b, weights.data() + (h * h + i) * sizeof(float), sizeof(float));
    y[i] += gate * (acc + b);
  }
}

void ToyMoE::reference(LayerId l, ExpertId e, std::span<const float> x, float gate, std::span<float> y) const {
  OMNI_CHECK(l >= 0 && l < config_.num_layers && e >= 0 && e < config_.num_experts);
  apply(expert_span(l, e), config_.hidden, x, gate, y);
}

void ToyMoE::token_input(uint64_t token_key, std::span<float> x) const {
  const uint64_t key = mix64(config_.seed * 0x2545f4914f6cdd1dULL ^ token_key);
  for (size_t i = 0; i < x.size(); ++i) x[i] = unit_float(mix64(key + i));
}

}  // namespace omni
