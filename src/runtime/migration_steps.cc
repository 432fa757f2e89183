#include "omniplacement/runtime/migration_steps.h"

#include <algorithm>
#include <tuple>

#include "omniplacement/core/placement_ops.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

// The layers whose routing differs between two placements of the same shape.
std::vector<LayerId> changed_layers(const Placement& before, const Placement& after) {
  std::vector<LayerId> out;
  for (LayerId l = 0; l < before.num_layers(); ++l)
    if (!layers_equal(before, after, l)) out.push_back(l);
  return out;
}

// Most bytes one destination rank receives among `transfers`.
int64_t max_receive_bytes(std::span<const Transfer> transfers, int32_t num_ranks) {
  std::vector<int64_t> per_rank(static_cast<size_t>(num_ranks), 0);
  int64_t most = 0;
  for (const Transfer& t : transfers) most = std::max(most, per_rank[static_cast<size_t>(t.dst_rank)] += t.bytes);
  return most;
}

Status check_same_slots(const Placement& current, const Placement& next, const char* what) {
  if (current.num_layers() != next.num_layers() || current.num_ranks() != next.num_ranks() ||
      current.num_experts() != next.num_experts())
    return invalid_argument_error(
        str_cat(what, ": current is ", current.summary(), ", next is ", next.summary(), " (must be equal)"));
  for (LayerId l = 0; l < current.num_layers(); ++l)
    if (current.slots_per_rank(l) != next.slots_per_rank(l))
      return invalid_argument_error(str_cat(what, ": layer ", l, " has ", current.slots_per_rank(l),
                                            " slots per rank in force but ", next.slots_per_rank(l),
                                            " in the plan (a runtime's slots do not change)"));
  return ok_status();
}

}  // namespace

StatusOr<std::vector<MigrationStep>> migration_steps(const Placement& current, const Placement& next,
                                                     const Topology& topology, const MigrationOptions& options) {
  OMNI_RETURN_IF_ERROR(check_same_slots(current, next, "migration_steps"));
  OMNI_ASSIGN_OR_RETURN(MigrationPlan plan, diff(current, next, topology, options));
  std::vector<MigrationStep> steps;
  if (plan.rounds.empty()) {
    std::vector<LayerId> changed = changed_layers(current, next);
    if (changed.empty()) return steps;
    MigrationStep s;
    s.routing = std::make_shared<const Placement>(next);
    s.changed = std::move(changed);
    steps.push_back(std::move(s));
    return steps;
  }
  const Placement* prev = &current;
  for (int32_t k = 0; k < plan.num_rounds(); ++k) {
    const MigrationRound& round = plan.rounds[static_cast<size_t>(k)];
    if (options.staging_bytes_per_rank > 0 && round.max_receive_bytes > options.staging_bytes_per_rank) {
      std::vector<int64_t> per_rank(static_cast<size_t>(current.num_ranks()), 0);
      for (const Transfer& t : round.transfers) per_rank[static_cast<size_t>(t.dst_rank)] += t.bytes;
      const auto busiest = std::max_element(per_rank.begin(), per_rank.end()) - per_rank.begin();
      return resource_exhausted_error(
          str_cat("migration round ", k, " needs ", round.max_receive_bytes, " bytes of staging on rank ", busiest,
                  ", over staging_bytes_per_rank ", options.staging_bytes_per_rank,
                  " (a cycle of slots without a spare copy of their experts moves in one round)"));
    }
    MigrationStep s;
    OMNI_ASSIGN_OR_RETURN(Placement routing, routing_after_round(current, plan, next, k + 1));
    s.changed = changed_layers(*prev, routing);
    s.routing = std::make_shared<const Placement>(std::move(routing));
    s.max_receive_bytes = round.max_receive_bytes;
    s.transfers = round.transfers;  // the plan stays whole: routing_after_round() replays it
    prev = s.routing.get();
    steps.push_back(std::move(s));
  }
  return steps;
}

StatusOr<std::vector<MigrationStep>> restore_steps(const Placement& current, const Placement& next,
                                                   std::span<const Transfer> transfers,
                                                   const MigrationOptions& options) {
  OMNI_RETURN_IF_ERROR(check_same_slots(current, next, "restore_steps"));
  const int32_t L = current.num_layers();
  const int32_t R = current.num_ranks();
  std::vector<std::vector<Transfer>> by_layer(static_cast<size_t>(L));
  for (const Transfer& t : transfers) {
    if (t.layer < 0 || t.layer >= L || t.dst_rank < 0 || t.dst_rank >= R)
      return invalid_argument_error(str_cat("restore_steps: transfer of expert ", t.expert, " to layer ", t.layer,
                                            ", rank ", t.dst_rank, " is out of range (", L, " layers, ", R, " ranks)"));
    by_layer[static_cast<size_t>(t.layer)].push_back(t);
  }
  // Whole layers, in order, while the step's busiest rank stays within the budget.
  std::vector<std::vector<LayerId>> groups;
  std::vector<int64_t> need(static_cast<size_t>(R), 0);
  for (LayerId l = 0; l < L; ++l) {
    auto& ts = by_layer[static_cast<size_t>(l)];
    if (ts.empty()) continue;
    std::sort(ts.begin(), ts.end(), [](const Transfer& a, const Transfer& b) {
      return std::tie(a.dst_rank, a.dst_slot) < std::tie(b.dst_rank, b.dst_slot);
    });
    const int64_t alone = max_receive_bytes(ts, R);
    if (options.staging_bytes_per_rank > 0 && alone > options.staging_bytes_per_rank)
      return resource_exhausted_error(str_cat("restore of layer ", l, " needs ", alone,
                                              " bytes of staging on one rank, over staging_bytes_per_rank ",
                                              options.staging_bytes_per_rank));
    bool fits = !groups.empty() &&
                (options.layers_per_commit == 0 ||
                 static_cast<int32_t>(groups.back().size()) < options.layers_per_commit);
    if (fits && options.staging_bytes_per_rank > 0) {
      std::vector<int64_t> with = need;
      for (const Transfer& t : ts) with[static_cast<size_t>(t.dst_rank)] += t.bytes;
      fits = *std::max_element(with.begin(), with.end()) <= options.staging_bytes_per_rank;
    }
    if (!fits) {
      groups.emplace_back();
      std::fill(need.begin(), need.end(), 0);
    }
    groups.back().push_back(l);
    for (const Transfer& t : ts) need[static_cast<size_t>(t.dst_rank)] += t.bytes;
  }
  std::vector<MigrationStep> steps;
  std::vector<LayerId> done;
  for (const std::vector<LayerId>& g : groups) {
    MigrationStep s;
    for (LayerId l : g) {
      const auto& ts = by_layer[static_cast<size_t>(l)];
      s.transfers.insert(s.transfers.end(), ts.begin(), ts.end());
    }
    done.insert(done.end(), g.begin(), g.end());
    OMNI_ASSIGN_OR_RETURN(Placement routing, compose_layers(current, next, done));
    s.routing = std::make_shared<const Placement>(std::move(routing));
    s.changed = g;
    s.max_receive_bytes = max_receive_bytes(s.transfers, R);
    steps.push_back(std::move(s));
  }
  return steps;
}

}  // namespace omni
