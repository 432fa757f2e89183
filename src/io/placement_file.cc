#include "omniplacement/io/placement_file.h"

#include <algorithm>

#include "file_util.h"
#include "json_reader.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/pattern.h"

namespace omni {

namespace {

using io_internal::JsonField;
using io_internal::JsonNumber;
using io_internal::NumberArray;

constexpr const char* kFormatName = "omniplacement.placement";
constexpr int kFormatVersion = 1;

Status field_error(std::string_view name, const std::string& what) {
  return invalid_argument_error(str_cat(name, ": ", what));
}

// The document this reader accepts; anything else is refused while reading.
JsonField placement_schema() {
  return JsonField::object({
      {"format", JsonField::string()},
      {"version", JsonField::number()},
      {"num_layers", JsonField::number()},
      {"num_ranks", JsonField::number()},
      {"num_experts", JsonField::number()},
      {"slots_per_rank", JsonField::numbers(1)},
      {"phy2log", JsonField::numbers(2)},
      {"shares", JsonField::numbers(2)},
      {"topology", JsonField::object({
                       {"host_of_rank", JsonField::numbers(1)},
                       {"bandwidths", JsonField::object({{"same_rank_bytes_per_s", JsonField::number()},
                                                         {"same_host_bytes_per_s", JsonField::number()},
                                                         {"cross_host_bytes_per_s", JsonField::number()},
                                                         {"latency_s", JsonField::number()}})},
                   })},
      {"log2phy", JsonField::numbers(3)},
      {"logcnt", JsonField::numbers(2)},
  });
}

// An int32 from a JSON integer field within [lo, hi].
Status get_int(std::string_view name, const JsonField& f, const std::string& where, int64_t lo, int64_t hi,
               int32_t* out) {
  int64_t v = 0;
  OMNI_RETURN_IF_ERROR(io_internal::json_int(name, f, where, lo, hi, &v));
  *out = static_cast<int32_t>(v);
  return ok_status();
}

// An int32 from one number of an array within [lo, hi] (checked before narrowing).
Status get_int(std::string_view name, JsonNumber n, const std::string& where, int64_t lo, int64_t hi, int32_t* out) {
  int64_t v = 0;
  OMNI_RETURN_IF_ERROR(io_internal::json_int(name, n, where, lo, hi, &v));
  *out = static_cast<int32_t>(v);
  return ok_status();
}

std::string array_size_text(const JsonField& f) {
  return f.has_wanted_type() ? str_cat(f.array().root().size(), " elements") : std::string(f.type());
}

StatusOr<Topology> parse_topology(std::string_view name, const JsonField& j, int32_t num_ranks) {
  if (!j.has_wanted_type()) return field_error(name, str_cat("\"topology\" must be an object, got ", j.type()));
  const JsonField& h = *j.member("host_of_rank");
  if (!h.present()) return field_error(name, "\"topology\" needs \"host_of_rank\"");
  if (!h.has_wanted_type() || h.array().root().size() != static_cast<size_t>(num_ranks)) {
    return field_error(name, str_cat("\"topology.host_of_rank\" must be an array of num_ranks = ", num_ranks,
                                     " host ids, got ", array_size_text(h)));
  }
  const auto row = h.array().root();
  std::vector<HostId> hosts(row.size());
  for (size_t r = 0; r < row.size(); ++r) {
    OMNI_RETURN_IF_ERROR(
        get_int(name, row.number(r), str_cat("topology.host_of_rank[", r, "]"), 0, kMaxRanks - 1, &hosts[r]));
  }
  LinkBandwidths bw;
  const JsonField& b = *j.member("bandwidths");
  if (b.present()) {
    if (!b.has_wanted_type()) return field_error(name, str_cat("\"topology.bandwidths\" must be an object, got ", b.type()));
    for (const auto& [key, value] : b.members()) {
      if (!value.present()) continue;
      double* dst = key == "same_rank_bytes_per_s"    ? &bw.same_rank_bytes_per_s
                    : key == "same_host_bytes_per_s"  ? &bw.same_host_bytes_per_s
                    : key == "cross_host_bytes_per_s" ? &bw.cross_host_bytes_per_s
                                                      : &bw.latency_s;
      if (!value.has_wanted_type()) {
        return field_error(name, str_cat("\"topology.bandwidths.", key, "\" must be a number, got ", value.type()));
      }
      *dst = value.number_value().value;
    }
  }
  auto t = Topology::from_host_map(std::move(hosts), bw);
  if (!t.ok()) return t.status().with_context(str_cat(name, ": topology"));
  return t;
}

// The optional derived maps log2phy [L][E][width] and logcnt [L][E] must agree
// with phy2log: logcnt[l][e] replicas, whose global slots are the first
// logcnt[l][e] entries of log2phy[l][e] (any order), the rest -1.
Status check_expert_maps(std::string_view name, const JsonField& c_field, const JsonField& m_field, const Placement& p) {
  const size_t L = static_cast<size_t>(p.num_layers()), E = static_cast<size_t>(p.num_experts());
  if (!c_field.missing()) {
    if (!c_field.has_wanted_type() || c_field.array().root().size() != L) {
      return field_error(name, str_cat("\"logcnt\" must be an array of ", L, " layers, got ", array_size_text(c_field)));
    }
    const auto c = c_field.array().root();
    for (size_t l = 0; l < L; ++l) {
      const auto row = c.array(l);
      if (row.size() != E) {
        return field_error(name, str_cat("logcnt[", l, "] must have num_experts = ", E, " entries, got ", row.size()));
      }
      for (size_t e = 0; e < E; ++e) {
        const int32_t want = p.replica_count(static_cast<LayerId>(l), static_cast<ExpertId>(e));
        const JsonNumber got = row.number(e);
        if (!got.integer || got.value != static_cast<double>(want)) {
          return field_error(name, str_cat("logcnt[", l, "][", e, "] (layer ", l, ", expert ", e, ") = ",
                                           io_internal::json_number_text(got), " but phy2log holds ", want,
                                           " replicas of that expert"));
        }
      }
    }
  }
  if (!m_field.missing()) {
    if (!m_field.has_wanted_type() || m_field.array().root().size() != L) {
      return field_error(name, str_cat("\"log2phy\" must be an array of ", L, " layers, got ", array_size_text(m_field)));
    }
    const auto m = m_field.array().root();
    for (size_t l = 0; l < L; ++l) {
      const auto layer = m.array(l);
      if (layer.size() != E) {
        return field_error(name, str_cat("log2phy[", l, "] must have num_experts = ", E, " rows, got ", layer.size()));
      }
      const int64_t num_slots = p.num_slots(static_cast<LayerId>(l));
      for (size_t e = 0; e < E; ++e) {
        const auto row = layer.array(e);
        const auto reps = p.replicas(static_cast<LayerId>(l), static_cast<ExpertId>(e));
        const std::string where = str_cat("log2phy[", l, "][", e, "] (layer ", l, ", expert ", e, ")");
        if (row.size() < reps.size()) {
          return field_error(name, str_cat(where, " must list at least the expert's ", reps.size(), " replicas, got ",
                                           row.size(), " entries"));
        }
        std::vector<GlobalSlot> got;
        got.reserve(reps.size());
        for (size_t k = 0; k < row.size(); ++k) {
          const std::string at = str_cat(where, "[", k, "]");
          if (k >= reps.size()) {
            const JsonNumber pad = row.number(k);
            if (!pad.integer || pad.value != -1) {
              return field_error(name, str_cat(at, " = ", io_internal::json_number_text(pad), ": padding after the ",
                                               reps.size(), " replicas must be -1"));
            }
            continue;
          }
          // A global slot of the layer: range-checked before it is narrowed to int32.
          GlobalSlot g = 0;
          OMNI_RETURN_IF_ERROR(get_int(name, row.number(k), at, 0, num_slots - 1, &g));
          got.push_back(g);
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

StatusOr<PlacementFile> parse_document(std::string_view name, JsonField& j, const ValidationRules& rules) {
  if (!j.has_wanted_type()) return field_error(name, str_cat("the top level must be a JSON object, got ", j.type()));
  const JsonField& format = *j.member("format");
  if (!format.has_wanted_type() || format.text() != kFormatName) {
    return field_error(name, str_cat("\"format\" must be \"", kFormatName, "\""));
  }
  int32_t version = 0;
  OMNI_RETURN_IF_ERROR(get_int(name, *j.member("version"), "version", 1, kFormatVersion, &version));
  PlacementLayout layout;
  for (const char* key : {"num_ranks", "num_experts", "slots_per_rank", "phy2log"}) {
    if (!j.member(key)->present()) return field_error(name, str_cat("missing \"", key, "\""));
  }
  OMNI_RETURN_IF_ERROR(get_int(name, *j.member("num_ranks"), "num_ranks", 1, kMaxRanks, &layout.num_ranks));
  OMNI_RETURN_IF_ERROR(get_int(name, *j.member("num_experts"), "num_experts", 1, kMaxExperts, &layout.num_experts));
  const JsonField& spr_field = *j.member("slots_per_rank");
  const auto spr = spr_field.array().root();
  if (!spr_field.has_wanted_type() || spr.size() == 0 || spr.size() > static_cast<size_t>(kMaxLayers)) {
    return field_error(name, str_cat("\"slots_per_rank\" must be an array of 1..", kMaxLayers, " integers, got ",
                                     array_size_text(spr_field)));
  }
  const size_t L = spr.size();
  if (j.member("num_layers")->present()) {
    int32_t nl = 0;
    OMNI_RETURN_IF_ERROR(get_int(name, *j.member("num_layers"), "num_layers", 1, kMaxLayers, &nl));
    if (static_cast<size_t>(nl) != L) {
      return field_error(name, str_cat("num_layers = ", nl, " but slots_per_rank has ", L, " entries"));
    }
  }
  layout.slots_per_rank.resize(L);
  for (size_t l = 0; l < L; ++l) {
    OMNI_RETURN_IF_ERROR(get_int(name, spr.number(l), str_cat("slots_per_rank[", l, "]"), 1, kMaxSlotsPerRank,
                                 &layout.slots_per_rank[l]));
    if (static_cast<int64_t>(layout.slots_per_rank[l]) * layout.num_ranks > kMaxSlotsPerLayer) {
      return field_error(name, str_cat("layer ", l, ": ", layout.num_ranks, " ranks x ", layout.slots_per_rank[l],
                                       " slots exceed ", kMaxSlotsPerLayer, " slots per layer"));
    }
  }
  // Rows of phy2log (ints) and shares (doubles), one per layer, of num_ranks * slots_per_rank[l].
  auto row_size = [&](size_t l) { return static_cast<size_t>(layout.num_ranks) * static_cast<size_t>(layout.slots_per_rank[l]); };
  JsonField& p2l_field = *j.mutable_member("phy2log");
  if (!p2l_field.has_wanted_type() || p2l_field.array().root().size() != L) {
    return field_error(name, str_cat("\"phy2log\" must be an array of ", L,
                                     " layers (one per slots_per_rank entry), got ", array_size_text(p2l_field)));
  }
  const auto p2l = p2l_field.array().root();
  layout.phy2log.resize(L);
  for (size_t l = 0; l < L; ++l) {
    const auto row = p2l.array(l);
    if (row.size() != row_size(l)) {
      return field_error(name, str_cat("phy2log[", l, "] must have num_ranks * slots_per_rank[", l, "] = ", row_size(l),
                                       " entries, got ", row.size()));
    }
    auto& out = layout.phy2log[l];
    out.resize(row.size());
    const size_t spr_l = static_cast<size_t>(layout.slots_per_rank[l]);
    for (size_t g = 0; g < row.size(); ++g) {
      OMNI_RETURN_IF_ERROR(get_int(name, row.number(g),
                                   str_cat("phy2log[", l, "][", g, "] (layer ", l, ", rank ", g / spr_l, ", slot ",
                                           g % spr_l, ")"),
                                   -1, layout.num_experts - 1, &out[g]));
    }
  }
  p2l_field.array().clear();  // read into the layout: free it
  JsonField& sh_field = *j.mutable_member("shares");
  if (!sh_field.missing()) {
    if (!sh_field.has_wanted_type() || sh_field.array().root().size() != L) {
      return field_error(name, str_cat("\"shares\" must be an array of ", L, " layers, got ", array_size_text(sh_field)));
    }
    const auto sh = sh_field.array().root();
    layout.shares.resize(L);
    for (size_t l = 0; l < L; ++l) {
      const auto row = sh.array(l);
      if (row.size() != row_size(l)) {
        return field_error(name, str_cat("shares[", l, "] must have ", row_size(l), " entries, got ", row.size()));
      }
      layout.shares[l].resize(row.size());
      for (size_t g = 0; g < row.size(); ++g) layout.shares[l][g] = row.number(g).value;
    }
    sh_field.array().clear();
  }
  PlacementFile file;
  auto placement = Placement::create(std::move(layout), rules);
  if (!placement.ok()) return placement.status().with_context(name);
  file.placement = std::move(placement).value();
  const JsonField& topo = *j.member("topology");
  if (!topo.missing()) {
    OMNI_ASSIGN_OR_RETURN(file.topology, parse_topology(name, topo, file.placement.num_ranks()));
  }
  OMNI_RETURN_IF_ERROR(check_expert_maps(name, *j.member("logcnt"), *j.member("log2phy"), file.placement));
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
  JsonField doc = placement_schema();
  OMNI_RETURN_IF_ERROR(io_internal::read_json(text, name, &doc));
  return parse_document(name, doc, rules);
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
