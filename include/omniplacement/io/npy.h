// NumPy .npy files: read and write dense arrays (format versions 1.0, 2.0, 3.0).
//
// Supported element types: int32, int64, float32, float64, little-endian
// ('<i4', '<i8', '<f4', '<f8'), C (row-major) order. Everything else is refused
// with a message that says what was found and how to convert it in numpy:
// Fortran order, big-endian, object or other dtypes, truncated data, trailing
// bytes, and absurd shapes (more than kMaxNpyDims dimensions or
// kMaxNpyElements elements, or a product that would overflow).
//
//   omni::NpyArray a;
//   a.dtype = omni::NpyDtype::kInt32;
//   a.shape = {2, 3};
//   a.ints = {0, 1, 2, 3, 4, 5};
//   omni::Status s = omni::write_npy("x.npy", a);       // np.load("x.npy") gives [[0 1 2] [3 4 5]]
//   omni::StatusOr<omni::NpyArray> b = omni::read_npy("x.npy");
//   b->shape;   // {2, 3}
//
// Headers are written exactly as numpy 1.24 writes them ({'descr', 'fortran_order',
// 'shape'} in that order, space padding to a 64-byte boundary), so a file read
// and written back unchanged is byte-identical.
//
// Thread safety: pure functions; distinct arrays may be used from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "omniplacement/core/status.h"

namespace omni {

enum class NpyDtype { kInt32, kInt64, kFloat32, kFloat64 };

// "<i4", "<i8", "<f4", "<f8".
const char* npy_descr(NpyDtype dtype);
// Bytes per element: 4 or 8.
int npy_item_size(NpyDtype dtype);
inline bool npy_is_integer(NpyDtype dtype) { return dtype == NpyDtype::kInt32 || dtype == NpyDtype::kInt64; }

inline constexpr int kMaxNpyDims = 8;
inline constexpr int64_t kMaxNpyElements = int64_t{1} << 28;

// A dense array in C order. Integer dtypes keep their elements in `ints`,
// float dtypes in `floats` (float32 values widened exactly to double); the
// other vector is empty. Element (i, j, k) of shape (a, b, c) is at (i*b + j)*c + k.
struct NpyArray {
  NpyDtype dtype = NpyDtype::kFloat64;
  std::vector<int64_t> shape;   // empty: a 0-d scalar (one element)
  std::vector<int64_t> ints;    // integer dtypes
  std::vector<double> floats;   // float dtypes

  // Product of shape (1 for a scalar).
  int64_t num_elements() const;
  bool is_integer() const { return npy_is_integer(dtype); }
  // Element i as a double, whatever the dtype.
  double as_double(size_t i) const { return is_integer() ? static_cast<double>(ints[i]) : floats[i]; }
  // "int32 [32, 58, 256]".
  std::string describe() const;

  friend bool operator==(const NpyArray& a, const NpyArray& b) = default;
};

// Parses a complete .npy file held in memory. `name` (a path) prefixes every
// error message. Errors: INVALID_ARGUMENT for malformed or unsupported headers,
// DATA_LOSS for truncated data, RESOURCE_EXHAUSTED for absurd shapes.
StatusOr<NpyArray> parse_npy(std::string_view bytes, std::string_view name = "<npy>");
StatusOr<NpyArray> read_npy(const std::string& path);

// Serialises `array`. version: 1, 2 or 3 (format major version), or 0 to pick
// 1.0 unless the header needs more than 65535 bytes. Checks that the element
// vector matches the dtype and shape and that int32 values fit; float32
// stores each double rounded to the nearest float.
StatusOr<std::string> encode_npy(const NpyArray& array, int version = 0);
Status write_npy(const std::string& path, const NpyArray& array, int version = 0);

}  // namespace omni
