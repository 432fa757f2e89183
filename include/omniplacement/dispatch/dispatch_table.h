// Dispatch: which replica serves a token of a logical expert, as seen from one rank.
//
// The policy (docs/DESIGN.md, runtime protocol): tokens of expert e that
// originate on rank q go to a replica on q if there is one, else to a replica
// on q's host, else elsewhere, while over all ranks each replica receives its
// share of e's tokens (the placement's per-replica shares, or an even split).
// replica_split() solves this as a small transport problem per expert: tokens
// are assumed to originate evenly on all ranks, each rank first fills the
// replicas on itself, then what is left on its host is split in proportion
// over the host's remaining replica demand, then across hosts. The result,
// for rank q, is a fraction per replica; LayerDispatch turns the fractions into
// a fixed interleaved sequence of kDispatchPeriod slots per expert, walked by
// a per-expert counter, so dispatch is a table lookup, deterministic, and every
// replica with a non-zero fraction receives its share of q's tokens (never all
// of them to one replica when the shares say otherwise).
//
//   auto table = omni::LayerDispatch::build(placement, /*layer=*/0, topology, /*rank=*/3);
//   std::vector<uint32_t> counters(placement.num_experts(), 0);   // owned by the caller
//   std::vector<omni::GlobalSlot> out(ids.size());
//   table->dispatch(ids, out, counters);   // out[i]: global slot serving ids[i]
//
// Thread safety: a built LayerDispatch is immutable; dispatch() may run on any
// number of threads at once, each with its own counters.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"

namespace omni {

// What dispatch writes for a token whose expert has no replica in the map in
// force (a lost expert: every rank that held it failed, and it has not been
// restored yet). Distinct from -1 (padding or an invalid id) so that the engine
// can tell "drop this token" from "this expert cannot be served now"; it is
// never a slot, dead or alive. PlacementManager::lost_experts() lists them.
inline constexpr GlobalSlot kLostExpertSlot = -2;

// Length of the interleaved replica sequence of an expert with several target
// replicas: fractions are realised to within 1 / kDispatchPeriod.
inline constexpr int32_t kDispatchPeriod = 128;

// Fraction of rank `origin`'s tokens of each expert of layer l that each
// replica serves. Row e has replica_count(l, e) entries, in the order of
// placement.replicas(l, e), summing to 1 (empty for an expert with no replica).
// Requires topology.num_ranks() == placement.num_ranks().
StatusOr<std::vector<std::vector<double>>> replica_split(const Placement& placement, LayerId l,
                                                         const Topology& topology, RankId origin);

class LayerDispatch {
 public:
  // Tables of rank `rank` for layer l of `placement`.
  static StatusOr<LayerDispatch> build(const Placement& placement, LayerId l, const Topology& topology, RankId rank);

  // The tables of `base` with only the experts in `changed` recomputed from
  // `placement` (the others keep base's sequences, which must still be valid
  // in placement: used by failover, where only the experts that had a replica
  // on a failed rank change). Cost proportional to the changed experts.
  static StatusOr<LayerDispatch> rebuild(const LayerDispatch& base, const Placement& placement, LayerId l,
                                         const Topology& topology, RankId rank, std::span<const ExpertId> changed);

  LayerDispatch() = default;

  int32_t num_experts() const { return static_cast<int32_t>(entries_.size()); }
  // out[i] = global slot serving ids[i]; ids outside [0, num_experts) (padding
  // -1 or invalid) give -1, experts with no replica kLostExpertSlot. counters has
  // num_experts() elements, is advanced by dispatch, and carries the position
  // in each expert's sequence from one call to the next. out.size() == ids.size().
  void dispatch(std::span<const ExpertId> ids, std::span<GlobalSlot> out, std::span<uint32_t> counters) const {
    const auto n = static_cast<uint32_t>(entries_.size());
    const Entry* entries = entries_.data();
    const GlobalSlot* table = table_.data();
    uint32_t* cnt = counters.data();
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto e = static_cast<uint32_t>(ids[i]);
      if (e >= n) {
        out[i] = -1;
        continue;
      }
      const Entry en = entries[e];
      out[i] = table[en.offset + (cnt[e]++ & en.mask)];
    }
  }
  // The sequence of global slots rank `rank` walks for expert e (length 1 or
  // kDispatchPeriod; {kLostExpertSlot} for an expert with no replica).
  std::span<const GlobalSlot> sequence(ExpertId e) const;
  // Every global slot this table can route to, ascending, without repeats.
  std::vector<GlobalSlot> targets() const;

 private:
  struct Entry {
    uint32_t offset = 0;
    uint32_t mask = 0;  // sequence length - 1 (a power of two minus one)
  };
  // Appends expert e's sequence for the fractions w (one per replica).
  void append_expert(const Placement& placement, LayerId l, ExpertId e, std::span<const double> w);
  std::vector<Entry> entries_;    // [num_experts]
  std::vector<GlobalSlot> table_;  // concatenated sequences
};

// Integer counts proportional to `weights` (each >= 0, not all 0) summing to
// `total`, by largest remainder (ties to the lowest index).
std::vector<int32_t> apportion(std::span<const double> weights, int32_t total);

}  // namespace omni
