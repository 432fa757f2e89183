// omniplace eval: how well a placement balances a load, layer by layer.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "omniplace/arg_checks.h"
#include "omniplace/command.h"
#include "omniplace/coverage_json.h"
#include "omniplace/inputs.h"
#include "omniplacement/core/coverage.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/core/topology.h"

namespace {

struct EvalArgs {
  std::string placement;
  std::string load;
  std::string select;
  int ranks_per_host = 0;
  bool json = false;
};

struct LayerRow {
  omni::LayerBalance balance;
  int32_t slots_per_rank = 0;
  int64_t duplicates = 0;
  omni::TrafficSplit traffic;
};

int run_eval(const EvalArgs& a) {
  // A dump is read under the placement; a contiguous placement takes its sizes from the load.
  const bool generated = a.placement.rfind("contiguous:", 0) == 0;
  std::optional<omni::PlacementFile> pf;
  std::optional<omni::LoadMatrix> load;
  if (generated) {
    auto m = omni::cli::read_load_arg(a.load, a.select, nullptr);
    if (!m.ok()) return omni::cli::fail("eval", m.status());
    load = std::move(m).value();
    auto p = omni::cli::read_placement_arg(a.placement, &*load);
    if (!p.ok()) return omni::cli::fail("eval", p.status());
    pf = std::move(p).value();
  } else {
    auto p = omni::cli::read_placement_arg(a.placement, nullptr);
    if (!p.ok()) return omni::cli::fail("eval", p.status());
    pf = std::move(p).value();
    auto m = omni::cli::read_load_arg(a.load, a.select, &pf->placement);
    if (!m.ok()) return omni::cli::fail("eval", m.status());
    load = std::move(m).value();
  }
  const omni::Placement& p = pf->placement;
  if (p.num_layers() != load->num_layers() || p.num_experts() != load->num_experts()) {
    return omni::cli::fail("eval", omni::invalid_argument_error(omni::str_cat(
                                       "the placement has ", p.num_layers(), " layers x ", p.num_experts(),
                                       " experts, the load ", load->num_layers(), " x ", load->num_experts())));
  }
  omni::Topology topo;
  if (a.ranks_per_host > 0) {
    auto t = omni::Topology::uniform(p.num_ranks(), a.ranks_per_host);
    if (!t.ok()) return omni::cli::fail("eval", t.status());
    topo = *t;
  } else if (pf->topology) {
    topo = *pf->topology;
  } else {
    topo = *omni::Topology::single_host(p.num_ranks());
  }
  auto balance = omni::placement_balance(p, *load);
  if (!balance.ok()) return omni::cli::fail("eval", balance.status());
  auto traffic = omni::dispatch_traffic(p, *load, topo);
  if (!traffic.ok()) return omni::cli::fail("eval", traffic.status());
  std::vector<LayerRow> rows(static_cast<size_t>(p.num_layers()));
  for (omni::LayerId l = 0; l < p.num_layers(); ++l) {
    auto& r = rows[static_cast<size_t>(l)];
    r.balance = balance->layers[static_cast<size_t>(l)];
    r.slots_per_rank = p.slots_per_rank(l);
    r.duplicates = omni::same_rank_duplicates(p, l);
    auto t = omni::dispatch_traffic(p, *load, topo, l);
    if (!t.ok()) return omni::cli::fail("eval", t.status());
    r.traffic = *t;
  }
  const int64_t dups = omni::same_rank_duplicates(p);
  auto coverage = omni::failure_coverage(p, topo, &*load);
  if (!coverage.ok()) return omni::cli::fail("eval", coverage.status());
  const double bound_ratio = balance->sum_lower_bound > 0 ? balance->sum_max / balance->sum_lower_bound : 1.0;
  if (a.json) {
    nlohmann::json j;
    j["placement"] = {{"path", a.placement}, {"num_layers", p.num_layers()}, {"num_ranks", p.num_ranks()},
                      {"num_experts", p.num_experts()}, {"summary", p.summary()}};
    j["load"] = {{"path", a.load}, {"select", a.select}, {"kind", load->is_counts() ? "counts" : "weights"}};
    j["topology"] = {{"num_hosts", topo.num_hosts()}, {"host_of_rank", topo.host_of_rank()}};
    j["layers"] = nlohmann::json::array();
    for (size_t l = 0; l < rows.size(); ++l) {
      const auto& r = rows[l];
      const auto& b = r.balance;
      j["layers"].push_back({{"layer", l}, {"slots_per_rank", r.slots_per_rank}, {"total", b.total}, {"mean", b.mean},
                             {"max", b.max}, {"max_rank", b.max_rank}, {"max_over_mean", b.max_over_mean},
                             {"imbalance", b.imbalance}, {"balancedness", b.balancedness},
                             {"lower_bound", b.lower_bound}, {"bound_over_mean", b.bound_over_mean},
                             {"excess", b.excess}, {"duplicates", r.duplicates},
                             {"same_rank_share", r.traffic.same_rank}, {"same_host_share", r.traffic.same_host},
                             {"cross_host_share", r.traffic.cross_host}});
    }
    j["summary"] = {{"mean_max_over_mean", balance->mean_max_over_mean}, {"mean_imbalance", balance->mean_imbalance},
                    {"balancedness", balance->balancedness}, {"sum_max", balance->sum_max},
                    {"sum_lower_bound", balance->sum_lower_bound}, {"sum_max_over_sum_lower_bound", bound_ratio},
                    {"mean_excess", balance->mean_excess}, {"duplicates", dups},
                    {"same_rank_share", traffic->same_rank}, {"same_host_share", traffic->same_host},
                    {"cross_host_share", traffic->cross_host}};
    j["coverage"] = omni::cli::coverage_json(*coverage);
    std::cout << j.dump(2) << "\n";
    return omni::cli::kExitOk;
  }
  std::cout << "placement: " << a.placement << " (" << p.summary() << ")\n"
            << "load:      " << a.load << (a.select.empty() ? "" : " [" + a.select + "]") << " ("
            << load->num_layers() << " layers x " << load->num_experts() << " experts, "
            << (load->is_counts() ? "counts" : "weights") << ")\n"
            << "topology:  " << topo.to_string() << "\n\n";
  std::printf("%5s %6s %12s %12s %8s %10s %7s %5s %10s\n", "layer", "slots", "max_load", "mean_load", "max/mean",
              "bound/mean", "excess", "dups", "cross_host");
  for (size_t l = 0; l < rows.size(); ++l) {
    const auto& r = rows[l];
    const auto& b = r.balance;
    std::printf("%5zu %6d %12.1f %12.1f %8.3f %10.3f %7.3f %5lld %10.3f\n", l, r.slots_per_rank, b.max, b.mean,
                b.max_over_mean, b.bound_over_mean, b.excess, static_cast<long long>(r.duplicates),
                r.traffic.cross_host);
  }
  std::printf(
      "\nsummary: mean max/mean %.3f (1.0 is perfect), balancedness %.3f (sum of means / sum of maxima)\n"
      "         sum of max rank loads %.1f vs lower bound %.1f (ratio %.3f), mean excess %.3f\n"
      "         same-rank duplicates %lld; dispatch: %.1f%% same rank, %.1f%% same host, %.1f%% cross host\n",
      balance->mean_max_over_mean, balance->balancedness, balance->sum_max, balance->sum_lower_bound, bound_ratio,
      balance->mean_excess, static_cast<long long>(dups), 100 * traffic->same_rank, 100 * traffic->same_host,
      100 * traffic->cross_host);
  // Failure coverage: what survives any single rank / host failure (core/coverage.h).
  for (const auto& [name, d] : {std::pair<const char*, const omni::DomainCoverage&>{"rank", coverage->rank},
                                std::pair<const char*, const omni::DomainCoverage&>{"host", coverage->host}}) {
    std::printf("coverage, any single %s failure: %.1f%% of experts, %.1f%% of load survive; worst %s %d loses %lld "
                "experts (%.1f%% of load)\n",
                name, 100 * d.expert_share, 100 * d.load_share, name, d.worst_domain,
                static_cast<long long>(d.worst_lost_experts), 100 * d.worst_lost_load_share);
  }
  return omni::cli::kExitOk;
}

omni::cli::RunFn setup_eval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* sub = app.add_subcommand("eval", "Evaluate how a placement balances a load: per-layer table and summary");
  sub->add_option("--placement", args->placement,
                  "Placement file (.json/.npy/.txt/.bin) or contiguous:RANKS:SLOTS_PER_RANK")
      ->required();
  sub->add_option("--load", args->load,
                  "Load: .npy/.csv [layers, experts], trace .csv (with --select), or activation dump .txt "
                  "(read under the placement)")
      ->required();
  sub->add_option("--select", args->select, "Trace window, e.g. dataset=bookcorpus,iteration=0");
  sub->add_option("--ranks-per-host", args->ranks_per_host,
                  "Ranks per host for the cross-host share (default: the placement file's topology, else one host)")
      ->check(omni::cli::int_range(1, omni::kMaxRanks));
  sub->add_flag("--json", args->json, "Print one JSON object instead of the table");
  sub->footer(
      "Columns: max_load / mean_load are tokens on the busiest / an average rank; max/mean (1.0 is perfect);\n"
      "bound/mean is the lower bound on max/mean for this many slots (water-filling); excess = max/mean - "
      "bound/mean;\n"
      "dups are replicas sharing a rank with another replica of their expert; cross_host is the share of tokens\n"
      "sent to another host when each token goes to the nearest replica.\n"
      "Coverage: the (layer, expert) pairs, and their share of the load, that keep a replica whatever single\n"
      "rank (host) fails, i.e. whose replicas sit on >= 2 ranks (hosts); the worst rank (host) is the one whose\n"
      "failure loses the most experts.\n"
      "Exit codes: 0 ok, 1 invalid input, 2 usage.\n"
      "Examples:\n"
      "  omniplace eval --placement data/placements/qwen15moe_contiguous_12ranks_6slots.json \\\n"
      "      --load data/traces/qwen15moe_expert_freq_by_iteration.csv --select dataset=wikitext,iteration=0 \\\n"
      "      --ranks-per-host 4\n"
      "  omniplace eval --placement contiguous:8:1 --load data/traces/mixtral_expert_counts.csv "
      "--select domain=arxiv --json");
  return [args] { return run_eval(*args); };
}

}  // namespace

OMNI_CLI_COMMAND(eval, 30, setup_eval);
