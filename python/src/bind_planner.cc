// Bindings of the planner module: planners built from spec strings, the
// bit-exact DeepSeek EPLB (eplb_rebalance) under the drop-in
// omniplacement.rebalance_experts (python/omniplacement/_rebalance.py), and
// migration plans (diff, verify_migration), which omniplacement.torch executes.
//
// plan() and eplb_rebalance() release the GIL while they run: their inputs are
// copied (loads) or immutable (placements, topologies) first, so another Python
// thread may go on, even mutate the LoadMatrix it passed.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "omniplacement/core/core.h"
#include "omniplacement/planner/eplb.h"
#include "omniplacement/planner/migration_plan.h"
#include "omniplacement/planner/planner.h"
#include "py_support.h"

namespace omni::py_support {

namespace {

std::vector<int32_t> slots_arg(py::handle obj) {
  if (obj.is_none()) return {};
  auto d = to_int32s(obj, "slots_per_rank", 0, kMaxSlotsPerRank);
  if (d.ndim() > 1) expect_ndim("slots_per_rank", d.ndim(), 1);
  return std::move(d.data);
}

// Columns of MigrationPlan.transfers(), in order.
constexpr const char* kTransferColumns[] = {"round",    "layer", "expert",   "src_rank", "src_slot",
                                            "dst_rank", "dst_slot", "replaced", "link",     "bytes"};

py::array_t<int64_t> transfer_rows(const MigrationPlan& plan) {
  constexpr size_t kCols = std::size(kTransferColumns);
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(plan.num_transfers) * kCols);
  for (size_t r = 0; r < plan.rounds.size(); ++r)
    for (const Transfer& t : plan.rounds[r].transfers)
      out.insert(out.end(), {static_cast<int64_t>(r), t.layer, t.expert, t.src_rank, t.src_slot, t.dst_rank, t.dst_slot,
                             t.replaced, static_cast<int64_t>(t.link), t.bytes});
  const auto n = static_cast<py::ssize_t>(out.size() / kCols);
  return to_numpy(std::move(out), {n, static_cast<py::ssize_t>(kCols)});
}

void bind_migration(py::module_& m) {
  py::class_<MigrationPlan>(m, "MigrationPlan",
                            "The ordered expert-weight transfers from one placement to another "
                            "(include/omniplacement/planner/migration_plan.h). Immutable.")
      .def_property_readonly("num_rounds", &MigrationPlan::num_rounds)
      .def_readonly("num_transfers", &MigrationPlan::num_transfers)
      .def_readonly("total_bytes", &MigrationPlan::total_bytes)
      .def_readonly("total_seconds", &MigrationPlan::total_seconds, "Estimated time (the header's time model).")
      .def_readonly("num_unchanged_slots", &MigrationPlan::num_unchanged_slots)
      .def_readonly("max_per_round", &MigrationPlan::max_per_round, "The per-rank budget it was made with (0: none).")
      .def_property_readonly(
          "transfers", &transfer_rows,
          "int64 array [num_transfers, 10], one row per transfer in plan order (round by round, each sorted by "
          "(layer, dst_rank, dst_slot)); columns as in transfer_columns: round, layer, expert, src_rank, src_slot, "
          "dst_rank, dst_slot, replaced (-1: the slot was empty), link (0 same rank, 1 same host, 2 cross host), "
          "bytes. A copy.")
      .def_property_readonly_static(
          "transfer_columns",
          [](const py::object&) {
            py::tuple t(std::size(kTransferColumns));
            for (size_t i = 0; i < std::size(kTransferColumns); ++i) t[i] = py::str(kTransferColumns[i]);
            return t;
          },
          "Names of the columns of transfers.")
      .def_property_readonly(
          "releases",
          [](const MigrationPlan& plan) {
            std::vector<int64_t> out;
            for (const SlotRelease& r : plan.releases) out.insert(out.end(), {r.layer, r.rank, r.slot, r.expert});
            const auto n = static_cast<py::ssize_t>(out.size() / 4);
            return to_numpy(std::move(out), {n, 4});
          },
          "int64 array [num_releases, 4]: (layer, rank, slot, expert) of the slots emptied after the last round.")
      .def("summary", &MigrationPlan::summary)
      .def("__repr__", [](const MigrationPlan& p) { return str_cat("<MigrationPlan ", p.summary(), ">"); });

  m.def(
      "diff",
      [](const Placement& current, const Placement& next, const Topology& topology, py::handle expert_bytes,
         int32_t max_per_round) {
        MigrationOptions o;
        o.max_per_round = max_per_round;
        if (py::isinstance<py::int_>(expert_bytes)) {
          o.expert_bytes = expert_bytes.cast<int64_t>();
        } else {
          auto d = to_int64s(expert_bytes, "expert_bytes");
          expect_ndim("expert_bytes", d.ndim(), 1);
          o.layer_expert_bytes = std::move(d.data);
          if (!o.layer_expert_bytes.empty()) o.expert_bytes = o.layer_expert_bytes.front();
        }
        py::gil_scoped_release release;
        return unwrap(diff(current, next, topology, o));
      },
      py::arg("current"), py::arg("next"), py::arg("topology"), py::kw_only(),
      py::arg("expert_bytes") = kDeepSeekV3ExpertBytes, py::arg("max_per_round") = 8,
      "The migration plan from `current` to `next`: only changed slots move, each from the nearest replica "
      "(same rank, then same host, then another host). expert_bytes: bytes of one expert, an int or one per layer; "
      "max_per_round: experts one rank sends or receives per round (0: one round, every source read from "
      "`current`). ValueError for mismatched sizes, RuntimeError (FAILED_PRECONDITION) when `next` places an "
      "expert that `current` lacks. Releases the GIL.");
  m.def(
      "verify_migration",
      [](const Placement& current, const MigrationPlan& plan, const Placement& next) {
        check(verify_migration(current, plan, next));
      },
      py::arg("current"), py::arg("plan"), py::arg("next"),
      "Replays the plan under the staging semantics; ValueError naming the first problem, None when safe.");
}

EplbPolicy parse_policy(const std::string& p) {
  if (p == "auto") return EplbPolicy::kAuto;
  if (p == "hierarchical") return EplbPolicy::kHierarchical;
  if (p == "global") return EplbPolicy::kGlobal;
  fail(StatusCode::kInvalidArgument, str_cat("eplb policy must be 'auto', 'hierarchical' or 'global', got '", p, "'"));
}

}  // namespace

void bind_planner(py::module_& m) {
  bind_migration(m);
  py::class_<PlanStats>(m, "PlanStats", "What a plan() call did: wall seconds, local-search moves, wasted replicas.")
      .def_readonly("seconds", &PlanStats::seconds)
      .def_readonly("local_search_moves", &PlanStats::local_search_moves)
      .def_readonly("same_rank_duplicates", &PlanStats::same_rank_duplicates)
      .def_readonly("time_budget_hit", &PlanStats::time_budget_hit)
      .def_readonly("policy", &PlanStats::policy)
      .def("__repr__", [](const PlanStats& s) {
        return str_cat("<PlanStats ", s.seconds * 1e3, " ms, ", s.local_search_moves, " moves, ",
                       s.same_rank_duplicates, " same-rank duplicates", s.policy.empty() ? "" : ", policy ",
                       s.policy, s.time_budget_hit ? ", time budget hit" : "", ">");
      });

  py::class_<PlanResult>(m, "PlanResult",
                         "A plan: `placement`, `replica_rank[l][g]` (creation index of slot g's replica, -1 "
                         "empty) and `stats`.")
      .def_readonly("placement", &PlanResult::placement)
      .def_property_readonly("replica_rank", [](const PlanResult& r) { return rows_to_list(r.replica_rank); },
                             "List of int32 arrays, one per layer (copies).")
      .def_readonly("stats", &PlanResult::stats)
      .def(
          "expert_map",
          [](const PlanResult& r, const std::string& order) {
            return unwrap(ExpertMap::from_placement(
                r.placement, order == "creation" ? ReplicaOrder::kByCreation : ReplicaOrder::kBySlot,
                r.replica_rank));
          },
          py::arg("order") = "creation",
          "The plan's ExpertMap; replicas in creation order (DeepSeek) or 'slot' order (vLLM).")
      .def("__repr__", [](const PlanResult& r) {
        return str_cat("<PlanResult ", r.placement.summary(), ", ", r.stats.seconds * 1e3, " ms>");
      });

  py::class_<Planner>(m, "Planner",
                      "A planner built from a spec string such as 'eplb', 'eplb(hierarchical)' or "
                      "'omni(max_replicas_per_expert=8)'; the same strings work in C++ and the CLI. Immutable; "
                      "plan() may run from several threads at once.")
      .def(py::init([](const std::string& spec) { return unwrap(make_planner(spec)); }), py::arg("spec"))
      .def_property_readonly("name", &Planner::name)
      .def_property_readonly("spec", &Planner::spec, "Canonical spec (parameters at defaults omitted).")
      .def(
          "plan",
          [](const Planner& planner, py::handle load, int32_t num_ranks, py::object slots_per_rank,
             int64_t num_replicas, int32_t num_nodes, int32_t num_groups, const Topology* topology,
             py::object coactivation, const Placement* current, py::object samples, const std::string& dispatch,
             int64_t window_steps, int64_t interval_steps, py::object expert_bytes, py::object seconds_per_token) {
            const LoadMatrix owned_load = load_from_object(load);
            std::vector<LoadMatrix> owned_samples;
            if (!samples.is_none())
              for (py::handle h : samples) owned_samples.push_back(load_from_object(h));
            PlanInput in;
            in.load = &owned_load;
            in.num_ranks = num_ranks;
            if (py::isinstance<py::int_>(slots_per_rank)) {
              in.slots_per_rank = {slots_per_rank.cast<int32_t>()};
            } else {
              in.slots_per_rank = slots_arg(slots_per_rank);
            }
            in.num_replicas = num_replicas;
            in.num_nodes = num_nodes;
            in.num_groups = num_groups;
            in.topology = topology;
            in.current = current;
            if (!samples.is_none()) in.samples = &owned_samples;
            if (dispatch != "shares" && dispatch != "per-batch")
              fail(StatusCode::kInvalidArgument, str_cat("dispatch must be 'shares' or 'per-batch', got '", dispatch, "'"));
            in.serving.dispatch = dispatch == "per-batch" ? DispatchMode::kPerBatch : DispatchMode::kShares;
            in.serving.window_steps = window_steps;
            in.serving.interval_steps = interval_steps;
            if (!expert_bytes.is_none()) in.serving.expert_bytes = expert_bytes.cast<double>();
            if (!seconds_per_token.is_none()) in.serving.seconds_per_token = seconds_per_token.cast<double>();
            std::optional<std::vector<double>> coact;
            if (!coactivation.is_none()) {
              auto d = to_doubles(coactivation, "coactivation");
              expect_ndim("coactivation", d.ndim(), 3);
              if (d.shape[0] != owned_load.num_layers() || d.shape[1] != owned_load.num_experts() ||
                  d.shape[2] != owned_load.num_experts()) {
                fail(StatusCode::kInvalidArgument,
                     str_cat("coactivation: expected shape [", owned_load.num_layers(), ", ",
                             owned_load.num_experts(), ", ", owned_load.num_experts(), "], got [", d.shape[0], ", ",
                             d.shape[1], ", ", d.shape[2], "]"));
              }
              coact = std::move(d.data);
              in.coactivation = &*coact;
            }
            py::gil_scoped_release release;
            return unwrap(planner.plan(in));
          },
          py::arg("load"), py::kw_only(), py::arg("num_ranks"), py::arg("slots_per_rank") = py::none(),
          py::arg("num_replicas") = 0, py::arg("num_nodes") = 0, py::arg("num_groups") = 1,
          py::arg("topology") = nullptr, py::arg("coactivation") = py::none(), py::arg("current") = nullptr,
          py::arg("samples") = py::none(), py::arg("dispatch") = "shares", py::arg("window_steps") = 1,
          py::arg("interval_steps") = 0, py::arg("expert_bytes") = py::none(), py::arg("seconds_per_token") = py::none(),
          "Plans a placement. load: LoadMatrix or [num_layers, num_experts] array (tokens). Give slots_per_rank "
          "(an int for every layer, or one per layer) or num_replicas (slots per layer, a multiple of "
          "num_ranks). num_nodes/num_groups as in EPLB; topology: optional rank-to-host map; coactivation: "
          "optional [L, E, E] pair counts; current: the placement in force (incremental planners); samples: "
          "optional list of recent windows, each like load, oldest first (omni forecasts the next interval from "
          "them). How the plan is served (ServingModel; omni prices its moves against it): dispatch 'shares' or "
          "'per-batch', window_steps (steps each window counts), interval_steps (steps until the next re-plan, 0: "
          "one window), expert_bytes and seconds_per_token (None: DeepSeek-V3 FP8 figures).")
      .def("__repr__", [](const Planner& p) { return str_cat("<Planner ", p.spec(), ">"); });

  m.def(
      "canonical_spec", [](const std::string& spec) { return unwrap(canonical_spec(spec)); }, py::arg("spec"),
      "Canonical form of a planner spec string.");
  m.def("planner_names", &planner_names, "Registered planner names, sorted.");
  m.def("planner_help", &planner_help, "One line per planner: name, parameters and defaults.");

  m.def(
      "eplb_rebalance",
      [](py::handle weight, int32_t num_replicas, int32_t num_groups, int32_t num_nodes, int32_t num_gpus,
         const std::string& policy) {
        const LoadMatrix w = load_from_object(weight);
        const EplbPolicy p = parse_policy(policy);
        EplbResult r;
        {
          py::gil_scoped_release release;
          r = unwrap(eplb_rebalance(w, num_replicas, num_groups, num_nodes, num_gpus, p));
        }
        py::dict out;
        out["phy2log"] = to_numpy(std::move(r.phy2log), {r.num_layers, r.num_replicas});
        out["phyrank"] = to_numpy(std::move(r.phyrank), {r.num_layers, r.num_replicas});
        out["logcnt"] = to_numpy(std::move(r.logcnt), {r.num_layers, r.num_experts});
        out["log2phy"] = to_numpy(std::move(r.log2phy), {r.num_layers, r.num_experts, r.max_replicas});
        out["hierarchical"] = r.hierarchical;
        return out;
      },
      py::arg("weight"), py::arg("num_replicas"), py::arg("num_groups"), py::arg("num_nodes"), py::arg("num_gpus"),
      py::arg("policy") = "auto",
      "DeepSeek EPLB, bit for bit. Returns a dict of int32 arrays: phy2log [L, num_replicas], phyrank (replica "
      "rank of each slot), logcnt [L, E], log2phy [L, E, max(logcnt)] in replica-rank order, -1 padded; and "
      "'hierarchical' (the policy used). Use omniplacement.rebalance_experts for DeepSeek's exact signature.");
}

}  // namespace omni::py_support
