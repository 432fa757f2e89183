// omniplace plan: a placement from a load with any registered planner, written
// as placement JSON (with EPLB's log2phy/logcnt) or an omni-infer pattern.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "omniplace/arg_checks.h"
#include "omniplace/command.h"
#include "omniplace/coverage_json.h"
#include "omniplace/inputs.h"
#include "omniplacement/core/coverage.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/dispatch/dispatch_mode.h"
#include "omniplacement/io/npy.h"
#include "omniplacement/planner/planner.h"
#include "omniplacement/planner/planner_spec.h"
#include "omniplacement/planner/redundancy_budget.h"

namespace {

struct PlanArgs {
  std::vector<std::string> loads;    // oldest first; the last is the load planned on
  std::vector<std::string> selects;  // none, one for every load, or one per load
  std::string planner = "omni";
  int num_ranks = 0;
  int num_nodes = 0;  // 0: --current's topology when its file has one, else 1
  int64_t num_replicas = 0;
  int redundant_per_rank = -1;
  int64_t redundant_budget = -1;
  std::string budget_rule = "optimal";
  int num_groups = 1;
  std::string current;
  std::string coactivation;
  int max_moves_per_rank = -1;  // -1: not given (the spec decides)
  double min_gain = -1;         // < 0: not given
  std::string output;
  int show_moves = 20;
  bool json = false;
  // How the plan will be served (omni prices its moves with these; ServingModel).
  std::string dispatch = "shares";
  int64_t window_steps = omni::ServingModel{}.window_steps;
  int64_t interval_steps = omni::ServingModel{}.interval_steps;
  double expert_mb = omni::ServingModel{}.expert_bytes / 1e6;
  double us_per_token = omni::ServingModel{}.seconds_per_token * 1e6;
};

// One expert weight to load: slot (layer, rank, slot) goes from `from` (-1: empty) to `to`.
struct Move {
  omni::LayerId layer;
  omni::RankId rank;
  omni::SlotId slot;
  omni::ExpertId from, to;
};

struct Figures {
  omni::PlacementBalance balance;
  int64_t duplicates = 0;
  omni::TrafficSplit traffic;
  omni::FailureCoverage coverage;
};

omni::StatusOr<Figures> figures_of(const omni::Placement& p, const omni::LoadMatrix& load, const omni::Topology& topo) {
  Figures f;
  OMNI_ASSIGN_OR_RETURN(f.balance, omni::placement_balance(p, load));
  OMNI_ASSIGN_OR_RETURN(f.traffic, omni::dispatch_traffic(p, load, topo));
  OMNI_ASSIGN_OR_RETURN(f.coverage, omni::failure_coverage(p, topo, &load));
  f.duplicates = omni::same_rank_duplicates(p);
  return f;
}

// --max-moves-per-rank / --min-gain go to the planner as typed values
// (PlanInput); refused when the spec sets the same parameter too.
omni::Status check_limits(const PlanArgs& a) {
  OMNI_ASSIGN_OR_RETURN(omni::PlannerSpec spec, omni::PlannerSpec::parse(a.planner));
  for (const auto& p : spec.params) {
    const bool moves = p.key == "max_moves_per_rank" && a.max_moves_per_rank >= 0;
    const bool gain = p.key == "min_gain" && a.min_gain >= 0;
    if (moves || gain)
      return omni::invalid_argument_error(omni::str_cat("--", moves ? "max-moves-per-rank" : "min-gain",
                                                        " and the planner spec '", a.planner, "' both set ", p.key));
  }
  return omni::ok_status();
}

// A dense co-activation .npy [num_layers, num_experts, num_experts] (any numeric dtype).
omni::StatusOr<std::vector<double>> read_coactivation(const std::string& path, const omni::LoadMatrix& load) {
  OMNI_ASSIGN_OR_RETURN(omni::NpyArray a, omni::read_npy(path));
  const std::vector<int64_t> want = {load.num_layers(), load.num_experts(), load.num_experts()};
  if (a.shape != want) {
    return omni::invalid_argument_error(omni::str_cat(path, ": co-activation must have shape [", want[0], ", ", want[1],
                                                      ", ", want[2], "] (layers x experts x experts of the load), got ",
                                                      a.describe()));
  }
  std::vector<double> out(static_cast<size_t>(a.num_elements()));
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = a.as_double(i);
    if (!(out[i] >= 0) || !std::isfinite(out[i])) {
      const size_t E = static_cast<size_t>(load.num_experts());
      return omni::invalid_argument_error(omni::str_cat(path, ": element [", i / (E * E), ", ", i / E % E, ", ", i % E,
                                                        "] = ", out[i], " (must be finite and >= 0)"));
    }
  }
  return out;
}

std::vector<Move> moves_between(const omni::Placement& cur, const omni::Placement& next) {
  std::vector<Move> moves;
  for (omni::LayerId l = 0; l < next.num_layers(); ++l) {
    const int32_t S = next.slots_per_rank(l), So = cur.slots_per_rank(l);
    for (omni::RankId r = 0; r < next.num_ranks(); ++r)
      for (omni::SlotId s = 0; s < S; ++s) {
        const omni::ExpertId to = next.expert_at(l, r, s);
        const omni::ExpertId from = s < So ? cur.expert_at(l, r, s) : omni::kEmptySlot;
        if (to != omni::kEmptySlot && to != from) moves.push_back({l, r, s, from, to});
      }
  }
  return moves;
}

// Most moved experts of one rank in one layer.
int64_t max_moves_per_rank_layer(const std::vector<Move>& moves, int32_t num_layers, int32_t num_ranks) {
  std::vector<int64_t> n(static_cast<size_t>(num_layers) * static_cast<size_t>(num_ranks), 0);
  int64_t mx = 0;
  for (const Move& m : moves)
    mx = std::max(mx, ++n[static_cast<size_t>(m.layer) * static_cast<size_t>(num_ranks) + static_cast<size_t>(m.rank)]);
  return mx;
}

nlohmann::json figures_json(const Figures& f) {
  const auto& b = f.balance;
  return {{"mean_max_over_mean", b.mean_max_over_mean},
          {"sum_max", b.sum_max},
          {"sum_lower_bound", b.sum_lower_bound},
          {"mean_excess", b.mean_excess},
          {"duplicates", f.duplicates},
          {"same_rank_share", f.traffic.same_rank},
          {"same_host_share", f.traffic.same_host},
          {"cross_host_share", f.traffic.cross_host},
          {"coverage", omni::cli::coverage_json(f.coverage)}};
}

int run_plan(const PlanArgs& a) {
  const char* cmd = "plan";
  if (const omni::Status s = check_limits(a); !s.ok()) return omni::cli::fail(cmd, s);
  auto planner = omni::make_planner(a.planner);
  if (!planner.ok()) return omni::cli::fail(cmd, planner.status());

  std::optional<omni::PlacementFile> current;
  if (!a.current.empty()) {
    auto c = omni::cli::read_placement_arg(a.current, nullptr);
    if (!c.ok()) return omni::cli::fail(cmd, c.status().with_context("--current"));
    current = std::move(c).value();
  }
  if (a.selects.size() > 1 && a.selects.size() != a.loads.size()) {
    std::cerr << "omniplace plan: --select is given " << a.selects.size() << " times for " << a.loads.size()
              << " --load; give it once (every load) or once per --load\n";
    return omni::cli::kExitUsage;
  }
  std::vector<omni::LoadMatrix> windows;
  for (size_t k = 0; k < a.loads.size(); ++k) {
    const std::string select = a.selects.empty() ? "" : a.selects.size() == 1 ? a.selects[0] : a.selects[k];
    auto lm = omni::cli::read_load_arg(a.loads[k], select, current ? &current->placement : nullptr);
    const std::string which = a.loads.size() == 1 ? "--load" : omni::str_cat("--load ", k + 1, " of ", a.loads.size());
    if (!lm.ok()) {
      const bool needs_current = !current && lm.status().message().find("placement in force") != std::string::npos;
      return omni::cli::fail(cmd, needs_current ? omni::invalid_argument_error(omni::str_cat(
                                                      which, ": ", lm.status().message(), " (give it with --current P)"))
                                                : lm.status().with_context(which));
    }
    if (!windows.empty() && (lm->num_layers() != windows[0].num_layers() || lm->num_experts() != windows[0].num_experts())) {
      return omni::cli::fail(cmd, omni::invalid_argument_error(omni::str_cat(
                                      which, " (", a.loads[k], ") has ", lm->num_layers(), " layers x ", lm->num_experts(),
                                      " experts; --load 1 has ", windows[0].num_layers(), " x ", windows[0].num_experts())));
    }
    windows.push_back(std::move(lm).value());
  }
  const omni::LoadMatrix load = windows.back();
  const int32_t L = load.num_layers(), E = load.num_experts();

  const int32_t R = a.num_ranks > 0 ? a.num_ranks : (current ? current->placement.num_ranks() : 0);
  if (R <= 0) {
    std::cerr << "omniplace plan: --num-ranks is required (or --current, whose ranks are used)\n";
    return omni::cli::kExitUsage;
  }
  if (current) {
    const omni::Placement& c = current->placement;
    if (c.num_layers() != L || c.num_experts() != E || c.num_ranks() != R) {
      return omni::cli::fail(cmd, omni::invalid_argument_error(omni::str_cat(
                                      "--current ", a.current, " has ", c.summary(), " but the load has ", L,
                                      " layers x ", E, " experts and --num-ranks is ", R)));
    }
  }
  omni::StatusOr<omni::Topology> topo = omni::Topology::single_host(R);
  if (a.num_nodes > 0) {
    if (R % a.num_nodes != 0) {
      return omni::cli::fail(cmd, omni::invalid_argument_error(omni::str_cat(
                                      "--num-ranks ", R, " is not a multiple of --num-nodes ", a.num_nodes)));
    }
    topo = omni::Topology::uniform(R, R / a.num_nodes);
  } else if (current && current->topology) {
    topo = *current->topology;  // same ranks: checked above
  }
  if (!topo.ok()) return omni::cli::fail(cmd, topo.status());
  const int32_t H = topo->num_hosts();

  std::vector<double> coact;
  if (!a.coactivation.empty()) {
    auto c = read_coactivation(a.coactivation, load);
    if (!c.ok()) return omni::cli::fail(cmd, c.status().with_context("--coactivation"));
    coact = std::move(c).value();
  }

  omni::PlanInput in;
  in.load = &load;
  in.num_ranks = R;
  in.num_nodes = H;
  in.num_groups = a.num_groups;
  in.topology = &*topo;
  if (!coact.empty()) in.coactivation = &coact;
  if (current) in.current = &current->placement;
  in.max_moves_per_rank = a.max_moves_per_rank;
  in.min_gain = a.min_gain;
  in.samples = &windows;
  in.serving.dispatch = *omni::parse_dispatch_mode(a.dispatch);  // CLI::IsMember checked the name
  in.serving.window_steps = a.window_steps;
  in.serving.interval_steps = a.interval_steps;
  in.serving.expert_bytes = a.expert_mb * 1e6;
  in.serving.seconds_per_token = a.us_per_token * 1e-6;
  const int32_t base = (E + R - 1) / R;  // slots per rank that hold every expert once
  std::optional<omni::BudgetAllocation> budget;
  if (a.num_replicas > 0) {
    in.num_replicas = a.num_replicas;
  } else if (a.redundant_per_rank >= 0) {
    in.slots_per_rank = {base + a.redundant_per_rank};
  } else if (a.redundant_budget >= 0) {
    const omni::BudgetRule rule = a.budget_rule == "uniform"           ? omni::BudgetRule::kUniform
                                  : a.budget_rule == "heaviest-layers" ? omni::BudgetRule::kHeaviestLayers
                                                                       : omni::BudgetRule::kOptimal;
    auto alloc = omni::allocate_redundancy(load, R, a.redundant_budget, **planner, rule);
    if (!alloc.ok()) return omni::cli::fail(cmd, alloc.status().with_context("--redundant-budget"));
    budget = std::move(alloc).value();
    in.slots_per_rank = budget->slots_per_rank;
  } else if (current) {
    for (omni::LayerId l = 0; l < L; ++l) in.slots_per_rank.push_back(current->placement.slots_per_rank(l));
  } else {
    in.slots_per_rank = {base};
  }
  auto result = (*planner)->plan(in);
  if (!result.ok()) return omni::cli::fail(cmd, result.status());
  const omni::Placement& next = result->placement;

  // Before: the placement in force, else experts in id order with no redundancy.
  omni::Placement before;
  if (current) {
    before = current->placement;
  } else {
    auto c = omni::Placement::contiguous(L, R, E, base);
    if (!c.ok()) return omni::cli::fail(cmd, c.status());
    before = std::move(c).value();
  }
  auto fb = figures_of(before, load, *topo);
  if (!fb.ok()) return omni::cli::fail(cmd, fb.status());
  auto fa = figures_of(next, load, *topo);
  if (!fa.ok()) return omni::cli::fail(cmd, fa.status());
  const std::vector<Move> moves = current ? moves_between(current->placement, next) : std::vector<Move>{};
  const int64_t max_rank_moves = max_moves_per_rank_layer(moves, L, R);

  // Write the placement.
  omni::PlacementFile out;
  out.placement = next;
  const bool to_json_file = a.output.size() >= 5 && a.output.compare(a.output.size() - 5, 5, ".json") == 0;
  if (to_json_file && H > 1) out.topology = *topo;
  omni::PlacementJsonOptions jopt;
  jopt.expert_maps = true;
  const omni::Status written = omni::write_placement_file(a.output, out, omni::NpyDtype::kInt32, jopt);
  if (!written.ok()) return omni::cli::fail(cmd, written.with_context("--output"));

  const std::string canonical = (*planner)->spec();
  if (a.json) {
    nlohmann::json j;
    j["planner"] = canonical;
    if (a.max_moves_per_rank >= 0) j["max_moves_per_rank"] = a.max_moves_per_rank;
    if (a.min_gain >= 0) j["min_gain"] = a.min_gain;
    j["load"] = {{"path", a.loads.back()},
                 {"select", a.selects.empty() ? "" : a.selects.back()},
                 {"num_layers", L},
                 {"num_experts", E}};
    j["windows"] = a.loads.size();
    j["num_ranks"] = R;
    j["num_nodes"] = H;
    j["num_groups"] = a.num_groups;
    std::vector<int32_t> spr;
    for (omni::LayerId l = 0; l < L; ++l) spr.push_back(next.slots_per_rank(l));
    j["slots_per_rank"] = spr;
    if (budget) j["redundant_budget"] = {{"budget", a.redundant_budget}, {"rule", a.budget_rule},
                                         {"redundant_per_rank", budget->redundant_per_rank}};
    j["output"] = a.output;
    j["before"] = figures_json(*fb);
    j["before"]["placement"] = current ? a.current : "contiguous (no redundancy)";
    j["after"] = figures_json(*fa);
    j["plan_seconds"] = result->stats.seconds;
    j["local_search_moves"] = result->stats.local_search_moves;
    j["time_budget_hit"] = result->stats.time_budget_hit;
    if (current) {
      j["moved_experts"] = moves.size();
      j["max_moved_per_rank_per_layer"] = max_rank_moves;
      j["moves"] = nlohmann::json::array();
      for (const Move& m : moves)
        j["moves"].push_back({{"layer", m.layer}, {"rank", m.rank}, {"slot", m.slot}, {"from", m.from}, {"to", m.to}});
    }
    std::cout << j.dump(2) << "\n";
    return omni::cli::kExitOk;
  }
  std::string limits;
  if (a.max_moves_per_rank >= 0) limits += omni::str_cat(", max_moves_per_rank ", a.max_moves_per_rank);
  if (a.min_gain >= 0) limits += omni::str_cat(", min_gain ", a.min_gain);
  std::printf("planner:  %s%s (%.1f ms)\n", canonical.c_str(), limits.c_str(), result->stats.seconds * 1e3);
  std::cout
            << "load:     " << a.loads.back() << (a.selects.empty() ? "" : " [" + a.selects.back() + "]")
            << (a.loads.size() > 1 ? omni::str_cat(", the last of ", a.loads.size(), " windows") : "") << " (" << L
            << " layers x "
            << E << " experts)\n"
            << "ranks:    " << topo->to_string() << "\n"
            << "output:   " << a.output << " (" << next.summary() << ")\n";
  if (budget) {
    std::cout << "budget:   " << a.redundant_budget << " redundant slots per rank over all layers (" << a.budget_rule
              << "); per layer:";
    for (int32_t k : budget->redundant_per_rank) std::cout << " " << k;
    std::cout << "\n";
  }
  const char* before_name = current ? "current" : "contiguous";
  auto row = [&](const char* name, const Figures& f) {
    std::printf("%-10s %8.3f %12.1f %12.1f %8.3f %6lld", name, f.balance.mean_max_over_mean, f.balance.sum_max,
                f.balance.sum_lower_bound, f.balance.sum_lower_bound > 0 ? f.balance.sum_max / f.balance.sum_lower_bound : 1.0,
                static_cast<long long>(f.duplicates));
    if (H > 1) std::printf(" %10.3f %10.3f", f.traffic.cross_host, f.coverage.host.load_share);
    std::printf(" %10.3f\n", f.coverage.rank.load_share);
  };
  std::printf("\n%-10s %8s %12s %12s %8s %6s", "", "max/mean", "sum_max", "lower_bound", "ratio", "dups");
  if (H > 1) std::printf(" %10s %10s", "cross_host", "host_cov");
  std::printf(" %10s\n", "rank_cov");
  row(before_name, *fb);
  row("plan", *fa);
  std::cout << "\nmax/mean: mean over layers of the busiest rank's load over the mean (1.0 is perfect); sum_max:\n"
               "sum over layers of the busiest rank's load (tokens), lower_bound the least any placement with these\n"
               "slots can reach; dups: replicas sharing a rank with their expert; "
            << (H > 1 ? "cross_host: share of tokens sent\nto another host (nearest replica); host_cov/rank_cov: share of "
                                  "the load whose expert\nsurvives any single host/rank failure.\n"
                                : "rank_cov: share of the load whose\nexpert survives any single rank failure.\n");
  if (current) {
    std::printf("\nmoved experts: %zu (at most %lld on one rank in one layer)\n", moves.size(),
                static_cast<long long>(max_rank_moves));
    const size_t shown = std::min(moves.size(), static_cast<size_t>(std::max(0, a.show_moves)));
    for (size_t k = 0; k < shown; ++k) {
      const Move& m = moves[k];
      std::printf("  layer %d rank %d slot %d: ", m.layer, m.rank, m.slot);
      if (m.from == omni::kEmptySlot) std::printf("empty");
      else std::printf("expert %d", m.from);
      std::printf(" -> expert %d\n", m.to);
    }
    if (shown < moves.size()) std::printf("  ... %zu more (--show-moves N, or --json for all)\n", moves.size() - shown);
  }
  return omni::cli::kExitOk;
}

omni::cli::RunFn setup_plan(CLI::App& app) {
  auto args = std::make_shared<PlanArgs>();
  auto* sub = app.add_subcommand("plan", "Plan a placement from a load with a planner (eplb, omni, ...) and write it");
  sub->add_option("--load", args->loads,
                  "Load: .npy/.csv [layers, experts], trace .csv (with --select), an activation dump .txt (needs "
                  "--current) or a dump directory. Give it several times for the recent windows, oldest first: omni "
                  "forecasts the next window from them; the last is the load the summary reports")
      ->required()
      ->take_all();
  sub->add_option("--select", args->selects,
                  "Trace window, e.g. dataset=bookcorpus,iteration=0: once (every --load) or once per --load");
  sub->add_option("--planner", args->planner, "Planner spec (default omni), e.g. eplb, 'eplb(hierarchical)', "
                                              "'omni(max_replicas_per_expert=8)'");
  sub->add_option("--num-ranks", args->num_ranks, "Ranks of the expert-parallel group (default: --current's)")
      ->check(CLI::Range(1, omni::kMaxRanks));
  sub->add_option("--num-nodes", args->num_nodes, "Hosts (ranks split evenly, in order); default: --current's topology, else 1")
      ->check(CLI::Range(1, omni::kMaxRanks));
  auto* replicas = sub->add_option("--num-replicas", args->num_replicas,
                                   "Slots per layer over all ranks (a multiple of --num-ranks), as EPLB's num_replicas")
                       ->check(omni::cli::int_range(1, omni::kMaxSlotsPerLayer));
  auto* per_rank = sub->add_option("--redundant-per-rank", args->redundant_per_rank,
                                   "Redundant slots per rank in every layer, on top of ceil(experts / ranks)")
                       ->check(omni::cli::int_range(0, omni::kMaxSlotsPerRank));
  auto* budget = sub->add_option("--redundant-budget", args->redundant_budget,
                                 "Redundant slots per rank summed over all layers, spread layer-wise unevenly "
                                 "(redundancy_budget.h)")
                     ->check(omni::cli::int_range(0, int64_t{omni::kMaxSlotsPerRank} * omni::kMaxLayers));
  replicas->excludes(per_rank)->excludes(budget);
  per_rank->excludes(budget);
  sub->add_option("--budget-rule", args->budget_rule,
                  "How --redundant-budget is split: optimal (default), uniform, heaviest-layers")
      ->check(CLI::IsMember({"optimal", "uniform", "heaviest-layers"}))
      ->needs(budget);
  sub->add_option("--num-groups", args->num_groups, "Expert groups (EPLB's num_groups); default 1")
      ->check(CLI::Range(1, omni::kMaxExperts));
  sub->add_option("--current", args->current,
                  "The placement in force (.json/.npy/.txt/.bin): incremental planning, prints the moves")
      ->check(CLI::ExistingFile);
  sub->add_option("--coactivation", args->coactivation,
                  ".npy [layers, experts, experts]: tokens routed to both experts (for omni(locality=coactivation))")
      ->check(CLI::ExistingFile);
  sub->add_option("--max-moves-per-rank", args->max_moves_per_rank,
                  "With --current: most slots per rank per layer that may change (-1: the planner's own setting)")
      ->check(CLI::Range(-1, omni::kMaxSlotsPerRank));
  sub->add_option("--min-gain", args->min_gain,
                  "With --current: keep the current placement unless max/mean improves by this")
      ->check(omni::cli::number_range(0, 1e6));
  sub->add_option("--output", args->output,
                  "Output: .json (placement JSON with log2phy/logcnt) or an omni-infer pattern .npy/.txt/.bin")
      ->required();
  sub->add_option("--show-moves", args->show_moves, "With --current: moves listed in the text output (default 20)")
      ->check(omni::cli::int_range(0, std::numeric_limits<int>::max()));
  sub->add_flag("--json", args->json, "Print one JSON object instead of the summary");
  const std::string sv = "Serving (omni prices each move against the step time it saves)";
  sub->add_option("--dispatch", args->dispatch, "How tokens are split over replicas: shares or per-batch")
      ->check(CLI::IsMember({"shares", "per-batch"}))->group(sv)->capture_default_str();
  sub->add_option("--window-steps", args->window_steps, "Steps each --load window was counted over")
      ->check(omni::cli::int_range(1, int64_t{1} << 40))->group(sv)->capture_default_str();
  sub->add_option("--interval-steps", args->interval_steps, "Steps the plan serves until the next re-plan (0: one window)")
      ->check(omni::cli::int_range(0, int64_t{1} << 40))->group(sv)->capture_default_str();
  sub->add_option("--expert-mb", args->expert_mb, "Bytes of one expert's weights, MB")
      ->check(omni::cli::number_range(0, 1e9))->group(sv)->capture_default_str();
  sub->add_option("--us-per-token", args->us_per_token, "Expert compute per token-expert assignment, us")
      ->check(omni::cli::number_range(1e-9, 1e9))->group(sv)->capture_default_str();
  sub->footer(
      "Slots: --num-replicas, --redundant-per-rank or --redundant-budget (at most one); with none, every rank\n"
      "gets ceil(experts / ranks) slots (rearrangement only), or --current's slots.\n"
      "The summary compares the plan with the placement in force (--current) or with contiguous placement.\n"
      "Planners: " +
      omni::planner_help() +
      "\nExit codes: 0 ok, 1 invalid input, 2 usage.\n"
      "Examples:\n"
      "  omniplace plan --load data/traces/qwen15moe_expert_freq_by_iteration.csv \\\n"
      "      --select dataset=bookcorpus,iteration=0 --planner omni --num-ranks 12 --redundant-per-rank 1 \\\n"
      "      --output plan.json\n"
      "  omniplace plan --load data/traces/qwen15moe_expert_freq_by_iteration.csv \\\n"
      "      --select dataset=wikitext,iteration=0 --num-ranks 12 --current plan.json --max-moves-per-rank 1 \\\n"
      "      --output next.json\n"
      "  omniplace plan --load data/traces/olmoe_expert_counts.csv --select domain=arxiv --planner eplb \\\n"
      "      --num-ranks 16 --num-nodes 2 --num-replicas 80 --output olmoe.npy\n"
      "  omniplace plan --load data/traces/qwen15moe_expert_freq_by_iteration.csv \\\n"
      "      --select dataset=bookcorpus,iteration=0 --num-ranks 12 --redundant-budget 12 --output uneven.json\n"
      "  omniplace plan --load data/windows --num-ranks 4 --planner 'omni(spread_hosts=true,protect=0.5)' --num-nodes 2 \\\n"
      "      --redundant-per-rank 1 --output w.json --json");
  return [args] { return run_plan(*args); };
}

}  // namespace

OMNI_CLI_COMMAND(plan, 25, setup_plan);
