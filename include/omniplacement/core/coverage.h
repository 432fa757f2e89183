// Failure coverage: what a placement keeps serving when ranks or hosts fail.
//
//   auto cov = omni::failure_coverage(placement, topology, &load);
//   cov->rank.expert_share;   // share of (layer, expert) pairs that survive ANY single rank failure
//   cov->host.load_share;     // share of the load whose expert survives ANY single host failure
//   auto lost = omni::lost_experts(placement, failed_ranks);   // experts with no surviving replica
//   auto survivors = omni::drop_ranks(placement, failed_ranks); // the failover expert map
//
// An expert survives every single-rank failure when its replicas sit on at
// least two distinct ranks, and every single-host failure when they sit on at
// least two distinct hosts (fault domains). Load shares weight each
// (layer, expert) by its load; with no load (or zero load) they equal the
// expert shares.
//
// Thread safety: pure functions, any thread.
#pragma once

#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"

namespace omni {

// Coverage against one kind of fault domain (a rank, or a host).
struct DomainCoverage {
  double expert_share = 0;  // (layer, expert) pairs with replicas in >= 2 domains / all pairs
  double load_share = 0;    // load of those pairs / total load
  // The single domain whose failure loses the most (layer, expert) pairs, and how many.
  int32_t worst_domain = 0;
  int64_t worst_lost_experts = 0;
  double worst_lost_load_share = 0;  // share of the total load lost when worst_domain fails
};

struct FailureCoverage {
  DomainCoverage rank;
  DomainCoverage host;
};

// load may be null (expert shares only); when given it must match the
// placement's layers and experts. The topology must have the placement's ranks.
StatusOr<FailureCoverage> failure_coverage(const Placement& placement, const Topology& topology,
                                           const LoadMatrix* load = nullptr);

struct LostExpert {
  LayerId layer = 0;
  ExpertId expert = 0;
  friend bool operator==(const LostExpert&, const LostExpert&) = default;
};

// (layer, expert) pairs whose every replica is on a failed rank, in layer then
// expert order. failed ranks must be in [0, num_ranks); repeats are allowed.
StatusOr<std::vector<LostExpert>> lost_experts(const Placement& placement, std::span<const RankId> failed);

// The placement with every slot of the failed ranks emptied (a mapping-only
// failover: surviving replicas take the traffic). Explicit shares are
// renormalised over the surviving replicas of each expert. Lost experts are
// allowed in the result (ValidationRules::require_every_expert = false); find
// them with lost_experts().
StatusOr<Placement> drop_ranks(const Placement& placement, std::span<const RankId> failed);

}  // namespace omni
