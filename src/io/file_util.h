// Private helpers of the io module: whole-file reads and writes, extension
// checks and strict number parsing. Not installed; not part of the public API.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"

namespace omni::io_internal {

// Files larger than this are refused before any allocation (the largest real
// input, a DeepSeek-V3 pattern at EP64, is a few MB).
inline constexpr int64_t kMaxFileBytes = int64_t{1} << 30;

// The whole file as bytes. NOT_FOUND when it cannot be opened.
StatusOr<std::string> read_file(const std::string& path);
// Writes through a temporary file in the same folder and renames it, so a
// reader never sees a half-written file.
Status write_file(const std::string& path, std::string_view contents);
// Lower-case extension with the dot (".npy"), or "" when there is none.
std::string extension_of(const std::string& path);

// Strict whole-token parses (no sign for unsigned, no spaces, no trailing text).
bool parse_int64(std::string_view token, int64_t* out);
// Decimal or scientific notation, finite only.
bool parse_double(std::string_view token, double* out);
// Shortest text that reads back to exactly the same double.
std::string format_double(double v);
// Token shortened to at most 40 characters, for error messages.
std::string quote_token(std::string_view token);

}  // namespace omni::io_internal

namespace omni::io_internal {

// Lines of `text` without their '\n' (and a trailing '\r'), numbered from 1.
struct Line {
  int64_t number;
  std::string_view text;
};
std::vector<Line> split_lines(std::string_view text);
// Comma-separated fields, each with surrounding spaces trimmed (no quoting:
// none of our CSV layouts quote).
std::vector<std::string_view> split_csv(std::string_view line);
// Trims spaces and tabs.
std::string_view trim(std::string_view s);

// Collects numbers that are all integers (counts) or not (weights), then
// builds the LoadMatrix of the right kind.
class LoadCells {
 public:
  // Parses one cell; false when it is not a number.
  bool add(std::string_view token);
  size_t size() const { return ints_.size(); }
  StatusOr<LoadMatrix> build(int32_t num_layers, int32_t num_experts) const;
  // Appends the cells [first, first + n) of `other` to this collection.
  void append_from(const LoadCells& other, size_t first, size_t n);

 private:
  bool all_integers_ = true;
  std::vector<int64_t> ints_;
  std::vector<double> values_;
};

}  // namespace omni::io_internal
