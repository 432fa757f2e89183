#include "omniplacement/core/load_matrix.h"

#include <cmath>

#include "omniplacement/core/str_cat.h"

namespace omni {

Status check_matrix_shape(const char* what, int64_t rows, int64_t max_rows, int64_t cols, int64_t max_cols) {
  if (rows < 1 || rows > max_rows) {
    return invalid_argument_error(str_cat(what, ": number of layers must be in [1, ", max_rows, "], got ", rows));
  }
  if (cols < 1 || cols > max_cols) {
    return invalid_argument_error(str_cat(what, ": number of experts must be in [1, ", max_cols, "], got ", cols));
  }
  if (rows * cols > kMaxMatrixElements) {
    return invalid_argument_error(str_cat(what, ": ", rows, " x ", cols, " exceeds ", kMaxMatrixElements, " elements"));
  }
  return ok_status();
}

namespace {

constexpr double kMaxLayerLoadDouble = static_cast<double>(kMaxLayerLoad);

Status layer_total_error(size_t layer, double total, const char* what) {
  return out_of_range_error(str_cat("load matrix: layer ", layer, ": ", what, " sum to ", total,
                                    ", above the largest total load of one layer, kMaxLayerLoad = 2^53 = ",
                                    kMaxLayerLoad, " (scale the loads down, e.g. to tokens per step)"));
}

// Every layer's int64 counts sum to at most kMaxLayerLoad (no overflow on the way).
Status check_count_totals(std::span<const int64_t> counts, size_t num_experts, const char* what) {
  for (size_t b = 0; b < counts.size(); b += num_experts) {
    int64_t sum = 0;
    for (size_t i = b; i < b + num_experts; ++i) {
      if (counts[i] > kMaxLayerLoad - sum) {
        // The exact sum may not fit int64: report it as a double.
        double total = 0;
        for (size_t k = b; k < b + num_experts; ++k) total += static_cast<double>(counts[k]);
        return layer_total_error(b / num_experts, total, what);
      }
      sum += counts[i];
    }
  }
  return ok_status();
}

// Every layer's weights sum to at most kMaxLayerLoad (finite).
Status check_weight_totals(std::span<const double> values, size_t num_experts, const char* what) {
  for (size_t b = 0; b < values.size(); b += num_experts) {
    double sum = 0;
    for (size_t i = b; i < b + num_experts; ++i) sum += values[i];
    if (!(sum <= kMaxLayerLoadDouble)) return layer_total_error(b / num_experts, sum, what);
  }
  return ok_status();
}

}  // namespace

StatusOr<LoadMatrix> LoadMatrix::zeros(int32_t num_layers, int32_t num_experts, Kind kind) {
  OMNI_RETURN_IF_ERROR(check_matrix_shape("load matrix", num_layers, kMaxLayers, num_experts, kMaxExperts));
  LoadMatrix m;
  m.num_layers_ = num_layers;
  m.num_experts_ = num_experts;
  m.kind_ = kind;
  const auto n = static_cast<size_t>(num_layers) * static_cast<size_t>(num_experts);
  m.values_.assign(n, 0.0);
  if (kind == Kind::kCounts) m.counts_.assign(n, 0);
  return m;
}

StatusOr<LoadMatrix> LoadMatrix::from_counts(int32_t num_layers, int32_t num_experts, std::vector<int64_t> counts) {
  OMNI_RETURN_IF_ERROR(check_matrix_shape("load matrix", num_layers, kMaxLayers, num_experts, kMaxExperts));
  const auto n = static_cast<size_t>(num_layers) * static_cast<size_t>(num_experts);
  if (counts.size() != n) {
    return invalid_argument_error(str_cat("load matrix: expected ", num_layers, " x ", num_experts, " = ", n,
                                          " counts, got ", counts.size()));
  }
  for (size_t i = 0; i < n; ++i) {
    if (counts[i] < 0) {
      return invalid_argument_error(str_cat("load matrix: negative count ", counts[i], " at layer ",
                                            i / static_cast<size_t>(num_experts), ", expert ",
                                            i % static_cast<size_t>(num_experts)));
    }
  }
  OMNI_RETURN_IF_ERROR(check_count_totals(counts, static_cast<size_t>(num_experts), "the counts"));
  LoadMatrix m;
  m.num_layers_ = num_layers;
  m.num_experts_ = num_experts;
  m.kind_ = Kind::kCounts;
  m.values_.resize(n);
  for (size_t i = 0; i < n; ++i) m.values_[i] = static_cast<double>(counts[i]);
  m.counts_ = std::move(counts);
  return m;
}

StatusOr<LoadMatrix> LoadMatrix::from_weights(int32_t num_layers, int32_t num_experts, std::vector<double> values) {
  OMNI_RETURN_IF_ERROR(check_matrix_shape("load matrix", num_layers, kMaxLayers, num_experts, kMaxExperts));
  const auto n = static_cast<size_t>(num_layers) * static_cast<size_t>(num_experts);
  if (values.size() != n) {
    return invalid_argument_error(str_cat("load matrix: expected ", num_layers, " x ", num_experts, " = ", n,
                                          " values, got ", values.size()));
  }
  for (size_t i = 0; i < n; ++i) {
    if (!(std::isfinite(values[i]) && values[i] >= 0)) {
      return invalid_argument_error(str_cat("load matrix: load must be finite and >= 0, got ", values[i],
                                            " at layer ", i / static_cast<size_t>(num_experts), ", expert ",
                                            i % static_cast<size_t>(num_experts)));
    }
  }
  OMNI_RETURN_IF_ERROR(check_weight_totals(values, static_cast<size_t>(num_experts), "the weights"));
  LoadMatrix m;
  m.num_layers_ = num_layers;
  m.num_experts_ = num_experts;
  m.kind_ = Kind::kWeights;
  m.values_ = std::move(values);
  return m;
}

double LoadMatrix::at(LayerId l, ExpertId e) const {
  OMNI_CHECK_MSG(l >= 0 && l < num_layers_ && e >= 0 && e < num_experts_,
                 str_cat("load matrix index (", l, ", ", e, ") out of [", num_layers_, ", ", num_experts_, ")"));
  return values_[static_cast<size_t>(l) * static_cast<size_t>(num_experts_) + static_cast<size_t>(e)];
}

std::span<const double> LoadMatrix::row(LayerId l) const {
  OMNI_CHECK_MSG(l >= 0 && l < num_layers_, str_cat("load matrix layer ", l, " out of [0, ", num_layers_, ")"));
  return std::span<const double>(values_).subspan(static_cast<size_t>(l) * static_cast<size_t>(num_experts_),
                                                  static_cast<size_t>(num_experts_));
}

std::span<const int64_t> LoadMatrix::counts_row(LayerId l) const {
  OMNI_CHECK_MSG(l >= 0 && l < num_layers_, str_cat("load matrix layer ", l, " out of [0, ", num_layers_, ")"));
  if (kind_ != Kind::kCounts) return {};
  return std::span<const int64_t>(counts_).subspan(static_cast<size_t>(l) * static_cast<size_t>(num_experts_),
                                                   static_cast<size_t>(num_experts_));
}

double LoadMatrix::layer_total(LayerId l) const {
  double s = 0;
  for (double v : row(l)) s += v;
  return s;
}

Status LoadMatrix::set_count(LayerId l, ExpertId e, int64_t count) {
  if (l < 0 || l >= num_layers_ || e < 0 || e >= num_experts_) {
    return out_of_range_error(str_cat("load matrix: (layer ", l, ", expert ", e, ") out of [", num_layers_, ", ",
                                      num_experts_, ")"));
  }
  if (count < 0) {
    return invalid_argument_error(str_cat("load matrix: negative count ", count, " at layer ", l, ", expert ", e));
  }
  const size_t i = static_cast<size_t>(l) * static_cast<size_t>(num_experts_) + static_cast<size_t>(e);
  const size_t b = static_cast<size_t>(l) * static_cast<size_t>(num_experts_);
  if (kind_ == Kind::kCounts) {
    const int64_t old = counts_[i];
    counts_[i] = count;
    Status s = check_count_totals(std::span<const int64_t>(counts_).subspan(b, static_cast<size_t>(num_experts_)),
                                  static_cast<size_t>(num_experts_), "the counts");
    if (!s.ok()) {
      counts_[i] = old;
      return out_of_range_error(str_cat(s.message(), "; set_count(layer ", l, ", expert ", e, ") refused"));
    }
  } else {
    const double old = values_[i];
    values_[i] = static_cast<double>(count);
    Status s = check_weight_totals(std::span<const double>(values_).subspan(b, static_cast<size_t>(num_experts_)),
                                   static_cast<size_t>(num_experts_), "the weights");
    values_[i] = old;
    if (!s.ok()) return out_of_range_error(str_cat(s.message(), "; set_count(layer ", l, ", expert ", e, ") refused"));
  }
  values_[i] = static_cast<double>(count);
  return ok_status();
}

Status LoadMatrix::set_weight(LayerId l, ExpertId e, double value) {
  if (l < 0 || l >= num_layers_ || e < 0 || e >= num_experts_) {
    return out_of_range_error(str_cat("load matrix: (layer ", l, ", expert ", e, ") out of [", num_layers_, ", ",
                                      num_experts_, ")"));
  }
  if (!(std::isfinite(value) && value >= 0)) {
    return invalid_argument_error(str_cat("load matrix: load must be finite and >= 0, got ", value, " at layer ", l,
                                          ", expert ", e));
  }
  const size_t b = static_cast<size_t>(l) * static_cast<size_t>(num_experts_);
  const size_t i = b + static_cast<size_t>(e);
  const double old = values_[i];
  values_[i] = value;
  Status s = check_weight_totals(std::span<const double>(values_).subspan(b, static_cast<size_t>(num_experts_)),
                                 static_cast<size_t>(num_experts_), "the weights");
  if (!s.ok()) {
    values_[i] = old;
    return out_of_range_error(str_cat(s.message(), "; set_weight(layer ", l, ", expert ", e, ") refused"));
  }
  kind_ = Kind::kWeights;
  counts_.clear();
  return ok_status();
}

Status LoadMatrix::add(const LoadMatrix& other) {
  if (other.num_layers_ != num_layers_ || other.num_experts_ != num_experts_) {
    return invalid_argument_error(str_cat("load matrix: cannot add a ", other.num_layers_, " x ", other.num_experts_,
                                          " matrix to a ", num_layers_, " x ", num_experts_, " matrix"));
  }
  if (kind_ == Kind::kCounts && other.kind_ == Kind::kCounts) {
    std::vector<int64_t> sum(counts_.size());
    for (size_t i = 0; i < counts_.size(); ++i) {
      if (__builtin_add_overflow(counts_[i], other.counts_[i], &sum[i])) {
        return out_of_range_error(str_cat("load matrix: int64 overflow adding counts at layer ",
                                          i / static_cast<size_t>(num_experts_), ", expert ",
                                          i % static_cast<size_t>(num_experts_)));
      }
    }
    OMNI_RETURN_IF_ERROR(check_count_totals(sum, static_cast<size_t>(num_experts_), "the added counts"));
    counts_ = std::move(sum);
    for (size_t i = 0; i < counts_.size(); ++i) values_[i] = static_cast<double>(counts_[i]);
    return ok_status();
  }
  std::vector<double> sum(values_.size());
  for (size_t i = 0; i < values_.size(); ++i) sum[i] = values_[i] + other.values_[i];
  OMNI_RETURN_IF_ERROR(check_weight_totals(sum, static_cast<size_t>(num_experts_), "the added loads"));
  kind_ = Kind::kWeights;
  counts_.clear();
  values_ = std::move(sum);
  return ok_status();
}

Status LoadMatrix::scale(double factor) {
  if (!(std::isfinite(factor) && factor >= 0)) {
    return invalid_argument_error(str_cat("load matrix: scale factor must be finite and >= 0, got ", factor));
  }
  std::vector<double> scaled(values_.size());
  for (size_t i = 0; i < values_.size(); ++i) scaled[i] = values_[i] * factor;
  OMNI_RETURN_IF_ERROR(check_weight_totals(scaled, static_cast<size_t>(num_experts_), "the scaled loads"));
  kind_ = Kind::kWeights;
  counts_.clear();
  values_ = std::move(scaled);
  return ok_status();
}

StatusOr<LoadMatrix> LoadMatrix::layers(LayerId first, int32_t count) const {
  if (first < 0 || count < 1 || static_cast<int64_t>(first) + count > num_layers_) {
    return out_of_range_error(str_cat("load matrix: layers [", first, ", ", static_cast<int64_t>(first) + count,
                                      ") not within [0, ", num_layers_, ")"));
  }
  LoadMatrix m;
  m.num_layers_ = count;
  m.num_experts_ = num_experts_;
  m.kind_ = kind_;
  const auto b = static_cast<size_t>(first) * static_cast<size_t>(num_experts_);
  const auto n = static_cast<size_t>(count) * static_cast<size_t>(num_experts_);
  m.values_.assign(values_.begin() + static_cast<std::ptrdiff_t>(b), values_.begin() + static_cast<std::ptrdiff_t>(b + n));
  if (kind_ == Kind::kCounts)
    m.counts_.assign(counts_.begin() + static_cast<std::ptrdiff_t>(b), counts_.begin() + static_cast<std::ptrdiff_t>(b + n));
  return m;
}

bool operator==(const LoadMatrix& a, const LoadMatrix& b) {
  return a.num_layers_ == b.num_layers_ && a.num_experts_ == b.num_experts_ && a.kind_ == b.kind_ &&
         a.values_ == b.values_ && a.counts_ == b.counts_;
}

}  // namespace omni
