#include "omniplacement/io/placement_file.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "file_util.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/pattern.h"

namespace omni {

namespace {

using Json = nlohmann::json;

constexpr const char* kFormatName = "omniplacement.placement";
constexpr int kFormatVersion = 1;

Status field_error(std::string_view name, const std::string& what) {
  return invalid_argument_error(str_cat(name, ": ", what));
}

const char* json_type(const Json& j) { return j.type_name(); }

// An int32 from a JSON integer within [lo, hi].
Status get_int(std::string_view name, const Json& j, const std::string& where, int64_t lo, int64_t hi, int32_t* out) {
  if (!j.is_number_integer()) return field_error(name, str_cat(where, " must be an integer, got ", json_type(j)));
  const auto v = j.get<int64_t>();
  if (v < lo || v > hi) return field_error(name, str_cat(where, " = ", v, " is out of range [", lo, ", ", hi, "]"));
  *out = static_cast<int32_t>(v);
  return ok_status();
}

StatusOr<Topology> parse_topology(std::string_view name, const Json& j, int32_t num_ranks) {
  if (!j.is_object()) return field_error(name, str_cat("\"topology\" must be an object, got ", json_type(j)));
  for (const auto& [key, value] : j.items()) {
    if (key != "host_of_rank" && key != "bandwidths") {
      return field_error(name, str_cat("unknown key \"topology.", key, "\" (valid: host_of_rank, bandwidths)"));
    }
    (void)value;
  }
  if (!j.contains("host_of_rank")) return field_error(name, "\"topology\" needs \"host_of_rank\"");
  const Json& h = j["host_of_rank"];
  if (!h.is_array() || h.size() != static_cast<size_t>(num_ranks)) {
    return field_error(name, str_cat("\"topology.host_of_rank\" must be an array of num_ranks = ", num_ranks,
                                     " host ids, got ", h.is_array() ? str_cat(h.size(), " elements") : json_type(h)));
  }
  std::vector<HostId> hosts(h.size());
  for (size_t r = 0; r < h.size(); ++r) {
    OMNI_RETURN_IF_ERROR(get_int(name, h[r], str_cat("topology.host_of_rank[", r, "]"), 0, kMaxRanks - 1, &hosts[r]));
  }
  LinkBandwidths bw;
  if (j.contains("bandwidths")) {
    const Json& b = j["bandwidths"];
    if (!b.is_object()) return field_error(name, "\"topology.bandwidths\" must be an object");
    for (const auto& [key, value] : b.items()) {
      double* dst = key == "same_rank_bytes_per_s"    ? &bw.same_rank_bytes_per_s
                    : key == "same_host_bytes_per_s"  ? &bw.same_host_bytes_per_s
                    : key == "cross_host_bytes_per_s" ? &bw.cross_host_bytes_per_s
                    : key == "latency_s"              ? &bw.latency_s
                                                      : nullptr;
      if (!dst) {
        return field_error(name, str_cat("unknown key \"topology.bandwidths.", key,
                                         "\" (valid: same_rank_bytes_per_s, same_host_bytes_per_s, "
                                         "cross_host_bytes_per_s, latency_s)"));
      }
      if (!value.is_number()) return field_error(name, str_cat("\"topology.bandwidths.", key, "\" must be a number"));
      *dst = value.get<double>();
    }
  }
  auto t = Topology::from_host_map(std::move(hosts), bw);
  if (!t.ok()) return t.status().with_context(str_cat(name, ": topology"));
  return t;
}

// The optional derived maps log2phy [L][E][width] and logcnt [L][E] must agree
// with phy2log: logcnt[l][e] replicas, whose global slots are the first
// logcnt[l][e] entries of log2phy[l][e] (any order), the rest -1.
Status check_expert_maps(std::string_view name, const Json& j, const Placement& p) {
  const size_t L = static_cast<size_t>(p.num_layers()), E = static_cast<size_t>(p.num_experts());
  if (j.contains("logcnt") && !j["logcnt"].is_null()) {
    const Json& c = j["logcnt"];
    if (!c.is_array() || c.size() != L) return field_error(name, str_cat("\"logcnt\" must be an array of ", L, " layers"));
    for (size_t l = 0; l < L; ++l) {
      if (!c[l].is_array() || c[l].size() != E) {
        return field_error(name, str_cat("logcnt[", l, "] must have num_experts = ", E, " entries"));
      }
      for (size_t e = 0; e < E; ++e) {
        const int32_t want = p.replica_count(static_cast<LayerId>(l), static_cast<ExpertId>(e));
        if (!c[l][e].is_number_integer() || c[l][e].get<int64_t>() != want) {
          return field_error(name, str_cat("logcnt[", l, "][", e, "] (layer ", l, ", expert ", e, ") = ", c[l][e].dump(),
                                           " but phy2log holds ", want, " replicas of that expert"));
        }
      }
    }
  }
  if (j.contains("log2phy") && !j["log2phy"].is_null()) {
    const Json& m = j["log2phy"];
    if (!m.is_array() || m.size() != L) return field_error(name, str_cat("\"log2phy\" must be an array of ", L, " layers"));
    for (size_t l = 0; l < L; ++l) {
      if (!m[l].is_array() || m[l].size() != E) {
        return field_error(name, str_cat("log2phy[", l, "] must have num_experts = ", E, " rows"));
      }
      for (size_t e = 0; e < E; ++e) {
        const Json& row = m[l][e];
        const auto reps = p.replicas(static_cast<LayerId>(l), static_cast<ExpertId>(e));
        const std::string where = str_cat("log2phy[", l, "][", e, "] (layer ", l, ", expert ", e, ")");
        if (!row.is_array() || row.size() < reps.size()) {
          return field_error(name, str_cat(where, " must be an array of at least ", reps.size(), " slots"));
        }
        std::vector<GlobalSlot> got;
        for (size_t k = 0; k < row.size(); ++k) {
          if (!row[k].is_number_integer()) return field_error(name, str_cat(where, "[", k, "] must be an integer"));
          const int64_t g = row[k].get<int64_t>();
          if (k >= reps.size()) {
            if (g != -1) return field_error(name, str_cat(where, "[", k, "] = ", g, ": padding after the ", reps.size(), " replicas must be -1"));
            continue;
          }
          got.push_back(static_cast<GlobalSlot>(g));
        }
        std::sort(got.begin(), got.end());
        if (!std::equal(got.begin(), got.end(), reps.begin(), reps.end())) {
          return field_error(name, str_cat(where, " does not list the global slots that phy2log gives that expert"));
        }
      }
    }
  }
  return ok_status();
}

StatusOr<PlacementFile> parse_json_value(std::string_view name, const Json& j, const ValidationRules& rules) {
  if (!j.is_object()) return field_error(name, str_cat("the top level must be a JSON object, got ", json_type(j)));
  static const char* const kKeys[] = {"format", "version", "num_layers", "num_ranks", "num_experts",
                                      "slots_per_rank", "phy2log", "shares", "topology", "log2phy", "logcnt"};
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const char* k : kKeys) known |= key == k;
    if (!known) {
      return field_error(name, str_cat("unknown key \"", key, "\" (valid: format, version, num_layers, num_ranks, ",
                                       "num_experts, slots_per_rank, phy2log, shares, topology, log2phy, logcnt)"));
    }
    (void)value;
  }
  if (!j.contains("format") || !j["format"].is_string() || j["format"].get<std::string>() != kFormatName) {
    return field_error(name, str_cat("\"format\" must be \"", kFormatName, "\""));
  }
  int32_t version = 0;
  if (!j.contains("version")) return field_error(name, "missing \"version\"");
  OMNI_RETURN_IF_ERROR(get_int(name, j["version"], "version", 1, kFormatVersion, &version));
  PlacementLayout layout;
  for (const char* key : {"num_ranks", "num_experts", "slots_per_rank", "phy2log"}) {
    if (!j.contains(key)) return field_error(name, str_cat("missing \"", key, "\""));
  }
  OMNI_RETURN_IF_ERROR(get_int(name, j["num_ranks"], "num_ranks", 1, kMaxRanks, &layout.num_ranks));
  OMNI_RETURN_IF_ERROR(get_int(name, j["num_experts"], "num_experts", 1, kMaxExperts, &layout.num_experts));
  const Json& spr = j["slots_per_rank"];
  if (!spr.is_array() || spr.empty() || spr.size() > static_cast<size_t>(kMaxLayers)) {
    return field_error(name, str_cat("\"slots_per_rank\" must be an array of 1..", kMaxLayers, " integers"));
  }
  const size_t L = spr.size();
  if (j.contains("num_layers")) {
    int32_t nl = 0;
    OMNI_RETURN_IF_ERROR(get_int(name, j["num_layers"], "num_layers", 1, kMaxLayers, &nl));
    if (static_cast<size_t>(nl) != L) {
      return field_error(name, str_cat("num_layers = ", nl, " but slots_per_rank has ", L, " entries"));
    }
  }
  layout.slots_per_rank.resize(L);
  for (size_t l = 0; l < L; ++l) {
    OMNI_RETURN_IF_ERROR(get_int(name, spr[l], str_cat("slots_per_rank[", l, "]"), 1, kMaxSlotsPerRank,
                                 &layout.slots_per_rank[l]));
    if (static_cast<int64_t>(layout.slots_per_rank[l]) * layout.num_ranks > kMaxSlotsPerLayer) {
      return field_error(name, str_cat("layer ", l, ": ", layout.num_ranks, " ranks x ", layout.slots_per_rank[l],
                                       " slots exceed ", kMaxSlotsPerLayer, " slots per layer"));
    }
  }
  // Rows of phy2log (ints) and shares (doubles), one per layer, of num_ranks * slots_per_rank[l].
  auto row_size = [&](size_t l) { return static_cast<size_t>(layout.num_ranks) * static_cast<size_t>(layout.slots_per_rank[l]); };
  const Json& p2l = j["phy2log"];
  if (!p2l.is_array() || p2l.size() != L) {
    return field_error(name, str_cat("\"phy2log\" must be an array of ", L, " layers (one per slots_per_rank entry)"));
  }
  layout.phy2log.resize(L);
  for (size_t l = 0; l < L; ++l) {
    const Json& row = p2l[l];
    if (!row.is_array() || row.size() != row_size(l)) {
      return field_error(name, str_cat("phy2log[", l, "] must have num_ranks * slots_per_rank[", l, "] = ", row_size(l),
                                       " entries, got ", row.is_array() ? str_cat(row.size()) : json_type(row)));
    }
    auto& out = layout.phy2log[l];
    out.resize(row.size());
    for (size_t g = 0; g < row.size(); ++g) {
      const size_t spr_l = static_cast<size_t>(layout.slots_per_rank[l]);
      OMNI_RETURN_IF_ERROR(get_int(name, row[g],
                                   str_cat("phy2log[", l, "][", g, "] (layer ", l, ", rank ", g / spr_l, ", slot ",
                                           g % spr_l, ")"),
                                   -1, layout.num_experts - 1, &out[g]));
    }
  }
  if (j.contains("shares") && !j["shares"].is_null()) {
    const Json& sh = j["shares"];
    if (!sh.is_array() || sh.size() != L) return field_error(name, str_cat("\"shares\" must be an array of ", L, " layers"));
    layout.shares.resize(L);
    for (size_t l = 0; l < L; ++l) {
      const Json& row = sh[l];
      if (!row.is_array() || row.size() != row_size(l)) {
        return field_error(name, str_cat("shares[", l, "] must have ", row_size(l), " entries"));
      }
      layout.shares[l].resize(row.size());
      for (size_t g = 0; g < row.size(); ++g) {
        if (!row[g].is_number()) return field_error(name, str_cat("shares[", l, "][", g, "] must be a number"));
        layout.shares[l][g] = row[g].get<double>();
      }
    }
  }
  PlacementFile file;
  auto placement = Placement::create(std::move(layout), rules);
  if (!placement.ok()) return placement.status().with_context(name);
  file.placement = std::move(placement).value();
  if (j.contains("topology") && !j["topology"].is_null()) {
    OMNI_ASSIGN_OR_RETURN(file.topology, parse_topology(name, j["topology"], file.placement.num_ranks()));
  }
  OMNI_RETURN_IF_ERROR(check_expert_maps(name, j, file.placement));
  return file;
}

template <typename T, typename Fmt>
void append_row(std::string* out, std::span<const T> row, Fmt fmt) {
  out->push_back('[');
  for (size_t i = 0; i < row.size(); ++i) {
    if (i) out->append(", ");
    out->append(fmt(row[i]));
  }
  out->push_back(']');
}

}  // namespace

StatusOr<PlacementFile> parse_placement_json(std::string_view text, std::string_view name,
                                             const ValidationRules& rules) {
  try {
    Json j = Json::parse(text.begin(), text.end());
    return parse_json_value(name, j, rules);
  } catch (const Json::parse_error& e) {
    return invalid_argument_error(str_cat(name, ": not valid JSON: ", e.what()));
  } catch (const std::exception& e) {
    // Type errors are checked before every access; this is a last line of defence.
    return invalid_argument_error(str_cat(name, ": malformed placement JSON: ", e.what()));
  }
}

StatusOr<std::string> encode_placement_json(const PlacementFile& file, const PlacementJsonOptions& options) {
  const Placement& p = file.placement;
  if (p.num_layers() == 0) return invalid_argument_error("cannot write an empty placement (0 layers)");
  if (file.topology && file.topology->num_ranks() != p.num_ranks()) {
    return invalid_argument_error(str_cat("topology has ", file.topology->num_ranks(), " ranks, the placement ",
                                          p.num_ranks()));
  }
  std::string out = str_cat("{\n  \"format\": \"", kFormatName, "\",\n  \"version\": ", kFormatVersion,
                            ",\n  \"num_layers\": ", p.num_layers(), ",\n  \"num_ranks\": ", p.num_ranks(),
                            ",\n  \"num_experts\": ", p.num_experts(), ",\n  \"slots_per_rank\": ");
  std::vector<int32_t> spr(static_cast<size_t>(p.num_layers()));
  for (LayerId l = 0; l < p.num_layers(); ++l) spr[static_cast<size_t>(l)] = p.slots_per_rank(l);
  auto int_fmt = [](int32_t v) { return std::to_string(v); };
  auto dbl_fmt = [](double v) { return io_internal::format_double(v); };
  append_row<int32_t>(&out, spr, int_fmt);
  out += ",\n  \"phy2log\": [";
  for (LayerId l = 0; l < p.num_layers(); ++l) {
    out += l ? ",\n    " : "\n    ";
    append_row<ExpertId>(&out, p.phy2log(l), int_fmt);
  }
  out += "\n  ]";
  if (p.has_shares()) {
    out += ",\n  \"shares\": [";
    for (LayerId l = 0; l < p.num_layers(); ++l) {
      out += l ? ",\n    " : "\n    ";
      append_row<double>(&out, p.shares(l), dbl_fmt);
    }
    out += "\n  ]";
  }
  if (options.expert_maps) {
    // log2phy rows are padded with -1 to the largest replica count of the file.
    size_t width = 1;
    for (LayerId l = 0; l < p.num_layers(); ++l)
      for (ExpertId e = 0; e < p.num_experts(); ++e) width = std::max(width, p.replicas(l, e).size());
    out += ",\n  \"logcnt\": [";
    std::vector<int32_t> cnt(static_cast<size_t>(p.num_experts()));
    for (LayerId l = 0; l < p.num_layers(); ++l) {
      for (ExpertId e = 0; e < p.num_experts(); ++e) cnt[static_cast<size_t>(e)] = p.replica_count(l, e);
      out += l ? ",\n    " : "\n    ";
      append_row<int32_t>(&out, cnt, int_fmt);
    }
    out += "\n  ],\n  \"log2phy\": [";
    std::vector<int32_t> row(width);
    for (LayerId l = 0; l < p.num_layers(); ++l) {
      out += l ? ",\n    [" : "\n    [";
      for (ExpertId e = 0; e < p.num_experts(); ++e) {
        const auto reps = p.replicas(l, e);
        std::fill(row.begin(), row.end(), -1);
        std::copy(reps.begin(), reps.end(), row.begin());
        if (e) out += ", ";
        append_row<int32_t>(&out, row, int_fmt);
      }
      out += "]";
    }
    out += "\n  ]";
  }
  if (file.topology) {
    const Topology& t = *file.topology;
    out += ",\n  \"topology\": {\n    \"host_of_rank\": ";
    append_row<HostId>(&out, t.host_of_rank(), int_fmt);
    const LinkBandwidths& b = t.bandwidths();
    out += str_cat(",\n    \"bandwidths\": {\"same_rank_bytes_per_s\": ", dbl_fmt(b.same_rank_bytes_per_s),
                   ", \"same_host_bytes_per_s\": ", dbl_fmt(b.same_host_bytes_per_s),
                   ", \"cross_host_bytes_per_s\": ", dbl_fmt(b.cross_host_bytes_per_s),
                   ", \"latency_s\": ", dbl_fmt(b.latency_s), "}\n  }");
  }
  out += "\n}\n";
  return out;
}

bool is_placement_path(const std::string& path) {
  const std::string ext = io_internal::extension_of(path);
  return ext == ".json" || ext == ".npy" || ext == ".txt" || ext == ".bin";
}

StatusOr<PlacementFile> read_placement_file(const std::string& path, const ValidationRules& rules) {
  const std::string ext = io_internal::extension_of(path);
  if (ext == ".json") {
    OMNI_ASSIGN_OR_RETURN(std::string text, io_internal::read_file(path));
    return parse_placement_json(text, path, rules);
  }
  if (ext == ".npy" || ext == ".txt" || ext == ".bin") {
    PlacementFile file;
    OMNI_ASSIGN_OR_RETURN(file.placement, read_pattern(path));
    OMNI_RETURN_IF_ERROR(violations_to_status(file.placement.validate(rules)).with_context(path));
    return file;
  }
  return invalid_argument_error(
      str_cat(path, ": unknown placement extension '", ext, "' (expected .json, .npy, .txt or .bin)"));
}

Status write_placement_file(const std::string& path, const PlacementFile& file, NpyDtype npy_dtype,
                            const PlacementJsonOptions& json_options) {
  const std::string ext = io_internal::extension_of(path);
  if (ext == ".json") {
    auto text = encode_placement_json(file, json_options);
    if (!text.ok()) return text.status().with_context(path);
    return io_internal::write_file(path, *text);
  }
  if (ext == ".npy" || ext == ".txt" || ext == ".bin") {
    if (file.placement.has_shares()) {
      return invalid_argument_error(str_cat(path, ": an omni-infer pattern cannot hold per-replica shares; write .json, ",
                                            "or drop the shares first"));
    }
    if (file.topology) {
      return invalid_argument_error(str_cat(path, ": an omni-infer pattern cannot hold a topology; write .json, or ",
                                            "drop the topology first"));
    }
    return write_pattern(path, file.placement, npy_dtype);
  }
  return invalid_argument_error(
      str_cat(path, ": unknown placement extension '", ext, "' (expected .json, .npy, .txt or .bin)"));
}

Status write_placement_file(const std::string& path, const Placement& placement, NpyDtype npy_dtype) {
  PlacementFile file;
  file.placement = placement;
  return write_placement_file(path, file, npy_dtype);
}

}  // namespace omni
