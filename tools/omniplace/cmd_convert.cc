// omniplace convert IN OUT: between placement containers, or between load sources.
#include "omniplace/arg_checks.h"
#include "omniplace/command.h"
#include "omniplace/inputs.h"
#include "omniplace/json_out.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/io/file_kind.h"

namespace {

struct ConvertArgs {
  std::string in;
  std::string out;
  std::string select;
  std::string placement;  // placement in force, when IN is an activation dump
  std::string npy_dtype = "int32";
  int ranks_per_host = 0;
  bool json = false;
};

bool ext_in(const std::string& path, std::initializer_list<const char*> exts) {
  const auto dot = path.rfind('.');
  if (dot == std::string::npos) return false;
  std::string e = path.substr(dot);
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* x : exts)
    if (e == x) return true;
  return false;
}

int run_convert(const ConvertArgs& a) {
  auto kind = omni::detect_file_kind(a.in, !a.placement.empty());
  if (!kind.ok()) return omni::cli::fail("convert", kind.status());
  if (*kind == omni::FileKind::kPlacement) {
    if (!ext_in(a.out, {".json", ".npy", ".txt", ".bin"})) {
      std::cerr << "omniplace convert: a placement converts to .json, .npy, .txt or .bin, not " << a.out << "\n";
      return omni::cli::kExitUsage;
    }
    auto f = omni::read_placement_file(a.in);
    if (!f.ok()) return omni::cli::fail("convert", f.status());
    if (a.ranks_per_host > 0) {
      auto t = omni::Topology::uniform(f->placement.num_ranks(), a.ranks_per_host);
      if (!t.ok()) return omni::cli::fail("convert", t.status());
      f->topology = *t;
    }
    const auto dtype = a.npy_dtype == "int64" ? omni::NpyDtype::kInt64 : omni::NpyDtype::kInt32;
    omni::Status s = omni::write_placement_file(a.out, *f, dtype);
    if (!s.ok()) return omni::cli::fail("convert", s);
    if (a.json) {
      omni::cli::print_json({{"input", a.in},
                             {"output", a.out},
                             {"kind", "placement"},
                             {"placement", omni::cli::placement_json(f->placement)},
                             {"topology", f->topology ? nlohmann::json(f->topology->to_string()) : nlohmann::json()}});
    } else {
      std::cout << a.in << " -> " << a.out << ": " << f->placement.summary() << "\n";
    }
    return omni::cli::kExitOk;
  }
  if (*kind == omni::FileKind::kConfig) {
    std::cerr << "omniplace convert: configuration files are not converted (validate them instead)\n";
    return omni::cli::kExitUsage;
  }
  if (!ext_in(a.out, {".npy", ".csv"})) {
    std::cerr << "omniplace convert: a load converts to .npy or .csv, not " << a.out << "\n";
    return omni::cli::kExitUsage;
  }
  std::optional<omni::PlacementFile> in_force;
  if (*kind == omni::FileKind::kDump) {
    auto p = omni::read_placement_file(a.placement);
    if (!p.ok()) return omni::cli::fail("convert", p.status());
    in_force = std::move(p).value();
  }
  auto m = omni::cli::read_load_arg(a.in, a.select, in_force ? &in_force->placement : nullptr);
  if (!m.ok()) return omni::cli::fail("convert", m.status());
  omni::Status s = omni::write_load_file(a.out, *m);
  if (!s.ok()) return omni::cli::fail("convert", s);
  if (a.json) {
    omni::cli::print_json({{"input", a.in},
                           {"output", a.out},
                           {"kind", "load"},
                           {"select", a.select},
                           {"placement", a.placement},
                           {"load", omni::cli::load_json(*m)}});
  } else {
    std::cout << a.in << " -> " << a.out << ": load " << m->num_layers() << " layers x " << m->num_experts()
              << " experts\n";
  }
  return omni::cli::kExitOk;
}

omni::cli::RunFn setup_convert(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  auto* sub = app.add_subcommand("convert", "Convert a placement or a load between file formats (by extension)");
  sub->add_option("in", args->in, "Input: placement (.json/.npy/.txt/.bin), load (.npy/.csv), trace (.csv with "
                                  "--select) or activation dump (.txt with --placement)")
      ->required();
  sub->add_option("out", args->out, "Output: .json/.npy/.txt/.bin for a placement, .npy/.csv for a load")->required();
  sub->add_option("--select", args->select, "Trace window, e.g. dataset=bookcorpus,iteration=0 or domain=arxiv");
  sub->add_option("--placement", args->placement, "Placement in force: IN is then an activation dump");
  sub->add_option("--npy-dtype", args->npy_dtype, "Element type of a .npy pattern")
      ->check(CLI::IsMember({"int32", "int64"}));
  sub->add_option("--ranks-per-host", args->ranks_per_host, "Add a uniform topology (JSON output)")
      ->check(omni::cli::int_range(1, omni::kMaxRanks));
  sub->add_flag("--json", args->json, "Print one JSON object (input, output, kind and what was written)");
  sub->footer(
      "Exit codes: 0 ok, 1 invalid input, 2 usage.\n"
      "Examples:\n"
      "  omniplace convert data/patterns/placement_pattern_test_for_optimizer.txt plan.json\n"
      "  omniplace convert data/traces/olmoe_expert_counts.csv arxiv.npy --select domain=arxiv --json\n"
      "  omniplace convert data/dumps/test_for_optimizer_step0.txt load.csv \\\n"
      "      --placement data/patterns/placement_pattern_test_for_optimizer.txt");
  return [args] { return run_convert(*args); };
}

}  // namespace

OMNI_CLI_COMMAND(convert, 20, setup_convert);
