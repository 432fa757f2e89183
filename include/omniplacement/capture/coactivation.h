// CoactivationCounts: how often two experts of one layer were chosen by the
// same token, counted on a sample of tokens (ActivationRecorder with
// RecorderConfig::coactivation_every > 0). A topology-aware planner puts
// experts that fire together on the same host, so that a token's top-k stays
// inside one host's all-to-all.
//
// Storage: per layer, the strict upper triangle of the [num_ids, num_ids] pair
// matrix, row-major: pair (a, b) with a < b is at
// l * pairs_per_layer() + a * (2 * num_ids - a - 1) / 2 + (b - a - 1).
//
//   omni::CoactivationCounts c = recorder->take_coactivation();
//   c.pair(3, 17, 42);        // tokens of layer 3 (sampled) that chose both 17 and 42
//   c.pair(3, 42, 17);        // the same number: pairs are unordered
//   c.sampled_tokens[3];      // how many tokens of layer 3 were sampled
//
// Thread safety: a value type; const methods may run concurrently.
#pragma once

#include <cstdint>
#include <vector>

#include "omniplacement/core/ids.h"

namespace omni {

struct CoactivationCounts {
  int32_t num_layers = 0;
  int32_t num_ids = 0;
  std::vector<int64_t> pairs;           // num_layers * pairs_per_layer() counts
  std::vector<int64_t> sampled_tokens;  // num_layers: tokens sampled per layer

  int64_t pairs_per_layer() const { return pair_count(num_ids); }
  // Count of tokens that chose both a and b in layer l (0 when a == b). Indices
  // must be in range (checked; a violation aborts, as LoadMatrix::at does).
  int64_t pair(LayerId l, int32_t a, int32_t b) const;

  // n * (n - 1) / 2.
  static int64_t pair_count(int32_t n) { return int64_t{n} * (n - 1) / 2; }
  // Position of (a, b), a < b < n, inside one layer's triangle.
  static int64_t pair_index(int32_t n, int32_t a, int32_t b) {
    return int64_t{a} * (2 * int64_t{n} - a - 1) / 2 + (b - a - 1);
  }
};

}  // namespace omni
