// LoadMatrix: tokens routed to each expert of each layer in a window.
//
// Shape [num_layers, num_experts], row-major: element (l, e) is at
// l * num_experts + e. Two kinds:
//   - kCounts:  exact int64 token counts (what the recorder produces); sums of
//               counts are exact and overflow is reported, never wrapped.
//   - kWeights: non-negative doubles (EMA, gate-weighted or rescaled loads).
// Both kinds expose the values as doubles (row(l)), which is what planners and
// metrics read; kCounts also exposes the exact integers (counts_row(l)).
//
// Every layer's total load is at most kMaxLayerLoad (2^53 tokens): constructors
// and every operation that changes values refuse (OUT_OF_RANGE, the matrix left
// unchanged) anything that would go above it, so that a layer's counts sum
// exactly in int64 and in double, and no metric built from loads (sums over
// layers, ranks, windows; products with bytes per token) overflows to inf/NaN.
//
//   auto m = omni::LoadMatrix::from_counts(2, 4, {5, 0, 3, 1,  2, 2, 2, 2});
//   m->row(0)[2];        // 3.0
//   m->counts_row(1)[0]; // 2
//
// Thread safety: a value type; const methods may run concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"

namespace omni {

// Largest total load of one layer, counts or weights: 2^53 = 9007199254740992.
inline constexpr int64_t kMaxLayerLoad = int64_t{1} << 53;

class LoadMatrix {
 public:
  enum class Kind { kCounts, kWeights };

  LoadMatrix() = default;  // 0 x 0 counts

  // All-zero matrix. Sizes: 0 < num_layers <= kMaxLayers, 0 < num_experts <= kMaxExperts.
  static StatusOr<LoadMatrix> zeros(int32_t num_layers, int32_t num_experts, Kind kind = Kind::kCounts);
  // counts has num_layers * num_experts elements, each >= 0, each layer's sum <= kMaxLayerLoad.
  static StatusOr<LoadMatrix> from_counts(int32_t num_layers, int32_t num_experts, std::vector<int64_t> counts);
  // values has num_layers * num_experts elements, each finite and >= 0, each layer's sum <= kMaxLayerLoad.
  static StatusOr<LoadMatrix> from_weights(int32_t num_layers, int32_t num_experts, std::vector<double> values);

  int32_t num_layers() const { return num_layers_; }
  int32_t num_experts() const { return num_experts_; }
  Kind kind() const { return kind_; }
  bool is_counts() const { return kind_ == Kind::kCounts; }

  // Bounds are checked (abort on a library bug); validate user indices first.
  double at(LayerId l, ExpertId e) const;
  // Load of every expert of layer l, length num_experts.
  std::span<const double> row(LayerId l) const;
  // Exact counts of layer l; empty for kWeights.
  std::span<const int64_t> counts_row(LayerId l) const;
  std::span<const double> values() const { return values_; }
  std::span<const int64_t> counts() const { return counts_; }

  // Sum of layer l's loads (as double; exact for counts, which sum to at most 2^53).
  double layer_total(LayerId l) const;

  // Setters; out-of-range indices and negative or non-finite values are errors,
  // and so is a value that takes the layer's total above kMaxLayerLoad (O(num_experts)).
  // set_count on a kWeights matrix stores the value as a weight.
  Status set_count(LayerId l, ExpertId e, int64_t count);
  Status set_weight(LayerId l, ExpertId e, double value);  // turns a kCounts matrix into kWeights
  // Element-wise sum. Same shape required. counts + counts stays exact;
  // anything else gives kWeights. A layer total above kMaxLayerLoad is an
  // OUT_OF_RANGE error and leaves *this unchanged.
  Status add(const LoadMatrix& other);
  // Multiplies every value by factor (finite, >= 0); the result is kWeights.
  // A layer total above kMaxLayerLoad is an OUT_OF_RANGE error and leaves *this unchanged.
  Status scale(double factor);
  // Layers [first, first + count) as a new matrix.
  StatusOr<LoadMatrix> layers(LayerId first, int32_t count) const;

  friend bool operator==(const LoadMatrix& a, const LoadMatrix& b);

 private:
  int32_t num_layers_ = 0;
  int32_t num_experts_ = 0;
  Kind kind_ = Kind::kCounts;
  std::vector<double> values_;   // always filled
  std::vector<int64_t> counts_;  // filled for kCounts only
};

// Checks 0 < rows <= max_rows, 0 < cols <= max_cols and rows * cols <= kMaxMatrixElements.
Status check_matrix_shape(const char* what, int64_t rows, int64_t max_rows, int64_t cols, int64_t max_cols);

}  // namespace omni
