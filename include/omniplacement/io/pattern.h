// omni-infer placement patterns: a 0/1 tensor pattern[rank][layer][expert].
//
// pattern[r][l][e] == 1 means rank r holds a replica of expert e in layer l.
// Three containers (docs/formats.md, "omni-infer patterns"):
//   .npy  int32 or int64 array of shape [num_ranks, num_layers, num_experts]
//   .txt  a header line "R L E", then R*L*E whitespace-separated 0/1 values in C order
//   .bin  int32 little-endian R, L, E, then R*L*E int32 values in C order
//
// Conversion to a Placement keeps layer-wise uneven layers: slots_per_rank[l]
// is the largest number of replicas any rank holds in layer l; a rank's slots
// hold its experts in ascending id, then empty slots (-1) as padding. The
// reverse conversion needs at most one replica of an expert per rank (a 0/1
// tensor cannot say "twice") and forgets slot order and padding, so
// pattern -> Placement -> pattern is exact, and Placement -> pattern ->
// Placement is exact for placements already in that canonical order.
//
//   omni::StatusOr<omni::Placement> p = omni::read_pattern(
//       "data/patterns/placement_pattern_test_for_optimizer.txt");   // 20 layers, 4 ranks, 8 experts
//   p->slots_per_rank(0);                                            // 3
//   omni::Status s = omni::write_pattern("copy.bin", *p);            // same pattern, binary container
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/io/npy.h"

namespace omni {

enum class PatternFormat { kNpy, kText, kBinary };

// Container chosen by the file extension: .npy, .txt or .bin (any case).
StatusOr<PatternFormat> pattern_format_for_path(const std::string& path);

// The tensor as stored. values has num_ranks * num_layers * num_experts
// elements, element (r, l, e) at (r * num_layers + l) * num_experts + e.
struct PatternTensor {
  int32_t num_ranks = 0;
  int32_t num_layers = 0;
  int32_t num_experts = 0;
  std::vector<int64_t> values;
  // Element type of a .npy container (kept so that a file written back is
  // byte-identical); int32 for the others.
  NpyDtype npy_dtype = NpyDtype::kInt32;
  // A .txt container with "\r\n" line ends (kept for byte-identical rewrites).
  bool text_crlf = false;

  int64_t at(int32_t r, int32_t l, int32_t e) const {
    return values[(static_cast<size_t>(r) * static_cast<size_t>(num_layers) + static_cast<size_t>(l)) *
                      static_cast<size_t>(num_experts) +
                  static_cast<size_t>(e)];
  }
  friend bool operator==(const PatternTensor& a, const PatternTensor& b) = default;
};

// Parses a pattern file held in memory; `name` prefixes error messages. Checks
// sizes against the core limits and that every value is 0 or 1.
StatusOr<PatternTensor> parse_pattern(std::string_view bytes, PatternFormat format, std::string_view name = "<pattern>");
StatusOr<PatternTensor> read_pattern_tensor(const std::string& path);
// Serialises a tensor (values must be 0/1). npy files use tensor.npy_dtype.
StatusOr<std::string> encode_pattern(const PatternTensor& tensor, PatternFormat format);

// Tensor -> Placement (see the overview). Fails when a value is not 0/1 or an
// expert of a layer has no replica on any rank (the message names the layer and expert).
StatusOr<Placement> placement_from_pattern(const PatternTensor& tensor, std::string_view name = "<pattern>");
// Placement -> tensor. Fails on a same-rank duplicate (names layer, rank, expert).
StatusOr<PatternTensor> pattern_from_placement(const Placement& placement, NpyDtype npy_dtype = NpyDtype::kInt32);

// File <-> Placement, container by extension.
StatusOr<Placement> read_pattern(const std::string& path);
Status write_pattern(const std::string& path, const Placement& placement, NpyDtype npy_dtype = NpyDtype::kInt32);

}  // namespace omni
