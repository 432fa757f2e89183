// Bindings of the io module, in the submodule omniplacement._omni.io (re-exported
// as omniplacement.io): placement files (our JSON, omni-infer .npy/.txt/.bin
// patterns), load files (.npy, .csv, trace CSVs, activation dumps), routing
// traces and the YAML configuration. Function names are the C++ ones.
//
// Plain .npy arrays need no binding: numpy.load / numpy.save read and write
// what the library reads and writes (int32/int64/float32/float64, C order).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "omniplacement/core/core.h"
#include "omniplacement/io/activation_dump.h"
#include "omniplacement/io/dump_writer.h"
#include "omniplacement/io/config.h"
#include "omniplacement/io/file_kind.h"
#include "omniplacement/io/load_file.h"
#include "omniplacement/io/pattern.h"
#include "omniplacement/io/placement_file.h"
#include "omniplacement/io/trace.h"
#include "py_support.h"

namespace omni::py_support {

namespace {

NpyDtype parse_npy_dtype(const std::string& d) {
  if (d == "int32") return NpyDtype::kInt32;
  if (d == "int64") return NpyDtype::kInt64;
  fail(StatusCode::kInvalidArgument, str_cat("npy_dtype of a pattern must be 'int32' or 'int64', got '", d, "'"));
}

void bind_trace(py::module_& io) {
  py::class_<TraceWindow>(io, "TraceWindow",
                          "One window of a routing trace: `load` [num_layers, num_experts] counts, with its model, "
                          "group (domain or dataset) and iteration.")
      .def_readonly("model", &TraceWindow::model)
      .def_readonly("group", &TraceWindow::group)
      .def_readonly("iteration", &TraceWindow::iteration)
      .def_readonly("load", &TraceWindow::load)
      .def_property_readonly("label", &TraceWindow::label)
      .def("__repr__", [](const TraceWindow& w) {
        return str_cat("<TraceWindow ", w.label(), ": ", w.load.num_layers(), " x ", w.load.num_experts(), ">");
      });

  py::class_<Trace>(io, "Trace",
                    "A routing trace CSV of data/traces (per-domain or per-iteration layout). Immutable.")
      .def_static(
          "read_csv", [](const std::string& path) { return unwrap(Trace::read_csv(path)); }, py::arg("path"))
      .def_static(
          "parse_csv", [](const std::string& text, const std::string& name) { return unwrap(Trace::parse_csv(text, name)); },
          py::arg("text"), py::arg("name") = "<trace>")
      .def_property_readonly("layout", [](const Trace& t) {
        return std::string(t.layout() == TraceLayout::kPerDomain ? "per-domain" : "per-iteration");
      })
      .def_property_readonly("num_layers", &Trace::num_layers)
      .def_property_readonly("num_experts", &Trace::num_experts)
      .def_property_readonly("windows", [](const Trace& t) { return t.windows(); }, "Every window, in file order.")
      .def(
          "select",
          [](const Trace& t, const std::string& selector) {
            return unwrap(t.select(unwrap(TraceSelector::parse(selector))));
          },
          py::arg("selector"), "The one window matching e.g. 'dataset=wikitext,iteration=3', as a LoadMatrix.")
      .def(
          "series",
          [](const Trace& t, const std::vector<std::string>& datasets, int32_t first, int32_t last) {
            return unwrap(t.windows(datasets, first, last));
          },
          py::arg("datasets"), py::arg("first_iteration") = 0, py::arg("last_iteration") = -1,
          "Per-iteration traces: the windows of each dataset in the order given, iterations ascending "
          "(last_iteration -1 = each dataset's last).")
      .def("__repr__", [](const Trace& t) {
        return str_cat("<Trace ", t.layout() == TraceLayout::kPerDomain ? "per-domain" : "per-iteration", ", ",
                       t.windows().size(), " windows of ", t.num_layers(), " x ", t.num_experts(), ">");
      });
}

void bind_config(py::module_& io) {
  py::class_<Config>(io, "Config",
                     "The YAML configuration: omni-infer's keys and OmniPlacement's (see "
                     "include/omniplacement/io/config.h for meanings and defaults).")
      .def(py::init<>())
      .def_readwrite("pattern_path", &Config::pattern_path)
      .def_readwrite("max_moe_layer_num", &Config::max_moe_layer_num)
      .def_readwrite("enable_dynamic", &Config::enable_dynamic)
      .def_readwrite("max_redundant_per_expert", &Config::max_redundant_per_expert)
      .def_readwrite("max_redundant_per_rank", &Config::max_redundant_per_rank)
      .def_readwrite("enable_dump", &Config::enable_dump)
      .def_readwrite("dump_dir", &Config::dump_dir)
      .def_readwrite("planner", &Config::planner)
      .def_readwrite("replan_interval_steps", &Config::replan_interval_steps)
      .def_readwrite("window_steps", &Config::window_steps)
      .def_readwrite("ema_decay", &Config::ema_decay)
      .def_readwrite("ranks_per_host", &Config::ranks_per_host)
      .def_readwrite("min_gain", &Config::min_gain)
      .def_readwrite("max_moves_per_rank", &Config::max_moves_per_rank)
      .def_readwrite("layers_per_commit", &Config::layers_per_commit)
      .def_readwrite("staging_bytes_per_rank", &Config::staging_bytes_per_rank)
      .def_readwrite("heartbeat_timeout_ms", &Config::heartbeat_timeout_ms)
      .def_readonly("warnings", &Config::warnings)
      .def("__eq__", [](const Config& a, const Config& b) { return a == b; })
      .def("__repr__", [](const Config& c) {
        return str_cat("<Config planner '", c.planner, "', pattern '", c.pattern_path, "', dynamic ",
                       c.enable_dynamic ? "on" : "off", ">");
      });
  io.def(
      "read_config",
      [](const std::string& path, bool allow_unknown_keys) {
        return unwrap(read_config(path, ConfigOptions{allow_unknown_keys}));
      },
      py::arg("path"), py::arg("allow_unknown_keys") = false,
      "Reads a YAML file; relative pattern_path and dump_dir are resolved against its folder.");
  io.def(
      "parse_config",
      [](const std::string& yaml, const std::string& name, bool allow_unknown_keys) {
        return unwrap(parse_config(yaml, name, ConfigOptions{allow_unknown_keys}));
      },
      py::arg("yaml"), py::arg("name") = "<config>", py::arg("allow_unknown_keys") = false);
  io.def("encode_config", &encode_config, py::arg("config"), "YAML text with every key.");
  io.def("config_keys", &config_keys, "Every key parse_config accepts, omni-infer's first.");
}

}  // namespace

void bind_io(py::module_& m) {
  py::module_ io = m.def_submodule("io", "File formats: placements, patterns, loads, dumps, traces, configuration.");
  io.def(
      "read_placement_file",
      [](const std::string& path, py::object rules) {
        PlacementFile f = unwrap(read_placement_file(path, rules_or_default(rules)));
        return py::make_tuple(std::move(f.placement), f.topology ? py::cast(*f.topology) : py::none());
      },
      py::arg("path"), py::arg("rules") = py::none(),
      "(Placement, Topology or None) from our .json or an omni-infer pattern (.npy/.txt/.bin), by extension.");
  io.def(
      "write_placement_file",
      [](const std::string& path, const Placement& p, const Topology* topology, const std::string& npy_dtype) {
        PlacementFile f{p, topology ? std::optional<Topology>(*topology) : std::nullopt};
        check(write_placement_file(path, f, parse_npy_dtype(npy_dtype)));
      },
      py::arg("path"), py::arg("placement"), py::arg("topology") = nullptr, py::arg("npy_dtype") = "int32",
      "Writes by extension; a pattern container cannot hold shares or a topology (refused).");
  io.def(
      "read_pattern", [](const std::string& path) { return unwrap(read_pattern(path)); }, py::arg("path"),
      "An omni-infer placement pattern (.npy/.txt/.bin, [ranks, layers, experts] 0/1) as a Placement.");
  io.def(
      "write_pattern",
      [](const std::string& path, const Placement& p, const std::string& npy_dtype) {
        check(write_pattern(path, p, parse_npy_dtype(npy_dtype)));
      },
      py::arg("path"), py::arg("placement"), py::arg("npy_dtype") = "int32");
  io.def(
      "read_load_file",
      [](const std::string& path, const std::string& selector, const Placement* placement_in_force) {
        return unwrap(read_load_file(path, selector, placement_in_force));
      },
      py::arg("path"), py::arg("selector") = "", py::arg("placement_in_force") = nullptr,
      "A LoadMatrix from .npy, .csv (plain, or a trace with a selector such as 'dataset=wikitext,iteration=3'), "
      "or a .txt activation dump (needs placement_in_force).");
  io.def(
      "write_load_file", [](const std::string& path, const LoadMatrix& load) { check(write_load_file(path, load)); },
      py::arg("path"), py::arg("load"), ".npy (int64 counts / float64 weights) or .csv, by extension.");
  io.def(
      "read_activation_dump",
      [](const std::string& path, const Placement& p) { return unwrap(read_activation_dump(path, p)); },
      py::arg("path"), py::arg("placement"),
      "Per-expert loads from an omni-infer activation dump (per-slot counts) under the placement in force.");
  io.def(
      "parse_activation_dump",
      [](const std::string& text, const std::string& name) {
        return rows_to_list(unwrap(parse_activation_dump(text, name)));
      },
      py::arg("text"), py::arg("name") = "<dump>", "Per-slot counts, one int64 array per layer.");
  io.def(
      "write_activation_dump",
      [](const std::string& path, py::handle slot_counts) {
        check(write_activation_dump(path, int64_rows(slot_counts, "slot_counts")));
      },
      py::arg("path"), py::arg("slot_counts"), "slot_counts: [L, slots] array or a list of per-layer arrays.");
  io.def(
      "loads_from_slot_counts",
      [](py::handle slot_counts, const Placement& p) {
        return unwrap(loads_from_slot_counts(int64_rows(slot_counts, "slot_counts"), p));
      },
      py::arg("slot_counts"), py::arg("placement"), "Per-expert loads from per-slot counts under a placement.");
  io.def(
      "detect_file_kind",
      [](const std::string& path, bool dump_context) {
        return std::string(file_kind_name(unwrap(detect_file_kind(path, dump_context))));
      },
      py::arg("path"), py::arg("dump_context") = false,
      "'placement', 'load', 'trace', 'activation dump' or 'config', from the extension and header.");
  io.def(
      "read_dump_dir",
      [](const std::string& dir) {
        py::list out;
        for (DumpWindow& w : unwrap(read_dump_dir(dir))) {
          py::dict d;
          d["window"] = w.meta.window;
          d["id_space"] = w.meta.id_space;
          d["step_begin"] = w.meta.step_begin;
          d["step_end"] = w.meta.step_end;
          d["epoch"] = w.meta.epoch;
          d["placement_checksum"] = w.meta.placement_checksum;
          d["rank"] = w.meta.rank;
          d["num_invalid"] = w.meta.num_invalid;
          d["json_path"] = w.json_path;
          d["load"] = std::move(w.load);
          out.append(std::move(d));
        }
        return out;
      },
      py::arg("dir"),
      "Every window of an activation dump folder (PlacementManager's enable_dump, DumpWriter) ordered by window: "
      "dicts with 'load' (LoadMatrix), 'window', 'step_begin', 'step_end', 'epoch', 'rank' (-1: aggregated), "
      "'num_invalid', 'id_space', 'placement_checksum', 'json_path'.");
  io.def(
      "read_dump_dir_load",
      [](const std::string& dir, const Placement* placement) { return unwrap(read_dump_dir_load(dir, placement)); },
      py::arg("dir"), py::arg("placement") = nullptr,
      "The sum of every window of a dump folder as per-expert loads (global-slot windows need the placement).");
  bind_trace(io);
  bind_config(io);
}

}  // namespace omni::py_support
