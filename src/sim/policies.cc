#include "omniplacement/sim/policies.h"

#include <memory>

#include "omniplacement/core/placement.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/planner/planner.h"

namespace omni::sim {

std::vector<std::string> standard_policy_names() {
  return {"contiguous", "static-eplb", "static-omni", "dynamic-eplb", "dynamic-omni", "oracle"};
}

StatusOr<PlanFn> planner_plan_fn(std::string_view spec, const PolicyContext& ctx, bool incremental) {
  OMNI_ASSIGN_OR_RETURN(std::unique_ptr<Planner> planner, make_planner(spec));
  std::shared_ptr<const Planner> shared(std::move(planner));
  auto context = std::make_shared<const PolicyContext>(ctx);
  return PlanFn([shared, context, incremental](const LoadMatrix& window, const Placement* current,
                                               const std::vector<LoadMatrix>& samples) -> StatusOr<Placement> {
    PlanInput in;
    in.load = &window;
    in.num_ranks = context->topology.num_ranks();
    in.slots_per_rank = {context->slots_per_rank};
    in.num_groups = context->num_groups;
    in.topology = &context->topology;
    in.current = incremental ? current : nullptr;
    in.samples = &samples;
    in.serving = context->serving;
    OMNI_ASSIGN_OR_RETURN(PlanResult r, shared->plan(in));
    return std::move(r.placement);
  });
}

namespace {

struct Parsed {
  PolicyKind kind;
  std::string spec;
  bool incremental = false;
};

StatusOr<Parsed> parse_policy(std::string_view name, const PolicyContext& ctx) {
  if (name == "static-eplb") return Parsed{PolicyKind::kStatic, ctx.eplb_spec};
  if (name == "static-omni") return Parsed{PolicyKind::kStatic, ctx.omni_spec};
  if (name == "dynamic-eplb") return Parsed{PolicyKind::kDynamic, ctx.eplb_spec};
  if (name == "dynamic-omni") return Parsed{PolicyKind::kDynamic, ctx.dynamic_omni_spec, true};
  if (name == "oracle") return Parsed{PolicyKind::kOracle, ctx.oracle_spec};
  const size_t colon = name.find(':');
  if (colon != std::string_view::npos) {
    const std::string_view kind = name.substr(0, colon);
    const std::string spec(name.substr(colon + 1));
    if (kind == "static") return Parsed{PolicyKind::kStatic, spec};
    if (kind == "dynamic") return Parsed{PolicyKind::kDynamic, spec, true};
    if (kind == "oracle") return Parsed{PolicyKind::kOracle, spec};
  }
  std::string valid;
  for (const std::string& n : standard_policy_names()) valid += n + ", ";
  return invalid_argument_error(str_cat("simulate: unknown policy '", name, "' (valid: ", valid,
                                        "or <static|dynamic|oracle>:<planner spec>)"));
}

}  // namespace

StatusOr<PolicySpec> make_policy(std::string_view name, const PolicyContext& ctx) {
  if (name == "contiguous") {
    OMNI_ASSIGN_OR_RETURN(Placement p, Placement::contiguous(ctx.num_layers, ctx.topology.num_ranks(),
                                                             ctx.num_experts, ctx.slots_per_rank));
    return PolicySpec::fixed(std::string(name), std::move(p));
  }
  OMNI_ASSIGN_OR_RETURN(Parsed parsed, parse_policy(name, ctx));
  OMNI_ASSIGN_OR_RETURN(PlanFn plan, planner_plan_fn(parsed.spec, ctx, parsed.incremental));
  switch (parsed.kind) {
    case PolicyKind::kStatic: return PolicySpec::static_plan(std::string(name), std::move(plan));
    case PolicyKind::kDynamic: return PolicySpec::dynamic(std::string(name), std::move(plan));
    case PolicyKind::kOracle: return PolicySpec::oracle(std::string(name), std::move(plan));
    case PolicyKind::kFixed: break;
  }
  return internal_error(str_cat("simulate: policy '", name, "' has no planner kind"));
}

StatusOr<std::vector<PolicySpec>> make_policies(std::string_view names, const PolicyContext& ctx) {
  std::vector<PolicySpec> out;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= names.size(); ++i) {
    const char c = i < names.size() ? names[i] : ',';
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c != ',' || depth > 0) continue;
    const std::string_view item = names.substr(start, i - start);
    start = i + 1;
    if (item.empty()) continue;
    OMNI_ASSIGN_OR_RETURN(PolicySpec p, make_policy(item, ctx));
    out.push_back(std::move(p));
  }
  if (out.empty()) return invalid_argument_error(str_cat("simulate: no policy in '", names, "'"));
  return out;
}

}  // namespace omni::sim
