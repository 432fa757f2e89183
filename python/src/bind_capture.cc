// Bindings of the capture module: ActivationRecorder and its windows.
//
// record() is the engine's hot path: an int32, C-ordered array (or CPU tensor)
// is read in place, anything else is converted once (int64 ids outside int32
// become invalid ids, never wrapped onto valid ones). The GIL is released while
// the library counts, so several Python threads may record at once.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bindings.h"
#include "omniplacement/capture/activation_recorder.h"
#include "omniplacement/core/core.h"
#include "py_support.h"

namespace omni::py_support {

namespace {

IdSpace parse_id_space(const std::string& s) {
  if (s == "expert") return IdSpace::kLogicalExpert;
  if (s == "slot") return IdSpace::kGlobalSlot;
  fail(StatusCode::kInvalidArgument, str_cat("id_space must be 'expert' or 'slot', got '", s, "'"));
}

}  // namespace

void bind_capture(py::module_& m) {
  py::class_<CaptureWindow>(m, "CaptureWindow",
                            "Counts recorded between two take_window() calls: `load` (LoadMatrix of exact counts, "
                            "[num_layers, num_ids]), `gate_weights` (when tracked), step range and diagnostics.")
      .def_readonly("index", &CaptureWindow::index)
      .def_readonly("step_begin", &CaptureWindow::step_begin)
      .def_readonly("step_end", &CaptureWindow::step_end)
      .def_readonly("load", &CaptureWindow::load)
      .def_readonly("gate_weights", &CaptureWindow::gate_weights)
      .def_readonly("num_records", &CaptureWindow::num_records)
      .def_readonly("num_padding", &CaptureWindow::num_padding)
      .def_readonly("num_invalid", &CaptureWindow::num_invalid)
      .def_readonly("num_rejected_calls", &CaptureWindow::num_rejected_calls)
      .def_readonly("invalid_layer", &CaptureWindow::invalid_layer)
      .def_readonly("invalid_id", &CaptureWindow::invalid_id)
      .def_readonly("num_overflow_records", &CaptureWindow::num_overflow_records)
      .def(
          "check", [](const CaptureWindow& w) { check(w.check()); },
          "Raises ValueError naming the invalid ids (count, an example, the valid range) when there were any.")
      .def("__repr__", [](const CaptureWindow& w) {
        return str_cat("<CaptureWindow ", w.index, ": steps [", w.step_begin, ", ", w.step_end, "), ",
                       w.num_records, " records, ", w.num_invalid, " invalid ids>");
      });

  py::class_<ActivationRecorder>(m, "ActivationRecorder",
                                 "Counts the experts (or global slots) every MoE layer activates, lock-free, and "
                                 "hands the counts out in windows. record() may be called from any number of "
                                 "threads (it releases the GIL); take_window() and the others from any thread.")
      .def(py::init([](int32_t num_layers, int32_t num_ids, const std::string& id_space, py::object ids_per_layer,
                       int32_t num_shards, bool track_gate_weights, int32_t history, double ema_decay,
                       int32_t coactivation_every, int32_t top_k) {
             RecorderConfig c;
             c.num_layers = num_layers;
             c.num_ids = num_ids;
             c.id_space = parse_id_space(id_space);
             if (!ids_per_layer.is_none()) {
               auto d = to_int32s(ids_per_layer, "ids_per_layer", INT32_MIN, INT32_MAX);
               expect_ndim("ids_per_layer", d.ndim(), 1);
               c.ids_per_layer = std::move(d.data);
             }
             c.num_shards = num_shards;
             c.track_gate_weights = track_gate_weights;
             c.history = history;
             c.ema_decay = ema_decay;
             c.coactivation_every = coactivation_every;
             c.top_k = top_k;
             return unwrap(ActivationRecorder::create(std::move(c)));
           }),
           py::arg("num_layers"), py::arg("num_ids"), py::kw_only(), py::arg("id_space") = "expert",
           py::arg("ids_per_layer") = py::none(), py::arg("num_shards") = 0, py::arg("track_gate_weights") = false,
           py::arg("history") = 16, py::arg("ema_decay") = 0.0, py::arg("coactivation_every") = 0,
           py::arg("top_k") = 0,
           "num_ids: experts (id_space='expert') or the largest number of global slots of a layer "
           "(id_space='slot', vLLM's physical expert ids). See RecorderConfig in "
           "include/omniplacement/capture/activation_recorder.h for the other fields.")
      .def(
          "record",
          [](ActivationRecorder& r, LayerId layer, py::handle topk_ids, py::object topk_weights) {
            std::vector<int32_t> storage;
            py::array ids = as_numpy(topk_ids);
            const std::span<const int32_t> view = ids_view(ids, storage);
            if (topk_weights.is_none()) {
              py::gil_scoped_release release;
              r.record(layer, view);
              return;
            }
            auto w = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(as_numpy(topk_weights));
            if (!w) fail(StatusCode::kInvalidArgument, "record: topk_weights is not a numeric array");
            const std::span<const float> weights(w.data(), static_cast<size_t>(w.size()));
            py::gil_scoped_release release;
            r.record(layer, view, weights);
          },
          py::arg("layer"), py::arg("topk_ids"), py::arg("topk_weights") = py::none(),
          "Counts the ids of one MoE layer's batch (any shape, e.g. [num_tokens, top_k]; -1 is padding). "
          "topk_weights: the gate weights, same number of elements (summed when track_gate_weights). Never "
          "raises for bad ids: they are counted as invalid and reported by the window's check().")
      .def("note_step", &ActivationRecorder::note_step, py::arg("step"),
           "The engine's current step, stamped on windows.")
      .def("take_window", &ActivationRecorder::take_window, py::call_guard<py::gil_scoped_release>(),
           "Everything recorded since the previous call, as a CaptureWindow; starts a new window.")
      .def("recent_windows", &ActivationRecorder::recent_windows, "Up to `history` last windows, oldest first.")
      .def("recent_sum", &ActivationRecorder::recent_sum, "Sum of the recent windows (LoadMatrix of counts).")
      .def("ema", &ActivationRecorder::ema, "Exponential moving average of the windows (LoadMatrix of weights).")
      .def(
          "take_coactivation",
          [](ActivationRecorder& r) {
            CoactivationCounts c = r.take_coactivation();
            // Dense symmetric [num_layers, num_ids, num_ids] matrix: what Planner.plan(coactivation=) takes.
            const auto L = static_cast<size_t>(c.num_layers), n = static_cast<size_t>(c.num_ids);
            std::vector<int64_t> dense(L * n * n, 0);
            for (size_t l = 0; l < L; ++l)
              for (int32_t a = 0; a < c.num_ids; ++a)
                for (int32_t b = a + 1; b < c.num_ids; ++b) {
                  const int64_t v = c.pair(static_cast<LayerId>(l), a, b);
                  dense[(l * n + static_cast<size_t>(a)) * n + static_cast<size_t>(b)] = v;
                  dense[(l * n + static_cast<size_t>(b)) * n + static_cast<size_t>(a)] = v;
                }
            return py::make_tuple(
                to_numpy(std::move(dense), {c.num_layers, c.num_ids, c.num_ids}),
                to_numpy(std::move(c.sampled_tokens)));
          },
          "Sampled co-activation since the previous call: (pairs [num_layers, num_ids, num_ids] int64, symmetric, "
          "zero diagonal; sampled_tokens [num_layers]). Empty arrays when sampling is off.")
      .def_property_readonly("num_layers", [](const ActivationRecorder& r) { return r.config().num_layers; })
      .def_property_readonly("num_ids", [](const ActivationRecorder& r) { return r.config().num_ids; })
      .def_property_readonly("num_shards", &ActivationRecorder::num_shards)
      .def("__repr__", [](const ActivationRecorder& r) {
        const auto& c = r.config();
        return str_cat("<ActivationRecorder ", c.num_layers, " layers x ", c.num_ids,
                       c.id_space == IdSpace::kLogicalExpert ? " experts" : " slots", ", ", r.num_shards(),
                       " shards, ema decay ", c.ema_decay, ">");
      });
}

}  // namespace omni::py_support
