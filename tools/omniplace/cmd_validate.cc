// omniplace validate FILE: checks a placement, load, trace, dump or config file.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "omniplace/arg_checks.h"
#include "omniplace/command.h"
#include "omniplace/inputs.h"
#include "omniplace/json_out.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/core/validation.h"
#include "omniplacement/io/config.h"
#include "omniplacement/io/file_kind.h"
#include "omniplacement/io/trace.h"

namespace {

struct ValidateArgs {
  std::string file;
  std::string placement;  // placement in force, for a dump
  std::string select;
  bool strict = false;
  int max_replicas = 0;
  bool json = false;
};

int validate_placement(const ValidateArgs& a) {
  omni::ValidationRules rules;
  rules.forbid_same_rank_duplicates = a.strict;
  rules.max_replicas_per_expert = a.max_replicas;
  // Read with structure checks only, then list every violation of the rules.
  auto f = omni::read_placement_file(a.file);
  if (!f.ok()) return omni::cli::fail("validate", f.status());
  const omni::Placement& p = f->placement;
  const int64_t dups = omni::same_rank_duplicates(p);
  int32_t lo = p.num_replicas(0), hi = lo;
  for (omni::LayerId l = 1; l < p.num_layers(); ++l) {
    lo = std::min(lo, p.num_replicas(l));
    hi = std::max(hi, p.num_replicas(l));
  }
  const auto violations = p.validate(rules);
  if (a.json) {
    nlohmann::json j{{"file", a.file}, {"kind", "placement"}, {"placement", omni::cli::placement_json(p)}};
    j["topology"] = f->topology ? nlohmann::json(f->topology->to_string()) : nlohmann::json(nullptr);
    j["replicas_per_layer"] = {{"min", lo}, {"max", hi}};
    j["same_rank_duplicates"] = dups;
    j["violations"] = nlohmann::json::array();
    for (const auto& v : violations) {
      j["violations"].push_back({{"kind", omni::violation_kind_name(v.kind)},
                                 {"layer", v.layer},
                                 {"rank", v.rank},
                                 {"slot", v.slot},
                                 {"expert", v.expert},
                                 {"message", v.message}});
    }
    j["valid"] = violations.empty();
    omni::cli::print_json(j);
  } else {
    std::cout << a.file << ": placement, " << p.summary();
    if (f->topology) std::cout << ", topology " << f->topology->to_string();
    if (p.has_shares()) std::cout << ", explicit shares";
    std::cout << "\n";
    std::cout << "  replicas per layer: " << lo << (lo == hi ? "" : " to " + std::to_string(hi))
              << "; same-rank duplicates: " << dups << "\n";
    for (const auto& v : violations)
      std::cout << "  " << omni::violation_kind_name(v.kind) << ": " << v.message << "\n";
  }
  if (!violations.empty()) {
    std::cerr << "omniplace validate: " << a.file << ": " << violations.size() << " violation(s)\n";
    return omni::cli::kExitInvalidInput;
  }
  if (!a.json) std::cout << "OK\n";
  return omni::cli::kExitOk;
}

void print_load(const std::string& what, const omni::LoadMatrix& m) {
  double total = 0;
  for (omni::LayerId l = 0; l < m.num_layers(); ++l) total += m.layer_total(l);
  std::cout << what << ", " << m.num_layers() << " layers x " << m.num_experts() << " experts, "
            << (m.is_counts() ? "counts" : "weights") << ", total " << total << "\n";
}

// Every kind but a placement. With --json the facts printed as text go into
// one JSON object instead ({"file", "kind", <kind's fields>, "valid"}).
int run_validate(const ValidateArgs& a) {
  auto kind = omni::detect_file_kind(a.file, !a.placement.empty());
  if (!kind.ok()) return omni::cli::fail("validate", kind.status());
  // Options that do not apply to this kind of file are refused, not ignored.
  if (!a.select.empty() && *kind != omni::FileKind::kTrace) {
    std::cerr << "omniplace validate: --select picks one window of a trace CSV (data/traces); " << a.file << " is a "
              << omni::file_kind_name(*kind)
              << (*kind == omni::FileKind::kLoad ? " file, which has a single window" : " file")
              << ": drop --select\n";
    return omni::cli::kExitUsage;
  }
  if (!a.placement.empty() && *kind != omni::FileKind::kDump) {
    std::cerr << "omniplace validate: --placement gives the placement in force for an activation dump (.txt); "
              << a.file << " is a " << omni::file_kind_name(*kind) << " file: drop --placement\n";
    return omni::cli::kExitUsage;
  }
  nlohmann::json j{{"file", a.file}};
  switch (*kind) {
    case omni::FileKind::kPlacement: return validate_placement(a);
    case omni::FileKind::kLoad: {
      auto m = omni::read_load_file(a.file);
      if (!m.ok()) return omni::cli::fail("validate", m.status());
      j["kind"] = "load";
      j["load"] = omni::cli::load_json(*m);
      if (!a.json) print_load(a.file + ": load", *m);
      break;
    }
    case omni::FileKind::kTrace: {
      auto t = omni::Trace::read_csv(a.file);
      if (!t.ok()) return omni::cli::fail("validate", t.status());
      const bool per_domain = t->layout() == omni::TraceLayout::kPerDomain;
      j["kind"] = "trace";
      j["trace"] = {{"num_windows", t->windows().size()},
                    {"num_layers", t->num_layers()},
                    {"num_experts", t->num_experts()},
                    {"layout", per_domain ? "per domain" : "per iteration"},
                    {"first_window", t->windows().front().label()},
                    {"last_window", t->windows().back().label()}};
      if (!a.json) {
        std::cout << a.file << ": trace, " << t->windows().size() << " windows of " << t->num_layers() << " layers x "
                  << t->num_experts() << " experts (" << (per_domain ? "per domain" : "per iteration") << ")\n";
      }
      if (!a.select.empty()) {
        auto sel = omni::TraceSelector::parse(a.select);
        if (!sel.ok()) return omni::cli::fail("validate", sel.status());
        auto m = t->select(*sel);
        if (!m.ok()) return omni::cli::fail("validate", m.status());
        j["selected"] = omni::cli::load_json(*m);
        j["selected"]["select"] = sel->to_string();
        if (!a.json) print_load("  selected " + sel->to_string(), *m);
      } else if (!a.json) {
        std::cout << "  windows " << t->windows().front().label() << " .. " << t->windows().back().label() << "\n";
      }
      break;
    }
    case omni::FileKind::kDump: {
      auto p = omni::read_placement_file(a.placement);
      if (!p.ok()) return omni::cli::fail("validate", p.status());
      auto m = omni::read_load_file(a.file, "", &p->placement);
      if (!m.ok()) return omni::cli::fail("validate", m.status());
      j["kind"] = "dump";
      j["placement"] = a.placement;
      j["load"] = omni::cli::load_json(*m);
      if (!a.json) print_load(a.file + ": activation dump under " + a.placement, *m);
      break;
    }
    case omni::FileKind::kConfig: {
      auto c = omni::read_config(a.file);
      if (!c.ok()) return omni::cli::fail("validate", c.status());
      j["kind"] = "config";
      j["config"] = {{"planner", c->planner}, {"pattern_path", c->pattern_path}};
      if (!a.json) {
        std::cout << a.file << ": config, planner " << c->planner
                  << (c->pattern_path.empty() ? "" : ", pattern_path " + c->pattern_path) << "\n";
      }
      if (!c->pattern_path.empty()) {
        auto p = omni::read_placement_file(c->pattern_path);
        if (!p.ok()) return omni::cli::fail("validate", p.status().with_context(a.file + ": pattern_path"));
        j["pattern"] = omni::cli::placement_json(p->placement);
        if (!a.json) std::cout << "  pattern: " << p->placement.summary() << "\n";
        if (c->max_moe_layer_num > 0 && c->max_moe_layer_num != p->placement.num_layers()) {
          const std::string error = omni::str_cat("max_moe_layer_num = ", c->max_moe_layer_num, " but the pattern has ",
                                                  p->placement.num_layers(), " layers");
          if (a.json) {
            j["valid"] = false;
            j["error"] = error;
            omni::cli::print_json(j);
          }
          std::cerr << "omniplace validate: " << a.file << ": " << error << "\n";
          return omni::cli::kExitInvalidInput;
        }
      }
      break;
    }
  }
  if (a.json) {
    j["valid"] = true;
    omni::cli::print_json(j);
  } else {
    std::cout << "OK\n";
  }
  return omni::cli::kExitOk;
}

omni::cli::RunFn setup_validate(CLI::App& app) {
  auto args = std::make_shared<ValidateArgs>();
  auto* sub = app.add_subcommand("validate", "Check a placement, load, trace, activation dump or config file");
  sub->add_option("file", args->file,
                  "File to check: .json/.npy/.txt/.bin placement, .npy/.csv load or trace, "
                  ".txt dump (with --placement), .yaml config")
      ->required();
  sub->add_option("--placement", args->placement, "Placement in force: FILE is then an activation dump");
  sub->add_option("--select", args->select, "Trace window to check, e.g. dataset=wikitext,iteration=3");
  sub->add_flag("--strict", args->strict, "Also refuse two replicas of one expert on one rank");
  sub->add_option("--max-replicas", args->max_replicas, "Refuse experts with more replicas than this (0: no cap)")
      ->check(omni::cli::int_range(0, omni::kMaxSlotsPerLayer));
  sub->add_flag("--json", args->json,
                "Print one JSON object (file, kind, what was read, violations, valid) instead of the text");
  sub->footer(
      "With --json a placement with violations is still printed (\"valid\": false, each violation listed);\n"
      "a file that cannot be read prints nothing on stdout. Errors always go to stderr.\n"
      "Exit codes: 0 valid, 1 invalid (each problem printed), 2 usage.\n"
      "Examples:\n"
      "  omniplace validate data/patterns/DSV3_baseline_8_devices_58_MoE_Layers.npy --strict\n"
      "  omniplace validate data/traces/qwen15moe_expert_freq_by_iteration.csv --select dataset=wmt19,iteration=0\n"
      "  omniplace validate data/placements/qwen15moe_contiguous_12ranks_6slots.json --json\n"
      "  omniplace validate data/dumps/test_for_optimizer_step0.txt \\\n"
      "      --placement data/patterns/placement_pattern_test_for_optimizer.txt");
  return [args] { return run_validate(*args); };
}

}  // namespace

OMNI_CLI_COMMAND(validate, 10, setup_validate);
