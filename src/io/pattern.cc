#include "omniplacement/io/pattern.h"

#include <algorithm>

#include "file_util.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

// Checks R, L, E and their product; `name` prefixes the message.
Status check_pattern_shape(std::string_view name, int64_t R, int64_t L, int64_t E) {
  if (R < 1 || R > kMaxRanks || L < 1 || L > kMaxLayers || E < 1 || E > kMaxExperts) {
    return invalid_argument_error(str_cat(name, ": pattern shape [", R, ", ", L, ", ", E,
                                          "] out of range (ranks 1..", kMaxRanks, ", layers 1..", kMaxLayers,
                                          ", experts 1..", kMaxExperts, ")"));
  }
  if (R * L * E > kMaxNpyElements) {
    return resource_exhausted_error(str_cat(name, ": pattern shape [", R, ", ", L, ", ", E, "] has more than ",
                                            kMaxNpyElements, " elements"));
  }
  return ok_status();
}

Status check_binary_values(std::string_view name, const PatternTensor& t) {
  for (size_t i = 0; i < t.values.size(); ++i) {
    const int64_t v = t.values[i];
    if (v != 0 && v != 1) {
      const auto E = static_cast<size_t>(t.num_experts);
      const auto L = static_cast<size_t>(t.num_layers);
      return invalid_argument_error(str_cat(name, ": pattern value ", v, " at [rank ", i / E / L, ", layer ",
                                            (i / E) % L, ", expert ", i % E, "] is not 0 or 1"));
    }
  }
  return ok_status();
}

StatusOr<PatternTensor> parse_text(std::string_view s, std::string_view name) {
  size_t pos = 0;
  int64_t line = 1;
  // Next whitespace-separated token, or an empty view at the end.
  auto next = [&]() -> std::string_view {
    while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r')) {
      if (s[pos] == '\n') ++line;
      ++pos;
    }
    const size_t start = pos;
    while (pos < s.size() && !(s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r')) ++pos;
    return s.substr(start, pos - start);
  };
  int64_t dims[3];
  const char* dim_names[3] = {"ranks", "layers", "experts"};
  for (int i = 0; i < 3; ++i) {
    const std::string_view tok = next();
    if (tok.empty() || !io_internal::parse_int64(tok, &dims[i])) {
      return invalid_argument_error(str_cat(name, ":", line, ": the header must be 'R L E'; number of ",
                                            dim_names[i], " is ", tok.empty() ? "missing" : io_internal::quote_token(tok)));
    }
  }
  OMNI_RETURN_IF_ERROR(check_pattern_shape(name, dims[0], dims[1], dims[2]));
  PatternTensor t;
  t.num_ranks = static_cast<int32_t>(dims[0]);
  t.num_layers = static_cast<int32_t>(dims[1]);
  t.num_experts = static_cast<int32_t>(dims[2]);
  if (pos < s.size() && s[pos] == '\r') t.text_crlf = true;
  const auto n = static_cast<size_t>(dims[0] * dims[1] * dims[2]);
  // Each value takes at least two bytes ("0 "): never reserve more than the text can hold.
  t.values.reserve(std::min(n, s.size() / 2 + 1));
  for (size_t i = 0; i < n; ++i) {
    const std::string_view tok = next();
    if (tok.empty()) {
      return data_loss_error(str_cat(name, ": truncated pattern: header says ", n, " values, the file has ", i));
    }
    if (tok != "0" && tok != "1") {
      const auto E = static_cast<size_t>(t.num_experts);
      const auto L = static_cast<size_t>(t.num_layers);
      return invalid_argument_error(str_cat(name, ":", line, ": pattern value ", io_internal::quote_token(tok),
                                            " at [rank ", i / E / L, ", layer ", (i / E) % L, ", expert ", i % E,
                                            "] is not 0 or 1"));
    }
    t.values.push_back(tok[0] - '0');
  }
  if (!next().empty()) {
    return invalid_argument_error(str_cat(name, ":", line, ": unexpected text after the ", n, " pattern values"));
  }
  return t;
}

uint32_t le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

StatusOr<PatternTensor> parse_binary(std::string_view s, std::string_view name) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  if (s.size() < 12) return data_loss_error(str_cat(name, ": truncated pattern: ", s.size(), " bytes, the header alone is 12"));
  const int64_t R = static_cast<int32_t>(le32(p));
  const int64_t L = static_cast<int32_t>(le32(p + 4));
  const int64_t E = static_cast<int32_t>(le32(p + 8));
  OMNI_RETURN_IF_ERROR(check_pattern_shape(name, R, L, E));
  const auto n = static_cast<size_t>(R * L * E);
  if ((s.size() - 12) / 4 < n) {
    return data_loss_error(str_cat(name, ": truncated pattern: header [", R, ", ", L, ", ", E, "] needs ", 12 + 4 * n,
                                   " bytes, the file has ", s.size()));
  }
  if (s.size() != 12 + 4 * n) {
    return invalid_argument_error(str_cat(name, ": ", s.size() - 12 - 4 * n, " unexpected bytes after the ", n,
                                          " pattern values"));
  }
  PatternTensor t;
  t.num_ranks = static_cast<int32_t>(R);
  t.num_layers = static_cast<int32_t>(L);
  t.num_experts = static_cast<int32_t>(E);
  t.values.resize(n);
  for (size_t i = 0; i < n; ++i) t.values[i] = static_cast<int32_t>(le32(p + 12 + 4 * i));
  OMNI_RETURN_IF_ERROR(check_binary_values(name, t));
  return t;
}

StatusOr<PatternTensor> parse_npy_pattern(std::string_view s, std::string_view name) {
  OMNI_ASSIGN_OR_RETURN(NpyArray a, parse_npy(s, name));
  if (a.shape.size() != 3) {
    return invalid_argument_error(str_cat(name, ": a pattern .npy must have shape [ranks, layers, experts], got ",
                                          a.describe()));
  }
  if (!a.is_integer()) {
    return invalid_argument_error(str_cat(name, ": a pattern .npy must be int32 or int64, got ", a.describe(),
                                          "; convert with a.astype(np.int32)"));
  }
  OMNI_RETURN_IF_ERROR(check_pattern_shape(name, a.shape[0], a.shape[1], a.shape[2]));
  PatternTensor t;
  t.num_ranks = static_cast<int32_t>(a.shape[0]);
  t.num_layers = static_cast<int32_t>(a.shape[1]);
  t.num_experts = static_cast<int32_t>(a.shape[2]);
  t.npy_dtype = a.dtype;
  t.values = std::move(a.ints);
  OMNI_RETURN_IF_ERROR(check_binary_values(name, t));
  return t;
}

}  // namespace

StatusOr<PatternFormat> pattern_format_for_path(const std::string& path) {
  const std::string ext = io_internal::extension_of(path);
  if (ext == ".npy") return PatternFormat::kNpy;
  if (ext == ".txt") return PatternFormat::kText;
  if (ext == ".bin") return PatternFormat::kBinary;
  return invalid_argument_error(str_cat(path, ": unknown pattern extension '", ext, "' (expected .npy, .txt or .bin)"));
}

StatusOr<PatternTensor> parse_pattern(std::string_view bytes, PatternFormat format, std::string_view name) {
  switch (format) {
    case PatternFormat::kNpy: return parse_npy_pattern(bytes, name);
    case PatternFormat::kText: return parse_text(bytes, name);
    case PatternFormat::kBinary: return parse_binary(bytes, name);
  }
  return invalid_argument_error("unknown pattern format");
}

StatusOr<PatternTensor> read_pattern_tensor(const std::string& path) {
  OMNI_ASSIGN_OR_RETURN(PatternFormat format, pattern_format_for_path(path));
  OMNI_ASSIGN_OR_RETURN(std::string bytes, io_internal::read_file(path));
  return parse_pattern(bytes, format, path);
}

StatusOr<std::string> encode_pattern(const PatternTensor& t, PatternFormat format) {
  OMNI_RETURN_IF_ERROR(check_pattern_shape("pattern", t.num_ranks, t.num_layers, t.num_experts));
  const auto n = static_cast<size_t>(t.num_ranks) * static_cast<size_t>(t.num_layers) * static_cast<size_t>(t.num_experts);
  if (t.values.size() != n) {
    return invalid_argument_error(str_cat("pattern: shape [", t.num_ranks, ", ", t.num_layers, ", ", t.num_experts,
                                          "] needs ", n, " values, got ", t.values.size()));
  }
  OMNI_RETURN_IF_ERROR(check_binary_values("pattern", t));
  switch (format) {
    case PatternFormat::kNpy: {
      if (!npy_is_integer(t.npy_dtype)) return invalid_argument_error("pattern: the .npy dtype must be int32 or int64");
      NpyArray a;
      a.dtype = t.npy_dtype;
      a.shape = {t.num_ranks, t.num_layers, t.num_experts};
      a.ints = t.values;
      return encode_npy(a);
    }
    case PatternFormat::kText: {
      const char* eol = t.text_crlf ? "\r\n" : "\n";
      std::string out = str_cat(t.num_ranks, " ", t.num_layers, " ", t.num_experts, eol);
      out.reserve(out.size() + 2 * n);
      for (size_t i = 0; i < n; ++i) {
        if (i) out.push_back(' ');
        out.push_back(static_cast<char>('0' + t.values[i]));
      }
      out += eol;
      return out;
    }
    case PatternFormat::kBinary: {
      std::string out;
      out.reserve(12 + 4 * n);
      auto put = [&out](int64_t v) {
        const auto u = static_cast<uint32_t>(static_cast<int32_t>(v));
        for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
      };
      put(t.num_ranks);
      put(t.num_layers);
      put(t.num_experts);
      for (int64_t v : t.values) put(v);
      return out;
    }
  }
  return invalid_argument_error("unknown pattern format");
}

StatusOr<Placement> placement_from_pattern(const PatternTensor& t, std::string_view name) {
  OMNI_RETURN_IF_ERROR(check_pattern_shape(name, t.num_ranks, t.num_layers, t.num_experts));
  const auto R = static_cast<size_t>(t.num_ranks);
  const auto L = static_cast<size_t>(t.num_layers);
  const auto E = static_cast<size_t>(t.num_experts);
  if (t.values.size() != R * L * E) {
    return invalid_argument_error(str_cat(name, ": pattern needs ", R * L * E, " values, got ", t.values.size()));
  }
  OMNI_RETURN_IF_ERROR(check_binary_values(name, t));
  PlacementLayout layout;
  layout.num_ranks = t.num_ranks;
  layout.num_experts = t.num_experts;
  layout.slots_per_rank.resize(L);
  layout.phy2log.resize(L);
  for (size_t l = 0; l < L; ++l) {
    size_t spr = 0;
    for (size_t r = 0; r < R; ++r) {
      size_t c = 0;
      for (size_t e = 0; e < E; ++e) c += static_cast<size_t>(t.values[(r * L + l) * E + e]);
      spr = std::max(spr, c);
    }
    if (spr == 0) return invalid_argument_error(str_cat(name, ": layer ", l, " has no replica on any rank"));
    if (R * spr > static_cast<size_t>(kMaxSlotsPerLayer)) {
      return invalid_argument_error(str_cat(name, ": layer ", l, " needs ", R * spr, " slots, more than ", kMaxSlotsPerLayer));
    }
    layout.slots_per_rank[l] = static_cast<int32_t>(spr);
    auto& row = layout.phy2log[l];
    row.assign(R * spr, kEmptySlot);
    for (size_t r = 0; r < R; ++r) {
      size_t s = 0;
      for (size_t e = 0; e < E; ++e) {
        if (t.values[(r * L + l) * E + e]) row[r * spr + s++] = static_cast<ExpertId>(e);
      }
    }
  }
  auto p = Placement::create(std::move(layout));
  if (!p.ok()) return p.status().with_context(name);
  return p;
}

StatusOr<PatternTensor> pattern_from_placement(const Placement& p, NpyDtype npy_dtype) {
  PatternTensor t;
  t.num_ranks = p.num_ranks();
  t.num_layers = p.num_layers();
  t.num_experts = p.num_experts();
  t.npy_dtype = npy_dtype;
  OMNI_RETURN_IF_ERROR(check_pattern_shape("placement", t.num_ranks, t.num_layers, t.num_experts));
  const auto R = static_cast<size_t>(t.num_ranks);
  const auto L = static_cast<size_t>(t.num_layers);
  const auto E = static_cast<size_t>(t.num_experts);
  t.values.assign(R * L * E, 0);
  for (LayerId l = 0; l < p.num_layers(); ++l) {
    const int32_t spr = p.slots_per_rank(l);
    for (RankId r = 0; r < p.num_ranks(); ++r) {
      for (SlotId s = 0; s < spr; ++s) {
        const ExpertId e = p.expert_at(l, r, s);
        if (e == kEmptySlot) continue;
        int64_t& v = t.values[(static_cast<size_t>(r) * L + static_cast<size_t>(l)) * E + static_cast<size_t>(e)];
        if (v) {
          return invalid_argument_error(str_cat("layer ", l, ", rank ", r, ", slot ", s, ": expert ", e,
                                                " is held twice on this rank; omni-infer's 0/1 pattern cannot express a "
                                                "same-rank duplicate"));
        }
        v = 1;
      }
    }
  }
  return t;
}

StatusOr<Placement> read_pattern(const std::string& path) {
  OMNI_ASSIGN_OR_RETURN(PatternTensor t, read_pattern_tensor(path));
  return placement_from_pattern(t, path);
}

Status write_pattern(const std::string& path, const Placement& placement, NpyDtype npy_dtype) {
  OMNI_ASSIGN_OR_RETURN(PatternFormat format, pattern_format_for_path(path));
  auto t = pattern_from_placement(placement, npy_dtype);
  if (!t.ok()) return t.status().with_context(path);
  auto bytes = encode_pattern(*t, format);
  if (!bytes.ok()) return bytes.status().with_context(path);
  return io_internal::write_file(path, *bytes);
}

}  // namespace omni
