// Bindings of core's metrics: rank loads, lower bound, balance, duplicates and
// dispatch traffic. Loads are tokens (any consistent unit); arrays are float64.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "bindings.h"
#include "omniplacement/core/core.h"
#include "py_support.h"

namespace omni::py_support {

namespace {

SplitMode parse_mode(const std::string& mode) {
  if (mode == "shares") return SplitMode::kShares;
  if (mode == "even") return SplitMode::kEven;
  fail(StatusCode::kInvalidArgument, str_cat("split mode must be 'shares' or 'even', got '", mode, "'"));
}

// A 1-D vector of finite, non-negative loads.
std::vector<double> expert_loads_arg(py::handle obj, const char* what) {
  auto d = to_doubles(obj, what);
  expect_ndim(what, d.ndim(), 1);
  for (size_t i = 0; i < d.data.size(); ++i) {
    if (!(std::isfinite(d.data[i]) && d.data[i] >= 0)) {
      fail(StatusCode::kInvalidArgument, str_cat(what, "[", i, "] = ", d.data[i], " must be finite and >= 0"));
    }
  }
  return std::move(d.data);
}

void check_num_slots(int64_t num_slots, size_t num_experts) {
  if (num_slots < static_cast<int64_t>(num_experts) || num_slots > kMaxSlotsPerLayer) {
    fail(StatusCode::kInvalidArgument, str_cat("num_slots must be in [number of experts = ", num_experts, ", ",
                                               kMaxSlotsPerLayer, "], got ", num_slots));
  }
}

std::string layer_balance_repr(const LayerBalance& b) {
  return str_cat("<LayerBalance max/mean ", b.max_over_mean, ", imbalance ", b.imbalance, ", bound/mean ",
                 b.bound_over_mean, ", max rank ", b.max_rank, ">");
}

}  // namespace

void bind_metrics(py::module_& m) {
  py::class_<LayerBalance>(m, "LayerBalance",
                           "Balance of one layer (W = total load, mean = W / ranks): max_over_mean = max rank load "
                           "/ mean (1 is perfect), imbalance = (max - mean) / mean, balancedness = mean / max, "
                           "lower_bound (docs/REFERENCES.md section 6), excess = (max - lower_bound) / mean.")
      .def_readonly("total", &LayerBalance::total)
      .def_readonly("mean", &LayerBalance::mean)
      .def_readonly("max", &LayerBalance::max)
      .def_readonly("max_rank", &LayerBalance::max_rank)
      .def_readonly("max_over_mean", &LayerBalance::max_over_mean)
      .def_readonly("imbalance", &LayerBalance::imbalance)
      .def_readonly("balancedness", &LayerBalance::balancedness)
      .def_readonly("lower_bound", &LayerBalance::lower_bound)
      .def_readonly("bound_over_mean", &LayerBalance::bound_over_mean)
      .def_readonly("excess", &LayerBalance::excess)
      .def("__repr__", &layer_balance_repr);

  py::class_<PlacementBalance>(m, "PlacementBalance",
                               "Balance over all layers: per-layer LayerBalance in `layers`, means over layers, "
                               "vLLM's balancedness (sum of means / sum of maxima) and sum_max (what a step costs).")
      .def_readonly("layers", &PlacementBalance::layers)
      .def_readonly("mean_max_over_mean", &PlacementBalance::mean_max_over_mean)
      .def_readonly("mean_imbalance", &PlacementBalance::mean_imbalance)
      .def_readonly("balancedness", &PlacementBalance::balancedness)
      .def_readonly("sum_max", &PlacementBalance::sum_max)
      .def_readonly("sum_lower_bound", &PlacementBalance::sum_lower_bound)
      .def_readonly("mean_excess", &PlacementBalance::mean_excess)
      .def(
          "max_over_mean",
          [](const PlacementBalance& b) {
            std::vector<double> out;
            for (const auto& l : b.layers) out.push_back(l.max_over_mean);
            return to_numpy(std::move(out));
          },
          "[num_layers] float64: max_over_mean of every layer.")
      .def("__repr__", [](const PlacementBalance& b) {
        return str_cat("<PlacementBalance ", b.layers.size(), " layers, mean max/mean ", b.mean_max_over_mean,
                       ", mean imbalance ", b.mean_imbalance, ", balancedness ", b.balancedness, ">");
      });

  py::class_<TrafficSplit>(m, "TrafficSplit",
                           "Where dispatched tokens go under the nearest-replica rule, as fractions of `total` "
                           "tokens: same_rank (no transfer), same_host, cross_host.")
      .def_readonly("total", &TrafficSplit::total)
      .def_readonly("same_rank", &TrafficSplit::same_rank)
      .def_readonly("same_host", &TrafficSplit::same_host)
      .def_readonly("cross_host", &TrafficSplit::cross_host)
      .def("__repr__", [](const TrafficSplit& t) {
        return str_cat("<TrafficSplit total ", t.total, ": same rank ", t.same_rank, ", same host ", t.same_host,
                       ", cross host ", t.cross_host, ">");
      });

  m.def(
      "rank_loads",
      [](const Placement& p, const LoadMatrix& load, LayerId l, const std::string& mode) {
        return to_numpy(unwrap(rank_loads(p, load, l, parse_mode(mode))));
      },
      py::arg("placement"), py::arg("load"), py::arg("layer"), py::arg("mode") = "shares",
      "[num_ranks] float64: load of every rank in a layer; mode 'shares' uses the placement's shares when it has "
      "them, 'even' splits every expert evenly over its replicas.");
  m.def(
      "rank_loads",
      [](const Placement& p, LayerId l, py::handle expert_loads, py::object slot_shares) {
        const auto loads = to_doubles(expert_loads, "expert_loads");
        expect_ndim("expert_loads", loads.ndim(), 1);
        std::vector<double> shares;
        if (!slot_shares.is_none()) {
          auto d = to_doubles(slot_shares, "slot_shares");
          expect_ndim("slot_shares", d.ndim(), 1);
          shares = std::move(d.data);
        }
        return to_numpy(unwrap(rank_loads(p, l, loads.data, shares)));
      },
      py::arg("placement"), py::arg("layer"), py::arg("expert_loads"), py::arg("slot_shares") = py::none(),
      "The same from [num_experts] loads and optional [num_slots(layer)] shares.");
  m.def(
      "rank_load_matrix",
      [](const Placement& p, const LoadMatrix& load, const std::string& mode) {
        const SplitMode sm = parse_mode(mode);
        std::vector<double> out;
        out.reserve(static_cast<size_t>(p.num_layers()) * static_cast<size_t>(p.num_ranks()));
        for (LayerId l = 0; l < p.num_layers(); ++l) {
          auto row = unwrap(rank_loads(p, load, l, sm));
          out.insert(out.end(), row.begin(), row.end());
        }
        return to_numpy(std::move(out), {p.num_layers(), p.num_ranks()});
      },
      py::arg("placement"), py::arg("load"), py::arg("mode") = "shares",
      "[num_layers, num_ranks] float64: rank loads of every layer (what plot.rank_load_heatmap draws).");
  m.def(
      "lower_bound",
      [](py::handle expert_loads, int32_t num_ranks, int64_t num_slots) {
        const auto loads = expert_loads_arg(expert_loads, "expert_loads");
        if (num_ranks < 1) fail(StatusCode::kInvalidArgument, str_cat("num_ranks must be >= 1, got ", num_ranks));
        if (num_slots < 0 || num_slots > kMaxSlotsPerLayer) {
          fail(StatusCode::kInvalidArgument, str_cat("num_slots must be in [0, ", kMaxSlotsPerLayer, "], got ", num_slots));
        }
        return lower_bound(loads, num_ranks, num_slots);
      },
      py::arg("expert_loads"), py::arg("num_ranks"), py::arg("num_slots"),
      "Lower bound on the max rank load of one layer: max(W / R, water-filled max load / count).");
  m.def(
      "water_fill_counts",
      [](py::handle expert_loads, int64_t num_slots) {
        const auto loads = expert_loads_arg(expert_loads, "expert_loads");
        check_num_slots(num_slots, loads.size());
        return to_numpy(water_fill_counts(loads, num_slots));
      },
      py::arg("expert_loads"), py::arg("num_slots"),
      "[num_experts] int32 replica counts (each >= 1, sum num_slots) minimising max load / count; ties to the "
      "lowest expert id.");
  m.def(
      "balance_of",
      [](py::handle rank_loads, double lower_bound) {
        const auto loads = expert_loads_arg(rank_loads, "rank_loads");
        return balance_of(loads, lower_bound);
      },
      py::arg("rank_loads"), py::arg("lower_bound"), "LayerBalance from per-rank loads and a lower bound.");
  m.def(
      "layer_balance",
      [](const Placement& p, const LoadMatrix& load, LayerId l, const std::string& mode) {
        return unwrap(layer_balance(p, load, l, parse_mode(mode)));
      },
      py::arg("placement"), py::arg("load"), py::arg("layer"), py::arg("mode") = "shares");
  m.def(
      "placement_balance",
      [](const Placement& p, const LoadMatrix& load, const std::string& mode) {
        const SplitMode sm = parse_mode(mode);
        py::gil_scoped_release release;  // pure function of immutable inputs held by the caller
        return unwrap(placement_balance(p, load, sm));
      },
      py::arg("placement"), py::arg("load"), py::arg("mode") = "shares",
      "PlacementBalance over all layers; placement and load must agree on layers and experts.");
  m.def(
      "same_rank_duplicates",
      [](const Placement& p, py::object layer) {
        if (layer.is_none()) return same_rank_duplicates(p);
        const auto l = layer.cast<LayerId>();
        check_index("layer", l, p.num_layers());
        return same_rank_duplicates(p, l);
      },
      py::arg("placement"), py::arg("layer") = py::none(),
      "Replicas beyond the first of an expert on one rank (wasted replicas), in a layer or all layers.");
  m.def(
      "dispatch_traffic",
      [](const Placement& p, const LoadMatrix& load, const Topology& t, py::object layer) {
        if (layer.is_none()) return unwrap(dispatch_traffic(p, load, t));
        return unwrap(dispatch_traffic(p, load, t, layer.cast<LayerId>()));
      },
      py::arg("placement"), py::arg("load"), py::arg("topology"), py::arg("layer") = py::none(),
      "TrafficSplit of a layer, or of all layers, with tokens originating evenly on all ranks.");
}

}  // namespace omni::py_support
