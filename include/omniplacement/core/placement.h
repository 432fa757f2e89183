// Placement: for every MoE layer, which expert each global slot holds.
//
// Layer l has slots_per_rank(l) slots on each of num_ranks() ranks; global slot
// g = r * slots_per_rank(l) + s. phy2log(l)[g] is the expert in g, or kEmptySlot.
// Layers may differ in slots_per_rank (layer-wise uneven placement). Optional
// per-replica shares say how an expert's tokens are split over its replicas;
// without them every replica takes an even share.
//
//   // 2 layers, 4 ranks, 8 experts, 3 slots per rank: experts 0..7 contiguous, 4 empty slots.
//   omni::StatusOr<omni::Placement> p = omni::Placement::contiguous(2, 4, 8, 3);
//   p->replicas(0, 5);     // {7}: expert 5 sits in global slot 7 (rank 2, slot 1)
//   p->rank_of(0, 7);      // 2
//
// A Placement is always structurally valid (sizes, id ranges, shares) and every
// expert has at least one replica; optional rules (no same-rank duplicates, a
// cap on replicas) are checked by validate().
//
// Thread safety: immutable value; any thread may read it concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/validation.h"

namespace omni {

class Placement {
 public:
  // Validates `layout` (structure, plus `rules`; require_every_expert is honoured
  // as given, so a placement with missing experts can be represented when a
  // caller explicitly allows it, e.g. after a failure).
  static StatusOr<Placement> create(PlacementLayout layout, const ValidationRules& rules = {});
  // Experts in order over ranks: rank r holds experts [r*E/R, (r+1)*E/R) (floor
  // division; the first E % R ranks take one more) followed by empty slots.
  // Requires slots_per_rank >= ceil(num_experts / num_ranks).
  static StatusOr<Placement> contiguous(int32_t num_layers, int32_t num_ranks, int32_t num_experts,
                                        int32_t slots_per_rank);

  Placement() = default;  // empty (0 layers)

  int32_t num_layers() const { return layout_.num_layers(); }
  int32_t num_ranks() const { return layout_.num_ranks; }
  int32_t num_experts() const { return layout_.num_experts; }
  int32_t slots_per_rank(LayerId l) const;
  int32_t num_slots(LayerId l) const { return num_ranks() * slots_per_rank(l); }
  // Same slots_per_rank in every layer.
  bool is_uniform() const;

  std::span<const ExpertId> phy2log(LayerId l) const;
  ExpertId expert_at(LayerId l, GlobalSlot g) const;
  ExpertId expert_at(LayerId l, RankId r, SlotId s) const { return expert_at(l, global_slot(l, r, s)); }
  GlobalSlot global_slot(LayerId l, RankId r, SlotId s) const;
  RankId rank_of(LayerId l, GlobalSlot g) const;
  SlotId local_slot(LayerId l, GlobalSlot g) const;

  // Global slots holding expert e in layer l, ascending.
  std::span<const GlobalSlot> replicas(LayerId l, ExpertId e) const;
  int32_t replica_count(LayerId l, ExpertId e) const { return static_cast<int32_t>(replicas(l, e).size()); }
  // Number of non-empty slots in layer l.
  int32_t num_replicas(LayerId l) const;

  bool has_shares() const { return !layout_.shares.empty(); }
  // Explicit shares of layer l (empty span when the placement has none).
  std::span<const double> shares(LayerId l) const;
  // Share of its expert's load that slot g serves: explicit share, or
  // 1 / replica_count for an even split; 0 for an empty slot.
  double share_of(LayerId l, GlobalSlot g) const;

  const PlacementLayout& layout() const { return layout_; }
  // The same placement without explicit shares (even split).
  Placement without_shares() const;
  // What drop_ranks() returns: every slot of the ranks r with failed[r] != 0
  // emptied, each expert's surviving shares renormalised to sum to 1 (even
  // split where they summed to 0); failed holds one flag per rank (else
  // INVALID_ARGUMENT). The replica index is filtered rather than rebuilt and
  // the result is not re-validated (emptying slots keeps a placement valid
  // when lost experts are allowed): a failover does this for every layer on
  // every survivor, within the time budget of a step. Any thread.
  StatusOr<Placement> without_ranks(std::span<const char> failed) const;
  // Checks optional rules (duplicates, caps) on this placement.
  std::vector<Violation> validate(const ValidationRules& rules) const { return omni::validate(layout_, rules); }

  // FNV-1a 64 over sizes, phy2log and shares: equal placements give equal
  // checksums on every rank and platform (little-endian IEEE doubles).
  uint64_t checksum() const;
  std::string summary() const;  // "58 layers, 32 ranks, 256 experts, 8-9 slots per rank"

  friend bool operator==(const Placement& a, const Placement& b);

 private:
  void build_index();
  void check_layer(LayerId l) const;

  PlacementLayout layout_;
  // CSR per layer: replica_offsets_[l][e] .. [e+1] indexes replica_slots_[l].
  std::vector<std::vector<int32_t>> replica_offsets_;
  std::vector<std::vector<GlobalSlot>> replica_slots_;
};

}  // namespace omni
