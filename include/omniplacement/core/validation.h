// validate(): every violation of a placement, each with layer, rank, slot and expert.
//
//   omni::PlacementLayout raw = ...;                 // e.g. parsed from a file
//   omni::ValidationRules rules;
//   rules.forbid_same_rank_duplicates = true;
//   rules.max_replicas_per_expert = 4;
//   for (const omni::Violation& v : omni::validate(raw, rules)) std::cerr << v.message << "\n";
//
// Structural checks always run (sizes in range, phy2log lengths equal to
// num_ranks * slots_per_rank[l], expert ids in [-1, num_experts), shares
// well-formed). The rules add semantic checks.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"

namespace omni {

// The raw content of a placement, unchecked: what files and planners produce
// before Placement::create() validates it.
struct PlacementLayout {
  int32_t num_ranks = 0;
  int32_t num_experts = 0;
  // slots_per_rank[l]: slots on every rank in layer l (layer-wise uneven allowed). Length num_layers.
  std::vector<int32_t> slots_per_rank;
  // phy2log[l][g]: expert in global slot g = r * slots_per_rank[l] + s, or kEmptySlot.
  // Length num_layers; phy2log[l] has num_ranks * slots_per_rank[l] elements.
  std::vector<std::vector<ExpertId>> phy2log;
  // Optional per-replica shares: empty (even split), or shares[l][g] = fraction of
  // expert phy2log[l][g]'s load served by slot g. Per expert the shares sum to 1
  // (within 1e-6); empty slots have share 0. Same lengths as phy2log.
  std::vector<std::vector<double>> shares;

  int32_t num_layers() const { return static_cast<int32_t>(slots_per_rank.size()); }
};

struct ValidationRules {
  // Every expert of every layer must have at least one replica.
  bool require_every_expert = true;
  // No rank may hold two replicas of the same expert (a wasted replica).
  bool forbid_same_rank_duplicates = false;
  // At most this many replicas per expert; 0 means no cap.
  int32_t max_replicas_per_expert = 0;
};

enum class ViolationKind {
  kShape,              // sizes out of range or inconsistent lengths
  kExpertOutOfRange,   // a slot names an expert outside [-1, num_experts)
  kExpertMissing,      // an expert with no replica
  kSameRankDuplicate,  // two replicas of one expert on one rank
  kTooManyReplicas,    // more replicas than max_replicas_per_expert
  kBadShare,           // a share negative, non-finite, on an empty slot, or not summing to 1
};

const char* violation_kind_name(ViolationKind k);

// One problem. Fields that do not apply are -1.
struct Violation {
  ViolationKind kind = ViolationKind::kShape;
  LayerId layer = -1;
  RankId rank = -1;
  SlotId slot = -1;  // slot within the rank
  ExpertId expert = -1;
  std::string message;  // names all of the above that apply
};

// Every violation, in layer order. Stops after max_violations (the last entry
// then says how many more were not listed) so a huge malformed input stays cheap.
std::vector<Violation> validate(const PlacementLayout& layout, const ValidationRules& rules = {},
                                size_t max_violations = 1000);

// OK when `violations` is empty, else INVALID_ARGUMENT listing the first max_listed.
Status violations_to_status(const std::vector<Violation>& violations, size_t max_listed = 8);

}  // namespace omni
