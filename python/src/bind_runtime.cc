// Bindings of the runtime module: ManagerOptions (PlacementManagerOptions) and
// LocalCluster, N ranks in this process, each with its PlacementManager and
// host WeightStore, driven from Python the way an engine drives one manager per
// rank.
//
// Threads. Every rank has one worker thread, its engine thread: the manager is
// created there, and step_boundary() and dispatch_all() run one task per rank
// on them in parallel (their collectives need every rank at once). The calling
// Python thread waits with the GIL released. dispatch() of one rank (shares
// mode: no collective) and write_slot() run on the calling thread, serialised
// with the workers by a mutex, so the manager sees one engine at a time.
// record() and the read-only calls may come from any Python thread.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "bindings.h"
#include "omniplacement/core/core.h"
#include "omniplacement/runtime/manager_config.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/local_transport.h"
#include "py_support.h"

namespace omni::py_support {

namespace {

// One long-lived thread per rank; run() hands every thread its task and waits.
class RankThreads {
 public:
  explicit RankThreads(int32_t n) {
    for (int32_t r = 0; r < n; ++r) threads_.emplace_back([this, r] { loop(r); });
  }
  ~RankThreads() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  // fn(r) on thread r for every rank; statuses indexed by rank. One run at a time.
  std::vector<Status> run(const std::function<Status(RankId)>& fn) {
    std::unique_lock<std::mutex> lock(mu_);
    task_ = &fn;
    results_.assign(threads_.size(), Status());
    pending_ = static_cast<int32_t>(threads_.size());
    ++generation_;
    cv_.notify_all();
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    task_ = nullptr;
    return results_;
  }

 private:
  void loop(RankId r) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<Status(RankId)>* task = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        task = task_;
      }
      Status s;
      try {
        s = (*task)(r);
      } catch (const std::exception& e) {
        s = internal_error(str_cat("rank ", r, ": ", e.what()));
      }
      std::lock_guard<std::mutex> lock(mu_);
      results_[static_cast<size_t>(r)] = std::move(s);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<Status(RankId)>* task_ = nullptr;  // guarded by mu_
  std::vector<Status> results_;                          // guarded by mu_
  int32_t pending_ = 0;                                  // guarded by mu_
  uint64_t generation_ = 0;                              // guarded by mu_
  bool stop_ = false;                                    // guarded by mu_
  std::vector<std::thread> threads_;
};

// The first failed status, with its rank.
Status first_error(const std::vector<Status>& statuses) {
  for (size_t r = 0; r < statuses.size(); ++r)
    if (!statuses[r].ok()) return statuses[r].with_context(str_cat("rank ", r));
  return ok_status();
}

class PyLocalCluster {
 public:
  PyLocalCluster(const Placement& initial, py::handle slot_bytes, const PlacementManagerOptions& options,
                 py::object topology)
      : initial_(initial), options_(options) {
    const int32_t R = initial.num_ranks(), L = initial.num_layers();
    topology_ = topology.is_none() ? unwrap(Topology::uniform(R, R)) : topology.cast<Topology>();
    std::vector<int64_t> bytes;
    if (py::isinstance<py::int_>(slot_bytes)) {
      bytes.assign(static_cast<size_t>(L), slot_bytes.cast<int64_t>());
    } else {
      auto d = to_int64s(slot_bytes, "slot_bytes");
      expect_ndim("slot_bytes", d.ndim(), 1);
      bytes = std::move(d.data);
    }
    if (static_cast<int32_t>(bytes.size()) != L)
      fail(StatusCode::kInvalidArgument,
           str_cat("LocalCluster: slot_bytes has ", bytes.size(), " entries, the placement ", L, " layers"));
    std::vector<int32_t> slots;
    for (LayerId l = 0; l < L; ++l) slots.push_back(initial.slots_per_rank(l));
    for (RankId r = 0; r < R; ++r)
      stores_.push_back(unwrap(HostWeightStore::create(bytes, slots, options.staging_limit_bytes)));
    cluster_ = std::make_unique<LocalCluster>(unwrap(LocalCluster::create(R)));
    managers_.resize(static_cast<size_t>(R));
    py::gil_scoped_release release;
    threads_ = std::make_unique<RankThreads>(R);
    // create() is collective (it duplicates the transport): every rank at once.
    const Status s = first_error(threads_->run([&](RankId r) -> Status {
      auto pm = PlacementManager::create(cluster_->transport(r), topology_, initial_, *stores_[static_cast<size_t>(r)],
                                         options_);
      if (!pm.ok()) return pm.status();
      managers_[static_cast<size_t>(r)] = std::move(*pm);
      return ok_status();
    }));
    if (!s.ok()) {
      shut_down();
      throw StatusError(s.with_context("LocalCluster"));
    }
  }
  ~PyLocalCluster() { shut_down(); }

  void close() {
    py::gil_scoped_release release;
    std::unique_lock<std::shared_mutex> life(life_);
    shut_down();
  }

  int32_t num_ranks() const { return initial_.num_ranks(); }
  const Placement& initial() const { return initial_; }
  const PlacementManagerOptions& options() const { return options_; }
  bool closed() const { return closed_.load(); }

  void record(RankId r, LayerId l, py::handle topk_ids) {
    check_index("rank", r, num_ranks());
    std::vector<int32_t> storage;
    py::array ids = as_numpy(topk_ids);
    const std::span<const int32_t> view = ids_view(ids, storage);
    check(locked(false, [&] {
      managers_[static_cast<size_t>(r)]->record(l, view);
      return ok_status();
    }));
  }

  py::array_t<int32_t> dispatch(RankId r, LayerId l, py::handle topk_ids) {
    check_index("rank", r, num_ranks());
    if (options_.dispatch_mode == DispatchMode::kPerBatch)
      fail(StatusCode::kFailedPrecondition,
           "LocalCluster.dispatch: per-batch mode gathers every rank's counts; call dispatch_all(layer, ids_per_rank)");
    std::vector<int32_t> storage;
    py::array ids = as_numpy(topk_ids);
    const std::span<const int32_t> view = ids_view(ids, storage);
    std::vector<GlobalSlot> out(view.size());
    check(locked(true, [&] { return managers_[static_cast<size_t>(r)]->dispatch(l, view, out); }));
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
    for (RankId r = 0; r < R; ++r) {
      arrays.push_back(as_numpy(ids_per_rank[static_cast<size_t>(r)]));
      views.push_back(ids_view(arrays.back(), storage[static_cast<size_t>(r)]));
      outs[static_cast<size_t>(r)].resize(views.back().size());
    }
    check(locked(true, [&] {
      return first_error(threads_->run([&](RankId r) {
        return managers_[static_cast<size_t>(r)]->dispatch(l, views[static_cast<size_t>(r)],
                                                            outs[static_cast<size_t>(r)]);
      }));
    }));
    py::list result;
    for (RankId r = 0; r < R; ++r)
      result.append(reshape(std::move(outs[static_cast<size_t>(r)]), arrays[static_cast<size_t>(r)]));
    return result;
  }

  void step_boundary(int64_t step) {
    check(locked(true, [&] {
      return first_error(
          threads_->run([&](RankId r) { return managers_[static_cast<size_t>(r)]->step_boundary(step); }));
    }));
  }

  PlacementManagerStats stats(RankId r) {
    check_index("rank", r, num_ranks());
    PlacementManagerStats out;
    check(locked(false, [&] {
      out = managers_[static_cast<size_t>(r)]->stats();
      return ok_status();
    }));
    return out;
  }
  std::shared_ptr<const RoutingSnapshot> snapshot(RankId r) {
    check_index("rank", r, num_ranks());
    std::shared_ptr<const RoutingSnapshot> out;
    check(locked(false, [&] {
      out = managers_[static_cast<size_t>(r)]->snapshot();
      return ok_status();
    }));
    return out;
  }

  void flush_dumps() {
    check(locked(false, [&] {
      Status s;
      for (auto& pm : managers_)
        if (s.ok()) s = pm->flush_dumps();
      return s;
    }));
  }

  py::array_t<uint8_t> read_slot(RankId r, LayerId l, SlotId s) {
    check_index("rank", r, num_ranks());
    check_index("layer", l, initial_.num_layers());
    const WeightStore& store = *stores_[static_cast<size_t>(r)];
    std::vector<uint8_t> out(static_cast<size_t>(store.slot_bytes(l)));
    // Under the engine lock: never half a commit's copy.
    check(locked(true, [&] { return store.read_slot(l, s, 0, std::as_writable_bytes(std::span<uint8_t>(out))); }));
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
    WeightStore& store = *stores_[static_cast<size_t>(r)];
    check(locked(true, [&] { return store.write_slot(l, s, offset, bytes); }));
  }

  int64_t slot_bytes(LayerId l) const {
    check_index("layer", l, initial_.num_layers());
    return stores_.front()->slot_bytes(l);
  }

 private:
  // Runs f with the GIL released while the cluster cannot close (and, for
  // engine-side calls, no other engine-side call runs); FAILED_PRECONDITION
  // once closed.
  template <typename F>
  Status locked(bool engine, F&& f) {
    py::gil_scoped_release release;
    std::shared_lock<std::shared_mutex> life(life_);
    if (closed_.load()) return failed_precondition_error("LocalCluster is closed");
    if (!engine) return f();
    std::lock_guard<std::mutex> lock(engine_);
    return f();
  }
  // Slots in the shape of the ids they were computed from.
  static py::array_t<int32_t> reshape(std::vector<GlobalSlot>&& out, const py::array& like) {
    std::vector<py::ssize_t> shape(like.shape(), like.shape() + like.ndim());
    if (shape.empty()) shape.push_back(static_cast<py::ssize_t>(out.size()));
    return to_numpy(std::move(out), std::move(shape));
  }
  // Managers first (their planner threads stop), then the engine threads.
  void shut_down() {
    if (closed_.exchange(true)) return;
    if (threads_ && !managers_.empty())
      threads_->run([&](RankId r) {
        managers_[static_cast<size_t>(r)].reset();
        return ok_status();
      });
    managers_.clear();
    threads_.reset();
  }

  Placement initial_;
  PlacementManagerOptions options_;
  Topology topology_;
  std::vector<std::unique_ptr<HostWeightStore>> stores_;
  std::unique_ptr<LocalCluster> cluster_;
  std::vector<std::unique_ptr<PlacementManager>> managers_;
  std::unique_ptr<RankThreads> threads_;
  std::shared_mutex life_;  // shared: a call using the managers; exclusive: close()
  std::mutex engine_;       // one engine-side call at a time
  std::atomic<bool> closed_{false};
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

void bind_runtime(py::module_& m) {
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
                     "When > 0, appended to the planner spec (omni: incremental re-plans).")
      .def_readwrite("min_gain", &O::min_gain, "Keep the placement when the predicted max/mean gain is below this.")
      .def_readwrite("window_decay", &O::window_decay, "Plan on an EMA of the windows with this decay (0: last).")
      .def_readwrite("volatility_weight", &O::volatility_weight, "Plan on load + this x |load - previous window|.")
      .def_readwrite("plan_samples", &O::plan_samples,
                     "The planner also gets the last N aggregated windows one by one (omni(per_batch=true)).")
      .def_readwrite("layers_per_commit", &O::layers_per_commit, "At most this many layers per commit (0: all).")
      .def_property(
          "stage_wait_ms", [](const O& o) { return static_cast<int64_t>(o.stage_wait.count()); },
          [](O& o, int64_t ms) { o.stage_wait = to_ms(ms, "stage_wait_ms"); },
          "Engine waits up to this long for its staged batch before voting (0: never; > 0: reproducible commits).")
      .def_readwrite("staging_limit_bytes", &O::staging_limit_bytes, "Staging memory a batch may use per rank.")
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
