// Bindings of core's model types: Topology, PlacementLayout / validate,
// Placement, LoadMatrix and ExpertMap. Metrics are in bind_metrics.cc.
//
// Index arguments are checked here before the C++ accessors (which abort on a
// bad index, treating it as a library bug) are called, so Python sees a
// ValueError naming the index and the valid range instead.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bindings.h"
#include "omniplacement/core/core.h"
#include "py_support.h"

namespace omni::py_support {

namespace {

std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// A layout from phy2log rows: slots_per_rank[l] = len(phy2log[l]) / num_ranks.
PlacementLayout layout_from_rows(std::vector<std::vector<int32_t>> phy2log, int32_t num_ranks, int32_t num_experts,
                                 py::object shares) {
  if (num_ranks < 1 || num_ranks > kMaxRanks) {
    fail(StatusCode::kInvalidArgument, str_cat("placement: num_ranks must be in [1, ", kMaxRanks, "], got ", num_ranks));
  }
  PlacementLayout layout;
  layout.num_ranks = num_ranks;
  layout.num_experts = num_experts;
  for (size_t l = 0; l < phy2log.size(); ++l) {
    if (phy2log[l].size() % static_cast<size_t>(num_ranks) != 0) {
      fail(StatusCode::kInvalidArgument, str_cat("placement: layer ", l, " has ", phy2log[l].size(),
                                                 " global slots, not a multiple of num_ranks = ", num_ranks));
    }
    layout.slots_per_rank.push_back(static_cast<int32_t>(phy2log[l].size() / static_cast<size_t>(num_ranks)));
  }
  layout.phy2log = std::move(phy2log);
  if (!shares.is_none()) layout.shares = double_rows(shares, "shares");
  return layout;
}

LoadMatrix::Kind parse_kind(const std::string& kind) {
  if (kind == "counts") return LoadMatrix::Kind::kCounts;
  if (kind == "weights") return LoadMatrix::Kind::kWeights;
  fail(StatusCode::kInvalidArgument, str_cat("load matrix kind must be 'counts' or 'weights', got '", kind, "'"));
}

const char* kind_name(LoadMatrix::Kind k) { return k == LoadMatrix::Kind::kCounts ? "counts" : "weights"; }

// [num_layers, num_experts] shape of a 2-D input, checked for the int32 limits.
std::pair<int32_t, int32_t> matrix_dims(const std::vector<int64_t>& shape, const char* what) {
  expect_ndim(what, shape.size(), 2);
  check(check_matrix_shape(what, shape[0], kMaxLayers, shape[1], kMaxExperts));
  return {static_cast<int32_t>(shape[0]), static_cast<int32_t>(shape[1])};
}

LoadMatrix load_from_counts(py::handle data) {
  auto d = to_int64s(data, "counts");
  auto [L, E] = matrix_dims(d.shape, "counts");
  return unwrap(LoadMatrix::from_counts(L, E, std::move(d.data)));
}

LoadMatrix load_from_weights(py::handle data) {
  auto d = to_doubles(data, "weights");
  auto [L, E] = matrix_dims(d.shape, "weights");
  return unwrap(LoadMatrix::from_weights(L, E, std::move(d.data)));
}

py::array_t<double> load_values(const LoadMatrix& m) {
  return to_numpy(std::vector<double>(m.values().begin(), m.values().end()), {m.num_layers(), m.num_experts()});
}

py::object load_counts(const LoadMatrix& m) {
  if (!m.is_counts()) return py::none();
  return to_numpy(std::vector<int64_t>(m.counts().begin(), m.counts().end()), {m.num_layers(), m.num_experts()});
}

std::string load_repr(const LoadMatrix& m) {
  double total = 0;
  for (double v : m.values()) total += v;
  return str_cat("<LoadMatrix ", m.num_layers(), " layers x ", m.num_experts(), " experts, ", kind_name(m.kind()),
                 ", total ", total, ">");
}

void check_placement_layer(const Placement& p, LayerId l) { check_index("layer", l, p.num_layers()); }

void bind_topology(py::module_& m) {
  py::class_<LinkBandwidths>(m, "LinkBandwidths",
                             "Bandwidth per link class in bytes per second per device, and a fixed latency per "
                             "transfer in seconds. Defaults: same rank 1 TB/s, same host 300 GB/s, cross host "
                             "50 GB/s, latency 10 us.")
      .def(py::init([](double same_rank, double same_host, double cross_host, double latency) {
             return LinkBandwidths{same_rank, same_host, cross_host, latency};
           }),
           py::kw_only(), py::arg("same_rank_bytes_per_s") = 1.0e12, py::arg("same_host_bytes_per_s") = 300.0e9,
           py::arg("cross_host_bytes_per_s") = 50.0e9, py::arg("latency_s") = 10.0e-6)
      .def_readwrite("same_rank_bytes_per_s", &LinkBandwidths::same_rank_bytes_per_s)
      .def_readwrite("same_host_bytes_per_s", &LinkBandwidths::same_host_bytes_per_s)
      .def_readwrite("cross_host_bytes_per_s", &LinkBandwidths::cross_host_bytes_per_s)
      .def_readwrite("latency_s", &LinkBandwidths::latency_s)
      .def("__repr__", [](const LinkBandwidths& b) {
        return str_cat("LinkBandwidths(same_rank_bytes_per_s=", b.same_rank_bytes_per_s,
                       ", same_host_bytes_per_s=", b.same_host_bytes_per_s, ", cross_host_bytes_per_s=",
                       b.cross_host_bytes_per_s, ", latency_s=", b.latency_s, ")");
      });

  py::class_<Topology>(m, "Topology",
                       "Which rank sits on which host, and link bandwidths. Immutable; build it with "
                       "Topology.uniform, Topology.from_host_map or Topology.single_host.")
      .def_static(
          "uniform",
          [](int32_t num_ranks, int32_t ranks_per_host, const LinkBandwidths& b) {
            return unwrap(Topology::uniform(num_ranks, ranks_per_host, b));
          },
          py::arg("num_ranks"), py::arg("ranks_per_host"), py::arg("bandwidths") = LinkBandwidths{},
          "num_ranks ranks, rank r on host r // ranks_per_host (num_ranks must be a multiple of it).")
      .def_static(
          "from_host_map",
          [](py::handle host_of_rank, const LinkBandwidths& b) {
            auto d = to_int32s(host_of_rank, "host_of_rank", INT32_MIN, INT32_MAX);
            expect_ndim("host_of_rank", d.ndim(), 1);
            return unwrap(Topology::from_host_map(std::move(d.data), b));
          },
          py::arg("host_of_rank"), py::arg("bandwidths") = LinkBandwidths{},
          "host_of_rank[r] is the host of rank r; hosts numbered densely from 0, each with a rank.")
      .def_static(
          "single_host",
          [](int32_t num_ranks, const LinkBandwidths& b) { return unwrap(Topology::single_host(num_ranks, b)); },
          py::arg("num_ranks"), py::arg("bandwidths") = LinkBandwidths{}, "All ranks on one host.")
      .def_property_readonly("num_ranks", &Topology::num_ranks)
      .def_property_readonly("num_hosts", &Topology::num_hosts)
      .def(
          "host_of",
          [](const Topology& t, RankId r) {
            check_index("rank", r, t.num_ranks());
            return t.host_of(r);
          },
          py::arg("rank"), "Host of a rank.")
      .def(
          "ranks_of_host",
          [](const Topology& t, HostId h) {
            check_index("host", h, t.num_hosts());
            auto s = t.ranks_of_host(h);
            return to_numpy(std::vector<int32_t>(s.begin(), s.end()));
          },
          py::arg("host"), "Ranks on a host, ascending (int32 array).")
      .def(
          "link",
          [](const Topology& t, RankId a, RankId b) {
            check_index("rank", a, t.num_ranks());
            check_index("rank", b, t.num_ranks());
            return std::string(link_class_name(t.link(a, b)));
          },
          py::arg("a"), py::arg("b"), "Link class between two ranks: 'same-rank', 'same-host' or 'cross-host'.")
      .def(
          "transfer_seconds",
          [](const Topology& t, RankId a, RankId b, double bytes) {
            check_index("rank", a, t.num_ranks());
            check_index("rank", b, t.num_ranks());
            return t.transfer_seconds(a, b, bytes);
          },
          py::arg("a"), py::arg("b"), py::arg("bytes"), "Seconds to move `bytes` from rank a to rank b.")
      .def_property_readonly("bandwidths", &Topology::bandwidths)
      .def_property_readonly("is_uniform", &Topology::is_uniform)
      .def_property_readonly(
          "host_of_rank", [](const Topology& t) { return to_numpy(std::vector<int32_t>(t.host_of_rank())); },
          "[num_ranks] int32 array: the host of every rank.")
      .def("__eq__", [](const Topology& a, const Topology& b) { return a == b; })
      .def("__repr__", [](const Topology& t) { return str_cat("<Topology ", t.to_string(), ">"); });
}

void bind_validation(py::module_& m) {
  py::class_<ValidationRules>(m, "ValidationRules", "Optional semantic rules checked by validate().")
      .def(py::init([](bool require_every_expert, bool forbid_same_rank_duplicates, int32_t max_replicas_per_expert) {
             return ValidationRules{require_every_expert, forbid_same_rank_duplicates, max_replicas_per_expert};
           }),
           py::kw_only(), py::arg("require_every_expert") = true, py::arg("forbid_same_rank_duplicates") = false,
           py::arg("max_replicas_per_expert") = 0)
      .def_readwrite("require_every_expert", &ValidationRules::require_every_expert,
                     "Every expert of every layer must have a replica.")
      .def_readwrite("forbid_same_rank_duplicates", &ValidationRules::forbid_same_rank_duplicates,
                     "No rank may hold two replicas of one expert.")
      .def_readwrite("max_replicas_per_expert", &ValidationRules::max_replicas_per_expert,
                     "Cap on replicas per expert; 0 means no cap.")
      .def("__repr__", [](const ValidationRules& r) {
        return str_cat("ValidationRules(require_every_expert=", r.require_every_expert ? "True" : "False",
                       ", forbid_same_rank_duplicates=", r.forbid_same_rank_duplicates ? "True" : "False",
                       ", max_replicas_per_expert=", r.max_replicas_per_expert, ")");
      });

  py::class_<Violation>(m, "Violation",
                        "One problem found by validate(). kind is 'shape', 'expert-out-of-range', "
                        "'expert-missing', 'same-rank-duplicate', 'too-many-replicas' or 'bad-share'; fields "
                        "that do not apply are -1.")
      .def_property_readonly("kind", [](const Violation& v) { return std::string(violation_kind_name(v.kind)); })
      .def_readonly("layer", &Violation::layer)
      .def_readonly("rank", &Violation::rank)
      .def_readonly("slot", &Violation::slot)
      .def_readonly("expert", &Violation::expert)
      .def_readonly("message", &Violation::message)
      .def("__repr__", [](const Violation& v) {
        return str_cat("<Violation ", violation_kind_name(v.kind), ": ", v.message, ">");
      });

  py::class_<PlacementLayout>(m, "PlacementLayout",
                              "The raw, unchecked content of a placement (what files and planners produce before "
                              "Placement validates it). phy2log[l] has num_ranks * slots_per_rank[l] expert ids "
                              "(-1 = empty slot); shares is empty or per-slot fractions of each expert's load. "
                              "Attributes are copied in and out (a layout is a plain value).")
      .def(py::init([](int32_t num_ranks, int32_t num_experts, py::object slots_per_rank, py::object phy2log,
                       py::object shares) {
             PlacementLayout layout;
             layout.num_ranks = num_ranks;
             layout.num_experts = num_experts;
             if (!slots_per_rank.is_none()) {
               auto d = to_int32s(slots_per_rank, "slots_per_rank", INT32_MIN, INT32_MAX);
               expect_ndim("slots_per_rank", d.ndim(), 1);
               layout.slots_per_rank = std::move(d.data);
             }
             if (!phy2log.is_none()) layout.phy2log = int32_rows(phy2log, "phy2log");
             if (!shares.is_none()) layout.shares = double_rows(shares, "shares");
             return layout;
           }),
           py::kw_only(), py::arg("num_ranks") = 0, py::arg("num_experts") = 0, py::arg("slots_per_rank") = py::none(),
           py::arg("phy2log") = py::none(), py::arg("shares") = py::none())
      .def_readwrite("num_ranks", &PlacementLayout::num_ranks)
      .def_readwrite("num_experts", &PlacementLayout::num_experts)
      .def_property_readonly("num_layers", &PlacementLayout::num_layers)
      .def_property(
          "slots_per_rank", [](const PlacementLayout& p) { return to_numpy(std::vector<int32_t>(p.slots_per_rank)); },
          [](PlacementLayout& p, py::handle v) {
            auto d = to_int32s(v, "slots_per_rank", INT32_MIN, INT32_MAX);
            expect_ndim("slots_per_rank", d.ndim(), 1);
            p.slots_per_rank = std::move(d.data);
          })
      .def_property(
          "phy2log", [](const PlacementLayout& p) { return rows_to_list(p.phy2log); },
          [](PlacementLayout& p, py::handle v) { p.phy2log = int32_rows(v, "phy2log"); })
      .def_property(
          "shares", [](const PlacementLayout& p) { return rows_to_list(p.shares); },
          [](PlacementLayout& p, py::handle v) { p.shares = double_rows(v, "shares"); })
      .def("__repr__", [](const PlacementLayout& p) {
        return str_cat("<PlacementLayout ", p.num_layers(), " layers, ", p.num_ranks, " ranks, ", p.num_experts,
                       " experts", p.shares.empty() ? "" : ", with shares", ">");
      });

  m.def(
      "validate",
      [](const PlacementLayout& layout, py::object rules, size_t max_violations) {
        return validate(layout, rules_or_default(rules), max_violations);
      },
      py::arg("layout"), py::arg("rules") = py::none(), py::arg("max_violations") = 1000,
      "Every violation of a layout (structure always; rules when given), in layer order, as a list of "
      "Violation. Stops after max_violations (the last entry then says how many more there were).");
}

void bind_placement(py::module_& m) {
  py::class_<Placement>(m, "Placement",
                        "For every MoE layer, which expert each global slot (rank * slots_per_rank(layer) + slot) "
                        "holds; -1 marks an empty slot. Always structurally valid and immutable, so the arrays it "
                        "returns from phy2log() and replicas() are read-only views of its memory (no copy).")
      .def(py::init([](py::handle phy2log, int32_t num_ranks, int32_t num_experts, py::object shares,
                       py::object rules) {
             return unwrap(Placement::create(layout_from_rows(int32_rows(phy2log, "phy2log"), num_ranks, num_experts,
                                                              std::move(shares)),
                                             rules_or_default(rules)));
           }),
           py::arg("phy2log"), py::kw_only(), py::arg("num_ranks"), py::arg("num_experts"),
           py::arg("shares") = py::none(), py::arg("rules") = py::none(),
           "phy2log: [num_layers, num_ranks * slots_per_rank] integer array, or a list of 1-D arrays for "
           "layer-wise uneven placements; slots_per_rank[l] = len(phy2log[l]) / num_ranks. shares: optional "
           "per-slot fractions of each expert's load, same shape. Raises ValueError listing the violations.")
      .def_static(
          "from_layout",
          [](const PlacementLayout& layout, py::object rules) {
            return unwrap(Placement::create(layout, rules_or_default(rules)));
          },
          py::arg("layout"), py::arg("rules") = py::none(), "Validates a PlacementLayout into a Placement.")
      .def_static(
          "contiguous",
          [](int32_t num_layers, int32_t num_ranks, int32_t num_experts, int32_t slots_per_rank) {
            return unwrap(Placement::contiguous(num_layers, num_ranks, num_experts, slots_per_rank));
          },
          py::arg("num_layers"), py::arg("num_ranks"), py::arg("num_experts"), py::arg("slots_per_rank"),
          "Experts in order over ranks (rank r holds experts [r*E/R, (r+1)*E/R)), then empty slots.")
      .def_property_readonly("num_layers", &Placement::num_layers)
      .def_property_readonly("num_ranks", &Placement::num_ranks)
      .def_property_readonly("num_experts", &Placement::num_experts)
      .def_property_readonly("is_uniform", &Placement::is_uniform, "Same slots_per_rank in every layer.")
      .def_property_readonly("has_shares", &Placement::has_shares)
      .def_property_readonly("checksum", &Placement::checksum,
                             "FNV-1a 64 over sizes, phy2log and shares; equal on every rank for equal placements.")
      .def(
          "slots_per_rank",
          [](const Placement& p, LayerId l) {
            check_placement_layer(p, l);
            return p.slots_per_rank(l);
          },
          py::arg("layer"))
      .def(
          "num_slots",
          [](const Placement& p, LayerId l) {
            check_placement_layer(p, l);
            return p.num_slots(l);
          },
          py::arg("layer"), "num_ranks * slots_per_rank(layer).")
      .def(
          "num_replicas",
          [](const Placement& p, LayerId l) {
            check_placement_layer(p, l);
            return p.num_replicas(l);
          },
          py::arg("layer"), "Non-empty slots of a layer.")
      .def(
          "phy2log",
          [](py::object self, LayerId l) {
            const auto& p = self.cast<const Placement&>();
            check_placement_layer(p, l);
            return readonly_view(p.phy2log(l), self);
          },
          py::arg("layer"), "Read-only int32 view [num_slots(layer)]: the expert in each global slot (-1 empty).")
      .def(
          "phy2log_matrix",
          [](const Placement& p) {
            int32_t width = 0;
            for (LayerId l = 0; l < p.num_layers(); ++l) width = std::max(width, p.num_slots(l));
            std::vector<int32_t> out(static_cast<size_t>(p.num_layers()) * static_cast<size_t>(width), kEmptySlot);
            for (LayerId l = 0; l < p.num_layers(); ++l) {
              auto row = p.phy2log(l);
              std::copy(row.begin(), row.end(), out.begin() + static_cast<std::ptrdiff_t>(l) * width);
            }
            return to_numpy(std::move(out), {p.num_layers(), width});
          },
          "[num_layers, max slots] int32 copy of phy2log, -1 padded (the shape DeepSeek EPLB returns).")
      .def(
          "replicas",
          [](py::object self, LayerId l, ExpertId e) {
            const auto& p = self.cast<const Placement&>();
            check_placement_layer(p, l);
            check_index("expert", e, p.num_experts());
            return readonly_view(p.replicas(l, e), self);
          },
          py::arg("layer"), py::arg("expert"), "Read-only int32 view: global slots holding the expert, ascending.")
      .def(
          "replica_count",
          [](const Placement& p, LayerId l, ExpertId e) {
            check_placement_layer(p, l);
            check_index("expert", e, p.num_experts());
            return p.replica_count(l, e);
          },
          py::arg("layer"), py::arg("expert"))
      .def(
          "replica_counts",
          [](const Placement& p) {
            std::vector<int32_t> out;
            out.reserve(static_cast<size_t>(p.num_layers()) * static_cast<size_t>(p.num_experts()));
            for (LayerId l = 0; l < p.num_layers(); ++l)
              for (ExpertId e = 0; e < p.num_experts(); ++e) out.push_back(p.replica_count(l, e));
            return to_numpy(std::move(out), {p.num_layers(), p.num_experts()});
          },
          "[num_layers, num_experts] int32: replicas of every expert (DeepSeek's logcnt).")
      .def(
          "expert_at",
          [](const Placement& p, LayerId l, GlobalSlot g) {
            check_placement_layer(p, l);
            check_index("global slot", g, p.num_slots(l));
            return p.expert_at(l, g);
          },
          py::arg("layer"), py::arg("global_slot"))
      .def(
          "global_slot",
          [](const Placement& p, LayerId l, RankId r, SlotId s) {
            check_placement_layer(p, l);
            check_index("rank", r, p.num_ranks());
            check_index("slot", s, p.slots_per_rank(l));
            return p.global_slot(l, r, s);
          },
          py::arg("layer"), py::arg("rank"), py::arg("slot"))
      .def(
          "rank_of",
          [](const Placement& p, LayerId l, GlobalSlot g) {
            check_placement_layer(p, l);
            check_index("global slot", g, p.num_slots(l));
            return p.rank_of(l, g);
          },
          py::arg("layer"), py::arg("global_slot"))
      .def(
          "local_slot",
          [](const Placement& p, LayerId l, GlobalSlot g) {
            check_placement_layer(p, l);
            check_index("global slot", g, p.num_slots(l));
            return p.local_slot(l, g);
          },
          py::arg("layer"), py::arg("global_slot"))
      .def(
          "shares",
          [](py::object self, LayerId l) {
            const auto& p = self.cast<const Placement&>();
            check_placement_layer(p, l);
            return readonly_view(p.shares(l), self);
          },
          py::arg("layer"), "Read-only float64 view of the explicit shares of a layer (empty without shares).")
      .def(
          "share_of",
          [](const Placement& p, LayerId l, GlobalSlot g) {
            check_placement_layer(p, l);
            check_index("global slot", g, p.num_slots(l));
            return p.share_of(l, g);
          },
          py::arg("layer"), py::arg("global_slot"),
          "Share of its expert's load that the slot serves (explicit, or 1/replica_count; 0 when empty).")
      .def_property_readonly(
          "layout", [](const Placement& p) { return p.layout(); }, "A PlacementLayout copy of this placement.")
      .def("without_shares", &Placement::without_shares, "The same placement with an even split.")
      .def(
          "validate", [](const Placement& p, py::object rules) { return p.validate(rules_or_default(rules)); },
          py::arg("rules") = py::none(), "Violations of optional rules (duplicates, caps) as a list.")
      .def("summary", &Placement::summary)
      .def("__eq__", [](const Placement& a, const Placement& b) { return a == b; })
      .def("__repr__",
           [](const Placement& p) { return str_cat("<Placement ", p.summary(), ", checksum ", hex64(p.checksum()), ">"); })
      .def(py::pickle(
          [](const Placement& p) {
            const auto& l = p.layout();
            return py::make_tuple(l.num_ranks, l.num_experts, rows_to_list(l.phy2log), rows_to_list(l.shares));
          },
          [](py::tuple t) {
            if (t.size() != 4) fail(StatusCode::kInvalidArgument, "Placement pickle: expected a 4-tuple");
            auto rows = int32_rows(t[2], "phy2log");
            py::object shares = py::len(t[3]) == 0 ? py::none() : py::object(t[3]);
            return unwrap(Placement::create(
                layout_from_rows(std::move(rows), t[0].cast<int32_t>(), t[1].cast<int32_t>(), shares),
                ValidationRules{.require_every_expert = false}));
          }));
}

void bind_load_matrix(py::module_& m) {
  py::class_<LoadMatrix>(m, "LoadMatrix",
                         "Tokens routed to each expert of each layer, shape [num_layers, num_experts]. Kind "
                         "'counts' (exact int64) or 'weights' (non-negative float64). Mutable, so values() and "
                         "counts() return copies.")
      .def(py::init([](py::handle data) { return load_from_object(data); }), py::arg("data"),
           "From a 2-D array: integer or bool dtype gives counts, float dtype gives weights.")
      .def_static(
          "zeros",
          [](int32_t num_layers, int32_t num_experts, const std::string& kind) {
            return unwrap(LoadMatrix::zeros(num_layers, num_experts, parse_kind(kind)));
          },
          py::arg("num_layers"), py::arg("num_experts"), py::arg("kind") = "counts")
      .def_static("from_counts", &load_from_counts, py::arg("counts"), "From a 2-D integer array (each >= 0).")
      .def_static("from_weights", &load_from_weights, py::arg("weights"),
                  "From a 2-D numeric array (each finite and >= 0).")
      .def_property_readonly("num_layers", &LoadMatrix::num_layers)
      .def_property_readonly("num_experts", &LoadMatrix::num_experts)
      .def_property_readonly("shape", [](const LoadMatrix& l) { return py::make_tuple(l.num_layers(), l.num_experts()); })
      .def_property_readonly("kind", [](const LoadMatrix& l) { return std::string(kind_name(l.kind())); })
      .def_property_readonly("is_counts", &LoadMatrix::is_counts)
      .def("values", &load_values, "[num_layers, num_experts] float64 copy of the loads.")
      .def("counts", &load_counts, "[num_layers, num_experts] int64 copy of the exact counts, or None for weights.")
      .def(
          "__array__",
          [](const LoadMatrix& l, py::object dtype) {
            py::array a = load_values(l);
            return dtype.is_none() ? a : py::array(a.attr("astype")(dtype));
          },
          py::arg("dtype") = py::none(), "numpy.asarray(load) gives the float64 values.")
      .def(
          "row",
          [](const LoadMatrix& l, LayerId layer) {
            check_index("layer", layer, l.num_layers());
            auto r = l.row(layer);
            return to_numpy(std::vector<double>(r.begin(), r.end()));
          },
          py::arg("layer"), "[num_experts] float64 copy of a layer's loads.")
      .def(
          "at",
          [](const LoadMatrix& l, LayerId layer, ExpertId e) {
            check_index("layer", layer, l.num_layers());
            check_index("expert", e, l.num_experts());
            return l.at(layer, e);
          },
          py::arg("layer"), py::arg("expert"))
      .def(
          "layer_total",
          [](const LoadMatrix& l, LayerId layer) {
            check_index("layer", layer, l.num_layers());
            return l.layer_total(layer);
          },
          py::arg("layer"))
      .def(
          "set_count", [](LoadMatrix& l, LayerId layer, ExpertId e, int64_t c) { check(l.set_count(layer, e, c)); },
          py::arg("layer"), py::arg("expert"), py::arg("count"))
      .def(
          "set_weight", [](LoadMatrix& l, LayerId layer, ExpertId e, double v) { check(l.set_weight(layer, e, v)); },
          py::arg("layer"), py::arg("expert"), py::arg("value"), "Sets one load; the matrix becomes 'weights'.")
      .def(
          "add", [](LoadMatrix& l, const LoadMatrix& other) { check(l.add(other)); }, py::arg("other"),
          "Element-wise sum in place; counts + counts stays exact (int64 overflow raises ValueError).")
      .def(
          "scale", [](LoadMatrix& l, double f) { check(l.scale(f)); }, py::arg("factor"),
          "Multiplies every load by factor (finite, >= 0); the matrix becomes 'weights'.")
      .def(
          "layers", [](const LoadMatrix& l, LayerId first, int32_t count) { return unwrap(l.layers(first, count)); },
          py::arg("first"), py::arg("count"), "Layers [first, first + count) as a new matrix.")
      .def("__eq__", [](const LoadMatrix& a, const LoadMatrix& b) { return a == b; })
      .def("__repr__", &load_repr)
      .def(py::pickle(
          [](const LoadMatrix& l) { return l.is_counts() ? load_counts(l) : py::object(load_values(l)); },
          [](py::object data) { return load_from_object(data); }));
}

void bind_expert_map(py::module_& m) {
  py::class_<LayerExpertMap>(m, "LayerExpertMap",
                             "One layer of an ExpertMap. Arrays are read-only views (no copy).")
      .def_property_readonly("phy2log",
                             [](py::object self) {
                               const auto& lm = self.cast<const LayerExpertMap&>();
                               return readonly_view(std::span<const int32_t>(lm.phy2log), self);
                             })
      .def_property_readonly("logcnt",
                             [](py::object self) {
                               const auto& lm = self.cast<const LayerExpertMap&>();
                               return readonly_view(std::span<const int32_t>(lm.logcnt), self);
                             })
      .def_property_readonly(
          "log2phy",
          [](py::object self) {
            const auto& lm = self.cast<const LayerExpertMap&>();
            return readonly_view(lm.log2phy.data(),
                                 {static_cast<py::ssize_t>(lm.logcnt.size()), static_cast<py::ssize_t>(lm.max_replicas)},
                                 self);
          },
          "[num_experts, max_replicas] int32, -1 padded.")
      .def_readonly("max_replicas", &LayerExpertMap::max_replicas)
      .def(
          "replicas_of",
          [](py::object self, ExpertId e) {
            const auto& lm = self.cast<const LayerExpertMap&>();
            check_index("expert", e, static_cast<int64_t>(lm.logcnt.size()));
            return readonly_view(lm.replicas_of(e), self);
          },
          py::arg("expert"), "Global slots of the expert's replicas, in the map's replica order.")
      .def("__repr__", [](const LayerExpertMap& lm) {
        return str_cat("<LayerExpertMap ", lm.phy2log.size(), " slots, ", lm.logcnt.size(), " experts, up to ",
                       lm.max_replicas, " replicas>");
      });

  py::class_<ExpertMap>(m, "ExpertMap",
                        "The routing view of a placement in DeepSeek/vLLM terms: phy2log, log2phy, logcnt. "
                        "Immutable.")
      .def(py::init([](const Placement& p, const std::string& order, py::object replica_rank) {
             ReplicaOrder o = ReplicaOrder::kBySlot;
             if (order == "creation") {
               o = ReplicaOrder::kByCreation;
             } else if (order != "slot") {
               fail(StatusCode::kInvalidArgument, str_cat("expert map order must be 'slot' or 'creation', got '",
                                                          order, "'"));
             }
             std::vector<std::vector<int32_t>> rr;
             if (!replica_rank.is_none()) rr = int32_rows(replica_rank, "replica_rank");
             return unwrap(ExpertMap::from_placement(p, o, rr));
           }),
           py::arg("placement"), py::arg("order") = "slot", py::arg("replica_rank") = py::none(),
           "order 'slot' lists replicas by ascending global slot (vLLM); 'creation' by replica_rank[l][g], the "
           "creation index of slot g's replica (DeepSeek EPLB).")
      .def_property_readonly("num_layers", &ExpertMap::num_layers)
      .def_property_readonly("num_experts", &ExpertMap::num_experts)
      .def_property_readonly("max_replicas", &ExpertMap::max_replicas)
      .def_property_readonly("max_slots", &ExpertMap::max_slots)
      .def(
          "layer",
          [](const ExpertMap& em, LayerId l) -> const LayerExpertMap& {
            check_index("layer", l, em.num_layers());
            return em.layer(l);
          },
          py::arg("layer"), py::return_value_policy::reference_internal)
      .def(
          "phy2log", [](const ExpertMap& em) { return to_numpy(em.padded_phy2log(), {em.num_layers(), em.max_slots()}); },
          "[num_layers, max_slots] int32, -1 padded.")
      .def(
          "log2phy",
          [](const ExpertMap& em) {
            return to_numpy(em.padded_log2phy(), {em.num_layers(), em.num_experts(), em.max_replicas()});
          },
          "[num_layers, num_experts, max_replicas] int32, -1 padded.")
      .def(
          "logcnt", [](const ExpertMap& em) { return to_numpy(em.logcnt_matrix(), {em.num_layers(), em.num_experts()}); },
          "[num_layers, num_experts] int32 replica counts.")
      .def("__repr__", [](const ExpertMap& em) {
        return str_cat("<ExpertMap ", em.num_layers(), " layers, ", em.num_experts(), " experts, up to ",
                       em.max_slots(), " slots, up to ", em.max_replicas(), " replicas>");
      });
}

}  // namespace

ValidationRules rules_or_default(const py::object& rules) {
  return rules.is_none() ? ValidationRules{} : rules.cast<ValidationRules>();
}

LoadMatrix load_from_object(py::handle data) {
  if (py::isinstance<LoadMatrix>(data)) return data.cast<LoadMatrix>();
  py::array arr = py::module_::import("numpy").attr("asarray")(data);
  const char kind = arr.dtype().kind();
  return (kind == 'i' || kind == 'u' || kind == 'b') ? load_from_counts(arr) : load_from_weights(arr);
}

void bind_core(py::module_& m) {
  bind_topology(m);
  bind_validation(m);
  bind_placement(m);
  bind_load_matrix(m);
  bind_expert_map(m);
}

}  // namespace omni::py_support
