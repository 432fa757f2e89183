// omniplace diff P0 P1: the migration plan that turns placement P0 into P1.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "omniplace/arg_checks.h"
#include "omniplace/command.h"
#include "omniplace/inputs.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/planner/migration_plan.h"

namespace {

struct DiffArgs {
  std::string current;
  std::string next;
  int64_t expert_bytes = omni::kDeepSeekV3ExpertBytes;
  int max_per_round = 8;
  int ranks_per_host = 0;
  bool json = false;
  bool brief = false;
};

// --ranks-per-host, else the topology of P1's file, else of P0's, else one host.
omni::StatusOr<omni::Topology> pick_topology(const DiffArgs& a, const omni::PlacementFile& current,
                                             const omni::PlacementFile& next) {
  const int32_t num_ranks = next.placement.num_ranks();
  if (a.ranks_per_host > 0) return omni::Topology::uniform(num_ranks, a.ranks_per_host);
  for (const omni::PlacementFile* f : {&next, &current})
    if (f->topology && f->topology->num_ranks() == num_ranks) return *f->topology;
  return omni::Topology::single_host(num_ranks);
}

nlohmann::json to_json(const DiffArgs& a, const omni::Topology& topo, const omni::MigrationPlan& plan) {
  nlohmann::json j;
  j["current"] = a.current;
  j["next"] = a.next;
  j["topology"] = {{"num_ranks", topo.num_ranks()},
                   {"num_hosts", topo.num_hosts()},
                   {"host_of_rank", topo.host_of_rank()},
                   {"same_host_bytes_per_s", topo.bandwidths().same_host_bytes_per_s},
                   {"cross_host_bytes_per_s", topo.bandwidths().cross_host_bytes_per_s},
                   {"same_rank_bytes_per_s", topo.bandwidths().same_rank_bytes_per_s},
                   {"latency_s", topo.bandwidths().latency_s}};
  j["expert_bytes"] = a.expert_bytes;
  j["max_per_round"] = plan.max_per_round;
  j["num_transfers"] = plan.num_transfers;
  j["total_bytes"] = plan.total_bytes;
  j["total_seconds"] = plan.total_seconds;
  j["num_rounds"] = plan.num_rounds();
  j["num_over_limit_rounds"] = plan.num_over_limit_rounds();
  j["num_unchanged_slots"] = plan.num_unchanged_slots;
  for (size_t c = 0; c < 3; ++c) {
    const char* name = omni::link_class_name(static_cast<omni::LinkClass>(c));
    j["transfers_by_link"][name] = plan.transfers_by_link[c];
    j["bytes_by_link"][name] = plan.bytes_by_link[c];
  }
  j["rounds"] = nlohmann::json::array();
  for (const omni::MigrationRound& r : plan.rounds) {
    nlohmann::json jr = {{"bytes", r.bytes},
                         {"seconds", r.seconds},
                         {"max_sends", r.max_sends},
                         {"max_receives", r.max_receives},
                         {"over_limit", r.over_limit}};
    jr["transfers"] = nlohmann::json::array();
    for (const omni::Transfer& t : r.transfers) {
      jr["transfers"].push_back({{"layer", t.layer},
                                 {"expert", t.expert},
                                 {"src_rank", t.src_rank},
                                 {"src_slot", t.src_slot},
                                 {"dst_rank", t.dst_rank},
                                 {"dst_slot", t.dst_slot},
                                 {"replaced", t.replaced},
                                 {"link", omni::link_class_name(t.link)},
                                 {"bytes", t.bytes}});
    }
    j["rounds"].push_back(std::move(jr));
  }
  j["releases"] = nlohmann::json::array();
  for (const omni::SlotRelease& r : plan.releases)
    j["releases"].push_back({{"layer", r.layer}, {"rank", r.rank}, {"slot", r.slot}, {"expert", r.expert}});
  j["summary"] = plan.summary();
  j["verified"] = true;
  return j;
}

void print_text(const DiffArgs& a, const omni::PlacementFile& current, const omni::PlacementFile& next,
                const omni::Topology& topo, const omni::MigrationPlan& plan) {
  const omni::LinkBandwidths& bw = topo.bandwidths();
  std::cout << "current:  " << a.current << " (" << current.placement.summary() << ")\n"
            << "next:     " << a.next << " (" << next.placement.summary() << ")\n"
            << "topology: " << topo.to_string() << "; same-host " << bw.same_host_bytes_per_s / 1e9
            << " GB/s, cross-host " << bw.cross_host_bytes_per_s / 1e9 << " GB/s, " << bw.latency_s * 1e6
            << " us per transfer\n"
            << "expert:   " << a.expert_bytes << " bytes; per round at most ";
  if (plan.max_per_round > 0)
    std::cout << plan.max_per_round << " experts sent and " << plan.max_per_round << " received per rank\n";
  else
    std::cout << "no limit\n";
  for (size_t k = 0; k < plan.rounds.size(); ++k) {
    const omni::MigrationRound& r = plan.rounds[k];
    // Brief output: one line per round, a blank line only before the first.
    std::printf("%sround %zu: %zu transfers, %.3f GB, est. %.3f ms (busiest rank sends %d, receives %d)%s\n",
                a.brief && k > 0 ? "" : "\n", k, r.transfers.size(), static_cast<double>(r.bytes) / 1e9,
                r.seconds * 1e3, r.max_sends, r.max_receives,
                r.over_limit ? " OVER LIMIT (an unsplittable cycle)" : "");
    if (a.brief) continue;
    for (const omni::Transfer& t : r.transfers) {
      std::printf("  layer %d expert %d: rank %d slot %d -> rank %d slot %d (%s", t.layer, t.expert, t.src_rank,
                  t.src_slot, t.dst_rank, t.dst_slot, omni::link_class_name(t.link));
      if (t.replaced != omni::kEmptySlot) std::printf(", replaces expert %d", t.replaced);
      std::printf(")\n");
    }
  }
  if (!plan.releases.empty()) {
    std::printf("\nreleased after the last round: %zu slots\n", plan.releases.size());
    if (!a.brief)
      for (const omni::SlotRelease& r : plan.releases)
        std::printf("  layer %d rank %d slot %d (expert %d)\n", r.layer, r.rank, r.slot, r.expert);
  }
  std::cout << "\ntotal: " << plan.summary() << "\n"
            << "verified: the rounds turn the current placement into the next one, and every expert keeps a "
               "replica in place after every round\n";
}

bool is_generated(const std::string& arg) { return arg.rfind("contiguous:", 0) == 0; }

// Reads P0 and P1; a generated "contiguous:R:S" one takes its layers and experts from the other file.
omni::StatusOr<std::pair<omni::PlacementFile, omni::PlacementFile>> read_pair(const DiffArgs& a) {
  if (is_generated(a.current) && is_generated(a.next)) {
    return omni::invalid_argument_error("at most one of P0 and P1 may be contiguous:RANKS:SLOTS_PER_RANK");
  }
  const bool first_generated = is_generated(a.current);
  OMNI_ASSIGN_OR_RETURN(omni::PlacementFile file,
                        omni::cli::read_placement_arg(first_generated ? a.next : a.current, nullptr));
  OMNI_ASSIGN_OR_RETURN(const omni::LoadMatrix sizes,
                        omni::LoadMatrix::zeros(file.placement.num_layers(), file.placement.num_experts()));
  OMNI_ASSIGN_OR_RETURN(omni::PlacementFile other,
                        omni::cli::read_placement_arg(first_generated ? a.current : a.next, &sizes));
  if (first_generated) return std::make_pair(std::move(other), std::move(file));
  return std::make_pair(std::move(file), std::move(other));
}

int run_diff(const DiffArgs& a) {
  auto pair = read_pair(a);
  if (!pair.ok()) return omni::cli::fail("diff", pair.status());
  const omni::PlacementFile* current = &pair->first;
  const omni::PlacementFile* next = &pair->second;
  auto topo = pick_topology(a, *current, *next);
  if (!topo.ok()) return omni::cli::fail("diff", topo.status());
  omni::MigrationOptions options;
  options.expert_bytes = a.expert_bytes;
  options.max_per_round = a.max_per_round;
  options.staging_bytes_per_rank = 0;  // --max-per-round alone bounds the rounds, as before
  auto plan = omni::diff(current->placement, next->placement, *topo, options);
  if (!plan.ok()) return omni::cli::fail("diff", plan.status());
  // Cheap next to planning (milliseconds at DeepSeek-V3 scale): never print an unchecked plan.
  const omni::Status safe = omni::verify_migration(current->placement, *plan, next->placement);
  if (!safe.ok())
    return omni::cli::fail("diff", omni::internal_error("the plan failed its safety check: " + safe.to_string()));
  if (a.json) {
    std::cout << to_json(a, *topo, *plan).dump(2) << "\n";
  } else {
    print_text(a, *current, *next, *topo, *plan);
  }
  return omni::cli::kExitOk;
}

omni::cli::RunFn setup_diff(CLI::App& app) {
  auto args = std::make_shared<DiffArgs>();
  auto* sub = app.add_subcommand(
      "diff", "Migration plan from placement P0 to P1: transfers grouped into rounds, moved bytes, estimated time");
  sub->add_option("P0", args->current, "Current placement (.json/.npy/.txt/.bin) or contiguous:RANKS:SLOTS_PER_RANK")
      ->required();
  sub->add_option("P1", args->next, "Next placement, with the same layers, ranks and experts")->required();
  sub->add_option("--expert-bytes", args->expert_bytes,
                  "Bytes of one expert's weights (default 44040192: DeepSeek-V3 FP8, 3 x 7168 x 2048)")
      ->check(CLI::Range(int64_t{1}, omni::kMaxExpertBytes));
  sub->add_option("--max-per-round", args->max_per_round,
                  "Most experts one rank sends, and receives, in one round (default 8; 0 = no limit)")
      ->check(omni::cli::int_range(0, omni::kMaxSlotsPerLayer));
  sub->add_option("--ranks-per-host", args->ranks_per_host,
                  "Ranks per host (default: the topology in P1's or P0's file, else one host)")
      ->check(omni::cli::int_range(1, omni::kMaxRanks));
  sub->add_flag("--json", args->json, "Print one JSON object");
  sub->add_flag("--brief", args->brief, "Totals and one line per round, without the transfers");
  sub->footer(
      "A round reads its sources as they were at its start and writes every destination at its end, so\n"
      "slots may swap contents in one round; every expert keeps a replica in place after every round.\n"
      "Sources are the nearest replica: the same rank, then the same host, then another host.\n"
      "The estimate: a rank sends (and receives) one transfer after another, each latency + bytes /\n"
      "link bandwidth; a round lasts as long as its busiest rank; rounds run one after another.\n"
      "Exit codes: 0 ok, 1 invalid input, 2 usage.\n"
      "Examples:\n"
      "  omniplace diff old.json new.json --ranks-per-host 8\n"
      "  omniplace diff contiguous:32:8 \\\n"
      "      data/patterns/DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy \\\n"
      "      --ranks-per-host 8 --brief\n"
      "  omniplace diff old.npy new.npy --expert-bytes 88080384 --max-per-round 4 --json");
  return [args] { return run_diff(*args); };
}

}  // namespace

OMNI_CLI_COMMAND(diff, 40, setup_diff);
