// PlanInput resolution, the built-in planners' spec handling and the registry.
#include "omniplacement/planner/planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/planner/eplb.h"
#include "omniplacement/planner/omni_planner.h"
#include "omniplacement/planner/planner_spec.h"
#include "planner_common.h"

namespace omni {

std::vector<std::vector<int32_t>> replica_rank_by_slot(const PlacementLayout& layout) {
  std::vector<std::vector<int32_t>> rank(layout.phy2log.size());
  std::vector<int32_t> seen(static_cast<size_t>(layout.num_experts));
  for (size_t l = 0; l < layout.phy2log.size(); ++l) {
    std::fill(seen.begin(), seen.end(), 0);
    rank[l].resize(layout.phy2log[l].size(), -1);
    for (size_t g = 0; g < layout.phy2log[l].size(); ++g) {
      const ExpertId e = layout.phy2log[l][g];
      if (e >= 0) rank[l][g] = seen[static_cast<size_t>(e)]++;
    }
  }
  return rank;
}

int64_t slots_changed(const Placement& current, const Placement& next) {
  int64_t n = 0;
  for (LayerId l = 0; l < next.num_layers(); ++l) {
    const int32_t So = current.slots_per_rank(l), Sn = next.slots_per_rank(l);
    for (RankId r = 0; r < next.num_ranks(); ++r)
      for (SlotId s = 0; s < Sn; ++s) {
        const ExpertId e = next.expert_at(l, r, s);
        if (e != kEmptySlot && (s >= So || current.expert_at(l, r, s) != e)) ++n;
      }
  }
  return n;
}

StatusOr<std::vector<int32_t>> PlanInput::resolve_slots_per_rank() const {
  if (load == nullptr) return invalid_argument_error("plan: PlanInput::load is required");
  const int32_t L = load->num_layers(), E = load->num_experts();
  if (L < 1 || E < 1) return invalid_argument_error(str_cat("plan: empty load matrix (", L, " x ", E, ")"));
  if (num_ranks < 1 || num_ranks > kMaxRanks) {
    return invalid_argument_error(str_cat("plan: num_ranks must be in [1, ", kMaxRanks, "], got ", num_ranks));
  }
  std::vector<int32_t> spr;
  if (!slots_per_rank.empty()) {
    if (slots_per_rank.size() == 1) {
      spr.assign(static_cast<size_t>(L), slots_per_rank[0]);
    } else if (static_cast<int32_t>(slots_per_rank.size()) == L) {
      spr = slots_per_rank;
    } else {
      return invalid_argument_error(str_cat("plan: slots_per_rank has ", slots_per_rank.size(),
                                            " entries; give 1 (all layers) or num_layers = ", L));
    }
  } else {
    if (num_replicas <= 0 || num_replicas % num_ranks != 0) {
      return invalid_argument_error(str_cat("plan: num_replicas (", num_replicas,
                                            ") must be a positive multiple of num_ranks (", num_ranks,
                                            "), or give slots_per_rank"));
    }
    if (num_replicas / num_ranks > kMaxSlotsPerRank) {
      return invalid_argument_error(str_cat("plan: num_replicas / num_ranks = ", num_replicas / num_ranks,
                                            " exceeds ", kMaxSlotsPerRank, " slots per rank"));
    }
    spr.assign(static_cast<size_t>(L), static_cast<int32_t>(num_replicas / num_ranks));
  }
  const int32_t need = (E + num_ranks - 1) / num_ranks;
  for (size_t l = 0; l < spr.size(); ++l) {
    if (spr[l] < need || spr[l] > kMaxSlotsPerRank ||
        static_cast<int64_t>(spr[l]) * num_ranks > kMaxSlotsPerLayer) {
      return invalid_argument_error(str_cat("plan: layer ", l, ": ", spr[l], " slots per rank; ", E, " experts on ",
                                            num_ranks, " ranks need at least ", need, " (and at most ",
                                            std::min<int64_t>(kMaxSlotsPerRank, kMaxSlotsPerLayer / num_ranks), ")"));
    }
  }
  return spr;
}

Status ServingModel::validate() const {
  if (window_steps < 1) return invalid_argument_error(str_cat("serving: window_steps must be >= 1, got ", window_steps));
  if (interval_steps < 0)
    return invalid_argument_error(str_cat("serving: interval_steps must be >= 0 (0: window_steps), got ", interval_steps));
  if (!(seconds_per_token > 0) || !std::isfinite(seconds_per_token))
    return invalid_argument_error(str_cat("serving: seconds_per_token must be finite and > 0, got ", seconds_per_token));
  if (!(expert_bytes >= 0) || !std::isfinite(expert_bytes))
    return invalid_argument_error(str_cat("serving: expert_bytes must be finite and >= 0, got ", expert_bytes));
  return ok_status();
}

StatusOr<int32_t> PlanInput::resolve_num_nodes() const {
  if (num_nodes < 0) return invalid_argument_error(str_cat("plan: num_nodes must be >= 0, got ", num_nodes));
  if (topology != nullptr) {
    if (topology->num_ranks() != num_ranks) {
      return invalid_argument_error(
          str_cat("plan: topology has ", topology->num_ranks(), " ranks, num_ranks is ", num_ranks));
    }
    if (num_nodes != 0 && num_nodes != topology->num_hosts()) {
      return invalid_argument_error(
          str_cat("plan: num_nodes (", num_nodes, ") differs from the topology's ", topology->num_hosts(), " hosts"));
    }
    return topology->num_hosts();
  }
  return num_nodes == 0 ? 1 : num_nodes;
}

namespace {

// Planners that plan from scratch cannot honour PlanInput's incremental limits.
Status refuse_incremental_limits(const PlanInput& in, const char* name) {
  if (in.max_moves_per_rank >= 0 || in.min_gain >= 0)
    return invalid_argument_error(str_cat(name, " plans from scratch: it cannot honour max_moves_per_rank (",
                                          in.max_moves_per_rank, ") or min_gain (", in.min_gain,
                                          "); leave them unset (-1) or use an incremental planner such as omni"));
  return ok_status();
}

// ---- contiguous ----------------------------------------------------------------
class ContiguousPlanner final : public Planner {
 public:
  std::string name() const override { return "contiguous"; }
  std::string spec() const override { return "contiguous"; }
  StatusOr<PlanResult> plan(const PlanInput& in) const override {
    OMNI_RETURN_IF_ERROR(refuse_incremental_limits(in, "contiguous"));
    const auto start = std::chrono::steady_clock::now();
    OMNI_ASSIGN_OR_RETURN(std::vector<int32_t> spr, in.resolve_slots_per_rank());
    const int32_t L = in.load->num_layers(), E = in.load->num_experts(), R = in.num_ranks;
    PlacementLayout layout;
    layout.num_ranks = R;
    layout.num_experts = E;
    layout.slots_per_rank = spr;
    for (LayerId l = 0; l < L; ++l) {
      const int32_t S = spr[static_cast<size_t>(l)];
      std::vector<ExpertId> row(static_cast<size_t>(R) * static_cast<size_t>(S), kEmptySlot);
      ExpertId e = 0;
      for (RankId r = 0; r < R; ++r) {
        const int32_t n = E / R + (r < E % R ? 1 : 0);
        for (int32_t s = 0; s < n; ++s) row[static_cast<size_t>(r) * static_cast<size_t>(S) + static_cast<size_t>(s)] = e++;
      }
      layout.phy2log.push_back(std::move(row));
    }
    PlanResult result;
    result.replica_rank = replica_rank_by_slot(layout);
    OMNI_ASSIGN_OR_RETURN(result.placement, Placement::create(std::move(layout)));
    result.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
  }
};

// ---- eplb ----------------------------------------------------------------------
class EplbPlanner final : public Planner {
 public:
  explicit EplbPlanner(EplbPolicy policy) : policy_(policy) {}
  std::string name() const override { return "eplb"; }
  std::string spec() const override {
    switch (policy_) {
      case EplbPolicy::kHierarchical: return "eplb(hierarchical)";
      case EplbPolicy::kGlobal: return "eplb(global)";
      case EplbPolicy::kAuto: break;
    }
    return "eplb";
  }
  StatusOr<PlanResult> plan(const PlanInput& in) const override {
    OMNI_RETURN_IF_ERROR(refuse_incremental_limits(in, "eplb"));
    const auto start = std::chrono::steady_clock::now();
    OMNI_ASSIGN_OR_RETURN(std::vector<int32_t> spr, in.resolve_slots_per_rank());
    OMNI_ASSIGN_OR_RETURN(int32_t nodes, in.resolve_num_nodes());
    const LoadMatrix& load = *in.load;
    const int32_t L = load.num_layers(), R = in.num_ranks;
    PlacementLayout layout;
    layout.num_ranks = R;
    layout.num_experts = load.num_experts();
    layout.slots_per_rank = spr;
    layout.phy2log.resize(static_cast<size_t>(L));
    PlanResult result;
    result.replica_rank.resize(static_cast<size_t>(L));
    // EPLB plans all layers with one slot count; layer-wise uneven input is
    // planned in runs of consecutive layers with equal slots per rank.
    for (LayerId first = 0; first < L;) {
      LayerId last = first + 1;
      while (last < L && spr[static_cast<size_t>(last)] == spr[static_cast<size_t>(first)]) ++last;
      const int32_t S = spr[static_cast<size_t>(first)];
      StatusOr<LoadMatrix> part = first == 0 && last == L ? StatusOr<LoadMatrix>(load) : load.layers(first, last - first);
      if (!part.ok()) return part.status();
      OMNI_ASSIGN_OR_RETURN(EplbResult r, eplb_rebalance(*part, R * S, in.num_groups, nodes, R, policy_));
      result.stats.policy = r.hierarchical ? "hierarchical" : "global";
      for (LayerId l = first; l < last; ++l) {
        const size_t off = static_cast<size_t>(l - first) * static_cast<size_t>(R * S);
        layout.phy2log[static_cast<size_t>(l)].assign(r.phy2log.begin() + static_cast<ptrdiff_t>(off),
                                                      r.phy2log.begin() + static_cast<ptrdiff_t>(off + static_cast<size_t>(R * S)));
        result.replica_rank[static_cast<size_t>(l)].assign(r.phyrank.begin() + static_cast<ptrdiff_t>(off),
                                                           r.phyrank.begin() + static_cast<ptrdiff_t>(off + static_cast<size_t>(R * S)));
      }
      first = last;
    }
    OMNI_ASSIGN_OR_RETURN(result.placement, Placement::create(std::move(layout)));
    result.stats.same_rank_duplicates = same_rank_duplicates(result.placement);
    result.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
  }

 private:
  EplbPolicy policy_;
};

// ---- omni ----------------------------------------------------------------------
class OmniPlanner final : public Planner {
 public:
  explicit OmniPlanner(OmniOptions opt) : opt_(opt) {}
  std::string name() const override { return "omni"; }
  std::string spec() const override {
    const OmniOptions d;
    PlannerSpec s{"omni", {}};
    auto add = [&](const char* key, std::string value) { s.params.push_back({key, std::move(value)}); };
    if (opt_.forecast != d.forecast) add("forecast", opt_.forecast ? "true" : "false");
    if (opt_.max_replicas_per_expert != d.max_replicas_per_expert)
      add("max_replicas_per_expert", std::to_string(opt_.max_replicas_per_expert));
    if (opt_.time_budget_ms != d.time_budget_ms) add("time_budget_ms", str_cat(opt_.time_budget_ms));
    if (opt_.shares != d.shares) add("shares", opt_.shares ? "true" : "false");
    if (opt_.reallocate != d.reallocate) add("reallocate", opt_.reallocate ? "true" : "false");
    if (opt_.locality != d.locality) add("locality", locality_name(opt_.locality));
    if (opt_.locality_slack != d.locality_slack) add("locality_slack", str_cat(opt_.locality_slack));
    if (opt_.max_iterations != d.max_iterations) add("max_iterations", std::to_string(opt_.max_iterations));
    if (opt_.max_moves_per_rank != d.max_moves_per_rank) add("max_moves_per_rank", std::to_string(opt_.max_moves_per_rank));
    if (opt_.spread_hosts != d.spread_hosts) add("spread_hosts", opt_.spread_hosts ? "true" : "false");
    if (opt_.protect != d.protect) add("protect", str_cat(opt_.protect));
    return s.to_string();
  }
  StatusOr<PlanResult> plan(const PlanInput& in) const override {
    if (in.max_moves_per_rank < -1)
      return invalid_argument_error(
          str_cat("omni: PlanInput::max_moves_per_rank ", in.max_moves_per_rank, " (valid: -1 or >= 0)"));
    OmniOptions o = opt_;  // the typed limit of this call overrides the spec's
    if (in.max_moves_per_rank >= 0) o.max_moves_per_rank = in.max_moves_per_rank;
    OMNI_ASSIGN_OR_RETURN(PlanResult result, omni_plan(in, o));
    // min_gain > 0: keep the placement in force when the plan does not improve
    // `load`'s mean over layers of max / mean rank load by at least that much
    // (a check on the window; omni's own plan is priced for the next interval).
    if (in.min_gain > 0 && in.current != nullptr) {
      const Placement& cur = *in.current;
      bool same_shape = cur.num_layers() == result.placement.num_layers();
      for (LayerId l = 0; same_shape && l < cur.num_layers(); ++l)
        same_shape = cur.slots_per_rank(l) == result.placement.slots_per_rank(l);
      if (same_shape) {
        OMNI_ASSIGN_OR_RETURN(PlacementBalance before, placement_balance(cur, *in.load));
        OMNI_ASSIGN_OR_RETURN(PlacementBalance after, placement_balance(result.placement, *in.load));
        if (before.mean_max_over_mean - after.mean_max_over_mean < in.min_gain) {
          result.placement = cur;
          result.replica_rank = replica_rank_by_slot(cur.layout());
          result.stats.slots_changed = 0;
          result.stats.skipped = true;
        }
      }
    }
    return result;
  }
  bool takes_incremental_limits() const override { return true; }

 private:
  OmniOptions opt_;
};

constexpr const char* kEplbParams = "one flag: hierarchical or global (default: hierarchical when num_groups % num_nodes == 0)";
constexpr const char* kOmniParams =
    "forecast=<true|false>, max_replicas_per_expert=<int >= 0, 0 = num_ranks>, time_budget_ms=<number >= 0, 0 = none>, "
    "shares=<true|false>, reallocate=<true|false>, locality=<none|groups|coactivation|spread>, "
    "locality_slack=<number in [0, 10]>, max_iterations=<int >= 0, 0 = automatic>, "
    "max_moves_per_rank=<int >= -1, -1 = no limit>, spread_hosts=<true|false>, protect=<number in [0, 1]>";

using Factory = std::function<StatusOr<std::unique_ptr<Planner>>(const PlannerSpec&)>;

struct Entry {
  Factory factory;
  const char* help;
};

const std::map<std::string, Entry>& registry() {
  static const std::map<std::string, Entry> r = {
      {"contiguous",
       {[](const PlannerSpec& s) -> StatusOr<std::unique_ptr<Planner>> {
          SpecReader reader(s);
          OMNI_RETURN_IF_ERROR(reader.finish("none"));
          return std::unique_ptr<Planner>(new ContiguousPlanner());
        },
        "contiguous: experts in id order over ranks, redundant slots empty; no parameters"}},
      {"eplb",
       {[](const PlannerSpec& s) -> StatusOr<std::unique_ptr<Planner>> {
          SpecReader reader(s);
          OMNI_ASSIGN_OR_RETURN(std::string flag, reader.get_flag("auto", {"auto", "hierarchical", "global"}));
          OMNI_RETURN_IF_ERROR(reader.finish(kEplbParams));
          const EplbPolicy p = flag == "hierarchical" ? EplbPolicy::kHierarchical
                               : flag == "global"     ? EplbPolicy::kGlobal
                                                      : EplbPolicy::kAuto;
          return std::unique_ptr<Planner>(new EplbPlanner(p));
        },
        "eplb[(hierarchical|global)]: DeepSeek EPLB, bit-for-bit"}},
      {"omni",
       {[](const PlannerSpec& s) -> StatusOr<std::unique_ptr<Planner>> {
          SpecReader reader(s);
          OmniOptions o;
          OMNI_ASSIGN_OR_RETURN(o.forecast, reader.get_bool("forecast", true));
          OMNI_ASSIGN_OR_RETURN(int64_t cap, reader.get_int("max_replicas_per_expert", 0, 0, kMaxRanks));
          OMNI_ASSIGN_OR_RETURN(o.time_budget_ms, reader.get_double("time_budget_ms", 0, 0, 1e9));
          OMNI_ASSIGN_OR_RETURN(o.shares, reader.get_bool("shares", false));
          OMNI_ASSIGN_OR_RETURN(o.reallocate, reader.get_bool("reallocate", true));
          OMNI_ASSIGN_OR_RETURN(std::string loc,
                                reader.get_choice("locality", "none", {"none", "groups", "coactivation", "spread"}));
          OMNI_ASSIGN_OR_RETURN(o.locality_slack, reader.get_double("locality_slack", 0.05, 0, 10));
          OMNI_ASSIGN_OR_RETURN(o.max_iterations, reader.get_int("max_iterations", 0, 0, int64_t{1} << 40));
          OMNI_ASSIGN_OR_RETURN(int64_t moves, reader.get_int("max_moves_per_rank", -1, -1, kMaxSlotsPerRank));
          OMNI_ASSIGN_OR_RETURN(o.spread_hosts, reader.get_bool("spread_hosts", false));
          OMNI_ASSIGN_OR_RETURN(o.protect, reader.get_double("protect", 0, 0, 1));
          OMNI_RETURN_IF_ERROR(reader.finish(kOmniParams));
          o.max_moves_per_rank = static_cast<int32_t>(moves);
          o.max_replicas_per_expert = static_cast<int32_t>(cap);
          o.locality = loc == "groups"         ? Locality::kGroups
                       : loc == "coactivation" ? Locality::kCoactivation
                       : loc == "spread"       ? Locality::kSpread
                                               : Locality::kNone;
          return std::unique_ptr<Planner>(new OmniPlanner(o));
        },
        "omni(...): the OmniPlacement planner; parameters: "}},
  };
  return r;
}

}  // namespace

StatusOr<std::unique_ptr<Planner>> make_planner(std::string_view spec) {
  OMNI_ASSIGN_OR_RETURN(PlannerSpec parsed, PlannerSpec::parse(spec));
  const auto& r = registry();
  const auto it = r.find(parsed.name);
  if (it == r.end()) {
    std::string names;
    for (const auto& [name, entry] : r) names += (names.empty() ? "" : ", ") + name;
    return not_found_error(str_cat("unknown planner '", parsed.name, "' in spec '", spec, "'; registered: ", names));
  }
  return it->second.factory(parsed);
}

StatusOr<std::string> canonical_spec(std::string_view spec) {
  OMNI_ASSIGN_OR_RETURN(std::unique_ptr<Planner> p, make_planner(spec));
  return p->spec();
}

std::vector<std::string> planner_names() {
  std::vector<std::string> names;
  for (const auto& [name, entry] : registry()) names.push_back(name);
  return names;
}

std::string planner_help() {
  std::string s;
  for (const auto& [name, entry] : registry()) {
    s += entry.help;
    if (name == "omni") s += kOmniParams;
    s += "\n";
  }
  return s;
}

}  // namespace omni
