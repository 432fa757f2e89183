// omniplace validate FILE: checks a placement, load, trace, dump or config file.
#include <algorithm>

#include "omniplace/command.h"
#include "omniplace/inputs.h"
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
};

int validate_placement(const ValidateArgs& a) {
  omni::ValidationRules rules;
  rules.forbid_same_rank_duplicates = a.strict;
  rules.max_replicas_per_expert = a.max_replicas;
  // Read with structure checks only, then list every violation of the rules.
  auto f = omni::read_placement_file(a.file);
  if (!f.ok()) return omni::cli::fail("validate", f.status());
  const omni::Placement& p = f->placement;
  std::cout << a.file << ": placement, " << p.summary();
  if (f->topology) std::cout << ", topology " << f->topology->to_string();
  if (p.has_shares()) std::cout << ", explicit shares";
  std::cout << "\n";
  int64_t dups = omni::same_rank_duplicates(p);
  std::cout << "  replicas per layer: ";
  int32_t lo = p.num_replicas(0), hi = lo;
  for (omni::LayerId l = 1; l < p.num_layers(); ++l) {
    lo = std::min(lo, p.num_replicas(l));
    hi = std::max(hi, p.num_replicas(l));
  }
  std::cout << lo << (lo == hi ? "" : " to " + std::to_string(hi)) << "; same-rank duplicates: " << dups << "\n";
  const auto violations = p.validate(rules);
  for (const auto& v : violations) std::cout << "  " << omni::violation_kind_name(v.kind) << ": " << v.message << "\n";
  if (!violations.empty()) {
    std::cerr << "omniplace validate: " << a.file << ": " << violations.size() << " violation(s)\n";
    return omni::cli::kExitInvalidInput;
  }
  std::cout << "OK\n";
  return omni::cli::kExitOk;
}

void print_load(const std::string& what, const omni::LoadMatrix& m) {
  double total = 0;
  for (omni::LayerId l = 0; l < m.num_layers(); ++l) total += m.layer_total(l);
  std::cout << what << ", " << m.num_layers() << " layers x " << m.num_experts() << " experts, "
            << (m.is_counts() ? "counts" : "weights") << ", total " << total << "\n";
}

int run_validate(const ValidateArgs& a) {
  auto kind = omni::detect_file_kind(a.file, !a.placement.empty());
  if (!kind.ok()) return omni::cli::fail("validate", kind.status());
  switch (*kind) {
    case omni::FileKind::kPlacement: return validate_placement(a);
    case omni::FileKind::kLoad: {
      auto m = omni::read_load_file(a.file);
      if (!m.ok()) return omni::cli::fail("validate", m.status());
      print_load(a.file + ": load", *m);
      break;
    }
    case omni::FileKind::kTrace: {
      auto t = omni::Trace::read_csv(a.file);
      if (!t.ok()) return omni::cli::fail("validate", t.status());
      std::cout << a.file << ": trace, " << t->windows().size() << " windows of " << t->num_layers() << " layers x "
                << t->num_experts() << " experts ("
                << (t->layout() == omni::TraceLayout::kPerDomain ? "per domain" : "per iteration") << ")\n";
      if (!a.select.empty()) {
        auto sel = omni::TraceSelector::parse(a.select);
        if (!sel.ok()) return omni::cli::fail("validate", sel.status());
        auto m = t->select(*sel);
        if (!m.ok()) return omni::cli::fail("validate", m.status());
        print_load("  selected " + sel->to_string(), *m);
      } else {
        std::string first = t->windows().front().label(), last = t->windows().back().label();
        std::cout << "  windows " << first << " .. " << last << "\n";
      }
      break;
    }
    case omni::FileKind::kDump: {
      auto p = omni::read_placement_file(a.placement);
      if (!p.ok()) return omni::cli::fail("validate", p.status());
      auto m = omni::read_load_file(a.file, "", &p->placement);
      if (!m.ok()) return omni::cli::fail("validate", m.status());
      print_load(a.file + ": activation dump under " + a.placement, *m);
      break;
    }
    case omni::FileKind::kConfig: {
      auto c = omni::read_config(a.file);
      if (!c.ok()) return omni::cli::fail("validate", c.status());
      std::cout << a.file << ": config, planner " << c->planner
                << (c->pattern_path.empty() ? "" : ", pattern_path " + c->pattern_path) << "\n";
      if (!c->pattern_path.empty()) {
        auto p = omni::read_placement_file(c->pattern_path);
        if (!p.ok()) return omni::cli::fail("validate", p.status().with_context(a.file + ": pattern_path"));
        std::cout << "  pattern: " << p->placement.summary() << "\n";
        if (c->max_moe_layer_num > 0 && c->max_moe_layer_num != p->placement.num_layers()) {
          std::cerr << "omniplace validate: " << a.file << ": max_moe_layer_num = " << c->max_moe_layer_num
                    << " but the pattern has " << p->placement.num_layers() << " layers\n";
          return omni::cli::kExitInvalidInput;
        }
      }
      break;
    }
  }
  std::cout << "OK\n";
  return omni::cli::kExitOk;
}

omni::cli::RunFn setup_validate(CLI::App& app) {
  auto args = std::make_shared<ValidateArgs>();
  auto* sub = app.add_subcommand("validate", "Check a placement, load, trace, activation dump or config file");
  sub->add_option("file", args->file, "File to check: .json/.npy/.txt/.bin placement, .npy/.csv load or trace, "
                                      ".txt dump (with --placement), .yaml config")
      ->required();
  sub->add_option("--placement", args->placement, "Placement in force: FILE is then an activation dump");
  sub->add_option("--select", args->select, "Trace window to check, e.g. dataset=wikitext,iteration=3");
  sub->add_flag("--strict", args->strict, "Also refuse two replicas of one expert on one rank");
  sub->add_option("--max-replicas", args->max_replicas, "Refuse experts with more replicas than this (0: no cap)")
      ->check(CLI::NonNegativeNumber);
  sub->footer(
      "Exit codes: 0 valid, 1 invalid (each problem printed), 2 usage.\n"
      "Examples:\n"
      "  omniplace validate data/patterns/DSV3_baseline_8_devices_58_MoE_Layers.npy --strict\n"
      "  omniplace validate data/traces/qwen15moe_expert_freq_by_iteration.csv --select dataset=wmt19,iteration=0\n"
      "  omniplace validate data/dumps/test_for_optimizer_step0.txt \\\n"
      "      --placement data/patterns/placement_pattern_test_for_optimizer.txt");
  return [args] { return run_validate(*args); };
}

}  // namespace

OMNI_CLI_COMMAND(validate, 10, setup_validate);
