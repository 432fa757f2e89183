// Bindings of the runtime module: ManagerOptions (PlacementManagerOptions),
// LocalCluster (runtime/local_cluster.h: N ranks in this process, each with its
// PlacementManager and host WeightStore, driven from Python the way an engine
// drives one manager per rank), and the epoch-commit agreement
// (commit_protocol.h: encode_vote, decide_votes), which omniplacement.torch runs
// over torch.distributed.
//
// Threads. The C++ LocalCluster owns one engine thread per rank and serialises
// the engine-side calls (step_boundary and dispatch_all run one task per rank
// on those threads; dispatch, read_slot and write_slot run on the calling
// thread); every call here releases the GIL while it runs. record() and the
// read-only calls may come from any Python thread; close() waits for the calls
// in progress.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings.h"
#include "omniplacement/core/core.h"
#include "omniplacement/runtime/commit_protocol.h"
#include "omniplacement/runtime/local_cluster.h"
#include "omniplacement/runtime/manager_config.h"
#include "omniplacement/runtime/placement_manager.h"
#include "py_support.h"

namespace omni::py_support {

namespace {

// omniplacement.LocalCluster: numpy and bytes in and out around a LocalCluster.
class PyLocalCluster {
 public:
  PyLocalCluster(const Placement& initial, py::handle slot_bytes, const PlacementManagerOptions& options,
                 py::object topology) {
    const int32_t R = initial.num_ranks(), L = initial.num_layers();
    const Topology topo = topology.is_none() ? unwrap(Topology::uniform(R, R)) : topology.cast<Topology>();
    std::vector<int64_t> bytes;
    if (py::isinstance<py::int_>(slot_bytes)) {
      bytes.assign(static_cast<size_t>(L), slot_bytes.cast<int64_t>());
    } else {
      auto d = to_int64s(slot_bytes, "slot_bytes");
      expect_ndim("slot_bytes", d.ndim(), 1);
      bytes = std::move(d.data);
    }
    LocalClusterOptions o;
    o.manager = options;
    py::gil_scoped_release release;
    cluster_ = unwrap(LocalCluster::create(initial, topo, std::move(bytes), std::move(o)));
  }

  void close() {
    py::gil_scoped_release release;
    cluster_->close();
  }

  int32_t num_ranks() const { return cluster_->num_ranks(); }
  const Placement& initial() const { return cluster_->initial(); }
  const PlacementManagerOptions& options() const { return cluster_->options().manager; }
  bool closed() const { return cluster_->closed(); }

  void record(RankId r, LayerId l, py::handle topk_ids) {
    check_index("rank", r, num_ranks());
    std::vector<int32_t> storage;
    py::array ids = as_numpy(topk_ids);
    const std::span<const int32_t> view = ids_view(ids, storage);
    py::gil_scoped_release release;
    check(cluster_->record(r, l, view));
  }

  py::array_t<int32_t> dispatch(RankId r, LayerId l, py::handle topk_ids) {
    check_index("rank", r, num_ranks());
    std::vector<int32_t> storage;
    py::array ids = as_numpy(topk_ids);
    const std::span<const int32_t> view = ids_view(ids, storage);
    std::vector<GlobalSlot> out(view.size());
    {
      py::gil_scoped_release release;
      check(cluster_->dispatch(r, l, view, out));
    }
    return reshape(std::move(out), ids);
  }

  py::list dispatch_all(LayerId l, const py::sequence& ids_per_rank) {
    const int32_t R = num_ranks();
    if (static_cast<int32_t>(py::len(ids_per_rank)) != R)
      fail(StatusCode::kInvalidArgument, str_cat("LocalCluster.dispatch_all: ", py::len(ids_per_rank),
                                                 " arrays of ids, expected one per rank (", R, ")"));
    std::vector<py::array> arrays;
    std::vector<std::vector<int32_t>> storage(static_cast<size_t>(R));
    std::vector<std::span<const int32_t>> views;
    std::vector<std::vector<GlobalSlot>> outs(static_cast<size_t>(R));
    std::vector<std::span<GlobalSlot>> out_views;
    for (RankId r = 0; r < R; ++r) {
      arrays.push_back(as_numpy(ids_per_rank[static_cast<size_t>(r)]));
      views.push_back(ids_view(arrays.back(), storage[static_cast<size_t>(r)]));
      outs[static_cast<size_t>(r)].resize(views.back().size());
      out_views.push_back(outs[static_cast<size_t>(r)]);
    }
    {
      py::gil_scoped_release release;
      check(cluster_->dispatch_all(l, views, out_views));
    }
    py::list result;
    for (RankId r = 0; r < R; ++r)
      result.append(reshape(std::move(outs[static_cast<size_t>(r)]), arrays[static_cast<size_t>(r)]));
    return result;
  }

  void step_boundary(int64_t step) {
    py::gil_scoped_release release;
    check(cluster_->step_boundary(step));
  }

  PlacementManagerStats stats(RankId r) {
    check_index("rank", r, num_ranks());
    py::gil_scoped_release release;
    return unwrap(cluster_->stats(r));
  }
  std::shared_ptr<const RoutingSnapshot> snapshot(RankId r) {
    check_index("rank", r, num_ranks());
    py::gil_scoped_release release;
    return unwrap(cluster_->snapshot(r));
  }

  void flush_dumps() {
    py::gil_scoped_release release;
    check(cluster_->flush_dumps());
  }

  py::array_t<uint8_t> read_slot(RankId r, LayerId l, SlotId s) {
    check_index("rank", r, num_ranks());
    check_index("layer", l, initial().num_layers());
    std::vector<uint8_t> out(static_cast<size_t>(cluster_->slot_bytes(l)));
    {
      py::gil_scoped_release release;
      check(cluster_->read_slot(r, l, s, 0, std::as_writable_bytes(std::span<uint8_t>(out))));
    }
    return to_numpy(std::move(out));
  }

  void write_slot(RankId r, LayerId l, SlotId s, py::handle data, int64_t offset) {
    check_index("rank", r, num_ranks());
    // Raw bytes of any C-contiguous array (numpy, CPU tensor) or bytes object.
    py::array arr = py::isinstance<py::bytes>(data)
                        ? py::array(py::dtype("uint8"), {static_cast<py::ssize_t>(py::len(data))},
                                    PyBytes_AsString(data.ptr()))
                        : py::array::ensure(as_numpy(data), py::array::c_style);
    if (!arr) fail(StatusCode::kInvalidArgument, "write_slot: data is not bytes or an array");
    const auto bytes = std::span(static_cast<const std::byte*>(arr.data()), static_cast<size_t>(arr.nbytes()));
    py::gil_scoped_release release;
    check(cluster_->write_slot(r, l, s, offset, bytes));
  }

  int64_t slot_bytes(LayerId l) const {
    check_index("layer", l, initial().num_layers());
    return cluster_->slot_bytes(l);
  }

 private:
  // Slots in the shape of the ids they were computed from.
  static py::array_t<int32_t> reshape(std::vector<GlobalSlot>&& out, const py::array& like) {
    std::vector<py::ssize_t> shape(like.shape(), like.shape() + like.ndim());
    if (shape.empty()) shape.push_back(static_cast<py::ssize_t>(out.size()));
    return to_numpy(std::move(out), std::move(shape));
  }

  std::unique_ptr<LocalCluster> cluster_;
};

py::dict stats_dict(const PlacementManagerStats& s) {
  py::dict d;
#define OMNI_PY_STAT(f) d[#f] = s.f
  OMNI_PY_STAT(steps);
  OMNI_PY_STAT(epoch);
  OMNI_PY_STAT(placement_checksum);
  OMNI_PY_STAT(rounds_started);
  OMNI_PY_STAT(rounds_completed);
  OMNI_PY_STAT(rounds_no_change);
  OMNI_PY_STAT(rounds_aborted);
  OMNI_PY_STAT(last_abort);
  OMNI_PY_STAT(batches_committed);
  OMNI_PY_STAT(experts_moved);
  OMNI_PY_STAT(bytes_moved);
  OMNI_PY_STAT(bytes_received);
  OMNI_PY_STAT(agreement_collectives);
  OMNI_PY_STAT(shift_checks);
  OMNI_PY_STAT(shift_rounds);
  OMNI_PY_STAT(shift_collectives);
  OMNI_PY_STAT(shift_check_seconds);
  OMNI_PY_STAT(step_boundary_seconds);
  OMNI_PY_STAT(agreement_seconds);
  OMNI_PY_STAT(commit_seconds);
  OMNI_PY_STAT(staging_copy_seconds);
  OMNI_PY_STAT(planning_seconds);
  OMNI_PY_STAT(transfer_seconds);
  OMNI_PY_STAT(last_predicted_before);
  OMNI_PY_STAT(last_predicted_after);
  OMNI_PY_STAT(dumps_queued);
  OMNI_PY_STAT(dumps_written);
  OMNI_PY_STAT(dumps_dropped);
  OMNI_PY_STAT(dumps_failed);
#undef OMNI_PY_STAT
  return d;
}

std::string mode_name(DispatchMode m) { return m == DispatchMode::kShares ? "shares" : "per-batch"; }

DispatchMode parse_mode(const std::string& s) {
  if (s == "shares") return DispatchMode::kShares;
  if (s == "per-batch") return DispatchMode::kPerBatch;
  fail(StatusCode::kInvalidArgument, str_cat("dispatch_mode must be 'shares' or 'per-batch', got '", s, "'"));
}

std::chrono::milliseconds to_ms(int64_t ms, const char* what) {
  if (ms < 0) fail(StatusCode::kInvalidArgument, str_cat(what, " must be >= 0, got ", ms));
  return std::chrono::milliseconds(ms);
}

}  // namespace

void bind_commit_protocol(py::module_& m) {
  py::enum_<StagePhase>(m, "StagePhase",
                        "A rank's planner phase in a vote (commit_protocol.h), ordered so that the maximum over "
                        "ranks tells whether any failed.")
      .value("idle", StagePhase::kIdle)
      .value("working", StagePhase::kWorking)
      .value("ready", StagePhase::kReady)
      .value("no_change", StagePhase::kNoChange)
      .value("failed", StagePhase::kFailed);
  m.attr("VOTE_WORDS") = kVoteWords;
  m.def(
      "encode_vote",
      [](int64_t round, int64_t batch, StagePhase phase, bool last_batch, int64_t plan_checksum,
         int64_t placement_checksum) {
        if (round < -1 || batch < 0 || plan_checksum < 0 || placement_checksum < 0)
          fail(StatusCode::kInvalidArgument,
               str_cat("encode_vote: round must be >= -1 (got ", round, "), batch >= 0 (got ", batch,
                       "), checksums >= 0 (got ", plan_checksum, ", ", placement_checksum, "; use vote_checksum)"));
        std::vector<int64_t> buf(kVoteWords);
        encode_vote(Vote{round, batch, phase, last_batch ? 1 : 0, plan_checksum, placement_checksum},
                    std::span<int64_t, kVoteWords>(buf.data(), kVoteWords));
        return to_numpy(std::move(buf));
      },
      py::arg("round"), py::arg("batch"), py::arg("phase"), py::arg("last_batch"), py::arg("plan_checksum"),
      py::arg("placement_checksum"),
      "This rank's vote as int64 [VOTE_WORDS]: the fields, then their negations, so that one all-reduce MAX over "
      "the ranks gives every field's maximum and minimum.");
  m.def(
      "decide_votes",
      [](py::handle reduced, bool active, int64_t round, int64_t batch, int64_t waited_steps, int64_t timeout_steps,
         int64_t placement_checksum) {
        auto d = to_int64s(reduced, "reduced");
        if (d.data.size() != kVoteWords)
          fail(StatusCode::kInvalidArgument,
               str_cat("decide_votes: reduced has ", d.data.size(), " words, expected ", kVoteWords));
        const VoteRange votes = decode_votes(std::span<const int64_t, kVoteWords>(d.data.data(), kVoteWords));
        RoundState s;
        s.active = active;
        s.round = round;
        s.batch = batch;
        s.waited_steps = waited_steps;
        s.timeout_steps = timeout_steps;
        s.placement_checksum = placement_checksum;
        const DecisionResult r = decide(votes, s);
        return py::make_tuple(std::string(decision_name(r.decision)), std::string(abort_reason_name(r.reason)),
                              r.last_batch);
      },
      py::arg("reduced"), py::kw_only(), py::arg("active"), py::arg("round"), py::arg("batch"),
      py::arg("waited_steps"), py::arg("timeout_steps"), py::arg("placement_checksum"),
      "The decision every rank takes from the all-reduced (MAX) votes and the round state, which is identical on "
      "every rank: (decision, abort_reason, last_batch) with decision one of 'start-round', 'wait', 'commit', "
      "'finish', 'abort' and abort_reason 'none', 'failed', 'mismatch', 'timeout', 'placement-diverged'.");
  m.def(
      "vote_checksum", [](uint64_t checksum) { return vote_checksum(checksum); }, py::arg("checksum"),
      "A 64-bit placement checksum as a vote field (its low 63 bits).");
}

void bind_runtime(py::module_& m) {
  bind_commit_protocol(m);
  using O = PlacementManagerOptions;
  py::class_<O>(m, "ManagerOptions",
                "PlacementManager options (include/omniplacement/runtime/placement_manager.h). Keyword arguments "
                "set fields: ManagerOptions(planner_spec='omni', replan_interval_steps=100). Times are "
                "milliseconds; dispatch_mode is 'shares' or 'per-batch'.")
      .def(py::init([](const py::kwargs& kwargs) {
             py::object self = py::cast(O{});
             for (const auto& [key, value] : kwargs) {
               const std::string k = py::str(key);
               if (!py::hasattr(self, k.c_str()) || k.rfind("__", 0) == 0 || k == "from_config")
                 fail(StatusCode::kInvalidArgument, str_cat("ManagerOptions: unknown field '", k, "'"));
               self.attr(k.c_str()) = value;
             }
             return self.cast<O>();
           }))
      .def_readwrite("dynamic", &O::dynamic, "Dynamic placement on (re-plan, move, commit) or off.")
      .def_readwrite("replan_interval_steps", &O::replan_interval_steps, "A round starts every this many steps.")
      .def_readwrite("commit_cadence_steps", &O::commit_cadence_steps,
                     "The agreement collective runs every this many steps while a round is due or running.")
      .def_readwrite("commit_timeout_steps", &O::commit_timeout_steps,
                     "A batch not staged everywhere after this many steps is aborted.")
      .def_readwrite("planner_spec", &O::planner_spec, "Planner spec string, e.g. 'omni', 'eplb'.")
      .def_readwrite("max_moves_per_rank", &O::max_moves_per_rank,
                     "At most this many slots per rank and layer change per re-plan (-1: no limit; needs omni).")
      .def_readwrite("min_gain", &O::min_gain, "Keep the placement when the predicted max/mean gain is below this.")
      .def_readwrite("ema_decay", &O::ema_decay, "Plan on an EMA of the windows with this decay (0: last).")
      .def_readwrite("volatility_weight", &O::volatility_weight, "Plan on load + this x |load - previous window|.")
      .def_readwrite("plan_samples", &O::plan_samples,
                     "The planner also gets the last N aggregated windows one by one (omni forecasts from them).")
      .def_readwrite("layers_per_commit", &O::layers_per_commit, "At most this many layers per commit (0: all).")
      .def_readwrite("shift_check_steps", &O::shift_check_steps,
                     "Every this many steps, re-plan at once when the load of those steps costs more than the plan "
                     "promised (0: off; -1: a tenth of replan_interval_steps).")
      .def_readwrite("shift_threshold", &O::shift_threshold,
                     "Max/mean above the plan's promise that counts as a shift (absolute, >= 0).")
      .def_property(
          "stage_wait_ms", [](const O& o) { return static_cast<int64_t>(o.stage_wait.count()); },
          [](O& o, int64_t ms) { o.stage_wait = to_ms(ms, "stage_wait_ms"); },
          "Engine waits up to this long for its staged batch before voting (0: never; > 0: reproducible commits).")
      .def_readwrite("staging_bytes_per_rank", &O::staging_bytes_per_rank,
                     "Bytes of weights one rank receives per commit, its staging memory (0: no limit).")
      .def_property(
          "dispatch_mode", [](const O& o) { return mode_name(o.dispatch_mode); },
          [](O& o, const std::string& s) { o.dispatch_mode = parse_mode(s); },
          "'shares' (static tables) or 'per-batch' (all-gather counts, split each batch).")
      .def_readwrite("enable_dump", &O::enable_dump, "Write each aggregated window to dump_dir.")
      .def_readwrite("dump_dir", &O::dump_dir, "Folder of the window dumps (created if missing).")
      .def_readwrite("dump_queue_capacity", &O::dump_queue_capacity, "Windows queued for the writer before drops.")
      .def_property(
          "collective_timeout_ms", [](const O& o) { return static_cast<int64_t>(o.collective_timeout.count()); },
          [](O& o, int64_t ms) { o.collective_timeout = to_ms(ms, "collective_timeout_ms"); })
      .def_property(
          "transfer_timeout_ms", [](const O& o) { return static_cast<int64_t>(o.transfer_timeout.count()); },
          [](O& o, int64_t ms) { o.transfer_timeout = to_ms(ms, "transfer_timeout_ms"); })
      .def_static(
          "from_config", [](const Config& c) { return unwrap(manager_options_from_config(c)); }, py::arg("config"),
          "Options from a parsed YAML config (omniplacement.io.read_config); ValueError naming the key.")
      .def("__repr__", [](const O& o) {
        return str_cat("ManagerOptions(dynamic=", o.dynamic ? "True" : "False", ", planner_spec='", o.planner_spec,
                       "', replan_interval_steps=", o.replan_interval_steps, ", max_moves_per_rank=",
                       o.max_moves_per_rank, ", dispatch_mode='", mode_name(o.dispatch_mode),
                       "', enable_dump=", o.enable_dump ? "True" : "False", ")");
      });

  py::class_<PyLocalCluster>(
      m, "LocalCluster",
      "N ranks in this process, each with a PlacementManager and a host weight store, over a LocalTransport. "
      "Per step: record() and dispatch() each rank's ids per layer, then step_boundary(step) once: it runs every "
      "rank's step_boundary in parallel on the ranks' engine threads, so re-plans, weight moves and epoch commits "
      "happen exactly as in a multi-rank engine. Use as a context manager or call close().")
      .def(py::init([](const Placement& placement, py::handle slot_bytes, py::object options, py::object topology) {
             const O o = options.is_none() ? O{} : options.cast<O>();
             return std::make_unique<PyLocalCluster>(placement, slot_bytes, o, topology);
           }),
           py::arg("placement"), py::arg("slot_bytes"), py::arg("options") = py::none(),
           py::arg("topology") = py::none(),
           "placement: the initial placement (its rank count is the cluster's); slot_bytes: bytes of one slot, an "
           "int or one per layer; options: ManagerOptions (defaults when None); topology: Topology (None: one "
           "host). Slots start zero-filled: load weights with write_slot() before the first step.")
      .def_property_readonly("num_ranks", &PyLocalCluster::num_ranks)
      .def_property_readonly("num_layers", [](const PyLocalCluster& c) { return c.initial().num_layers(); })
      .def_property_readonly("num_experts", [](const PyLocalCluster& c) { return c.initial().num_experts(); })
      .def_property_readonly("options", &PyLocalCluster::options, "A copy of the options.")
      .def_property_readonly("closed", &PyLocalCluster::closed)
      .def("record", &PyLocalCluster::record, py::arg("rank"), py::arg("layer"), py::arg("topk_ids"),
           "Counts one batch's logical expert ids (any shape, -1 padding) of `layer` on `rank`. Any thread; "
           "releases the GIL.")
      .def("dispatch", &PyLocalCluster::dispatch, py::arg("rank"), py::arg("layer"), py::arg("topk_ids"),
           "Global slots (int32, same shape as topk_ids; -1 for padding or invalid ids) serving rank's tokens "
           "under the epoch in force. Shares mode only (per-batch mode: dispatch_all).")
      .def("dispatch_all", &PyLocalCluster::dispatch_all, py::arg("layer"), py::arg("ids_per_rank"),
           "dispatch() of every rank at once (one array of ids per rank): required in per-batch mode, whose "
           "all-gather needs every rank. Returns one int32 array per rank.")
      .def("step_boundary", &PyLocalCluster::step_boundary, py::arg("step"),
           "Ends step `step` (increasing) on every rank: starts rounds, votes, commits epochs. Raises the first "
           "rank's error (TimeoutError when a collective timed out).")
      .def(
          "stats", [](PyLocalCluster& c, RankId r) { return stats_dict(c.stats(r)); }, py::arg("rank") = 0,
          "The rank's PlacementManager stats as a dict (epoch, rounds_*, experts_moved, bytes_moved, timings, "
          "dumps_*).")
      .def(
          "placement", [](PyLocalCluster& c, RankId r) { return c.snapshot(r)->placement(); }, py::arg("rank") = 0,
          "The placement in force on the rank (a copy).")
      .def(
          "epoch", [](PyLocalCluster& c, RankId r) { return c.snapshot(r)->epoch(); }, py::arg("rank") = 0,
          "The epoch in force on the rank.")
      .def("flush_dumps", &PyLocalCluster::flush_dumps, "Waits until every queued dump is written.")
      .def("slot_bytes", &PyLocalCluster::slot_bytes, py::arg("layer"), "Bytes of one slot of the layer.")
      .def("read_slot", &PyLocalCluster::read_slot, py::arg("rank"), py::arg("layer"), py::arg("slot"),
           "A copy of the slot's bytes (uint8 array of slot_bytes(layer)).")
      .def("write_slot", &PyLocalCluster::write_slot, py::arg("rank"), py::arg("layer"), py::arg("slot"),
           py::arg("data"), py::arg("offset") = 0,
           "Writes the raw bytes of `data` (bytes, or a C-contiguous array / CPU tensor of any dtype) into the slot "
           "at byte `offset`: the initial load of the weights. Not during step_boundary.")
      .def("close", &PyLocalCluster::close, "Stops every manager and thread. Idempotent.")
      .def("__enter__", [](PyLocalCluster& c) -> PyLocalCluster& { return c; }, py::return_value_policy::reference)
      .def("__exit__", [](PyLocalCluster& c, const py::args&) { c.close(); })
      .def("__repr__", [](PyLocalCluster& c) {
        const auto& p = c.initial();
        return str_cat("<LocalCluster ", c.num_ranks(), " ranks, ", p.num_layers(), " layers x ", p.num_experts(),
                       " experts, planner '", c.options().planner_spec, "', ",
                       c.closed() ? std::string("closed") : str_cat("epoch ", c.snapshot(0)->epoch()), ">");
      });
}

}  // namespace omni::py_support
