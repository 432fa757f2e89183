// ToyMoE: a tiny Mixture-of-Experts model with real arithmetic, used by
// `omniplace demo` and the runtime tests to prove that serving stays correct
// while placement changes (examples/demo: not part of the installed library).
//
// Expert e of layer l is an affine map y = W x + b with W [hidden, hidden] and
// b [hidden], float32, stored as expert_bytes() bytes (W row-major, then b).
// Every expert's weights are distinct and deterministic (a hash of seed, layer,
// expert and index; b[0] also encodes layer and expert), so a token served by
// the wrong expert, or by a slot whose weights were half copied, produces an
// output that differs from reference() computed from the logical expert
// directly. apply() and reference() run the same arithmetic in the same order,
// so correct serving matches bit for bit.
//
//   auto model = omni::ToyMoE::create({/*num_layers=*/12, /*num_experts=*/60, /*hidden=*/16, /*seed=*/1});
//   std::vector<std::byte> w(model->expert_bytes());
//   model->expert_weights(3, 7, w);                       // what a slot holding expert 7 of layer 3 stores
//   std::vector<float> x(16, 0.5f), y(16, 0.f), ref(16, 0.f);
//   omni::ToyMoE::apply(w, 16, x, 0.25f, y);              // y += 0.25 * (W x + b)
//   model->reference(3, 7, x, 0.25f, ref);                // the same from the logical expert
//
// Memory: all experts' weights are generated once at create() (num_layers x
// num_experts x expert_bytes()).
//
// Thread safety: immutable after creation; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"

namespace omni {

struct ToyMoEConfig {
  int32_t num_layers = 12;
  int32_t num_experts = 60;
  int32_t hidden = 16;  // 1..256
  uint64_t seed = 1;
};

class ToyMoE {
 public:
  static StatusOr<ToyMoE> create(const ToyMoEConfig& config);

  const ToyMoEConfig& config() const { return config_; }
  int32_t hidden() const { return config_.hidden; }
  // Bytes of one expert: (hidden * hidden + hidden) * 4.
  int64_t expert_bytes() const;

  // Writes the weights of expert e of layer l into out (expert_bytes() bytes).
  Status expert_weights(LayerId l, ExpertId e, std::span<std::byte> out) const;
  // y += gate * (W x + b) with W, b read from `weights` (expert_bytes() bytes of
  // a slot); x and y have `hidden` elements. Bad sizes are a library bug here
  // (aborts): the caller checked them when it sized its buffers.
  static void apply(std::span<const std::byte> weights, int32_t hidden, std::span<const float> x, float gate,
                    std::span<float> y);
  // The same computed from the logical expert's generated weights.
  void reference(LayerId l, ExpertId e, std::span<const float> x, float gate, std::span<float> y) const;
  // Deterministic input activation of one token: hidden values in [-1, 1].
  void token_input(uint64_t token_key, std::span<float> x) const;

 private:
  explicit ToyMoE(const ToyMoEConfig& c) : config_(c) {}
  float weight_value(LayerId l, ExpertId e, int64_t i) const;
  std::span<const std::byte> expert_span(LayerId l, ExpertId e) const;
  ToyMoEConfig config_;
  // Every expert's weights, generated once: [num_layers, num_experts, expert_bytes / 4].
  std::shared_ptr<const std::vector<float>> weights_;
};

}  // namespace omni
