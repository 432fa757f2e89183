// Migration plans: the ordered expert-weight transfers that turn the current
// placement into the next one, and the safety check that proves a plan correct.
//
//   omni::MigrationOptions opt;                  // 44 MB per expert (DeepSeek-V3 FP8), 1 GiB of staging per rank
//   opt.layers_per_commit = 4;                   // what a PlacementManager with these options commits at once
//   omni::StatusOr<omni::MigrationPlan> plan = omni::diff(current, next, topology, opt);
//   if (!plan.ok()) return plan.status();
//   for (const omni::MigrationRound& round : plan->rounds)
//     for (const omni::Transfer& t : round.transfers)
//       copy(t.layer, t.src_rank, t.src_slot, t.dst_rank, t.dst_slot);   // t.bytes bytes
//   omni::Status safe = omni::verify_migration(current, *plan, next);    // OK for every plan diff() makes
//
// One model for the runtime and the simulator: a round is what a
// PlacementManager stages and then commits at one step (one epoch), and
// routing_after_round() is the placement it serves by after that commit. The
// simulator prices the same rounds (sim/cost_model.h, migration_cost), built
// with the same budget (staging_bytes_per_rank, layers_per_commit).
//
// ## Slots
// A slot is named by (layer, rank, slot within the rank), never by global slot,
// because the two placements may give a layer different slots_per_rank and then
// the same (rank, slot) has different global slot numbers. Slot (r, s) of layer
// l is the same physical slot in both placements. While a layer migrates, each
// rank holds max(current.slots_per_rank(l), next.slots_per_rank(l)) slots:
// slots s >= current.slots_per_rank(l) start empty (newly allocated); slots
// s >= next.slots_per_rank(l) end empty (freed after the last round).
//
// ## Staging semantics (what a runtime must implement)
// The migration runs its rounds in order. In one round every transfer reads its
// source slot as it was at the START of the round (into a staging buffer on the
// destination rank), and all destination slots are written at the END of the
// round, after every read of the round is complete. So a slot may be both the
// source of one transfer and the destination of another in the same round: two
// slots that swap contents (A <-> B), or any longer cycle, move in one round
// without losing either expert. A destination is written at most once per round.
// A slot whose expert does not change gets no transfer; a slot that is empty in
// the next placement (or beyond its slots_per_rank) gets no transfer either: it
// keeps its old weights, which may still serve and be read as a source, until
// it is released after the last round (MigrationPlan::releases).
//
// ## Safety invariant (checked by verify_migration)
// After every round, every expert that has a replica in both placements has at
// least one slot whose weights are in place (the slot holds that expert in the
// state after the round). diff() never overwrites the last in-place copy of an
// expert unless the same round writes a new copy of it. After the last round and
// the releases, the slots hold the next placement exactly. So the state after
// any round is a placement a runtime may route by (placement_after_round()):
// every expert it serves has a slot whose weights are there.
//
// ## Source choice
// A transfer of expert X to rank d reads from a slot holding X at the start of
// its round (a slot of the current placement, or one written by an earlier
// round). Candidates are ranked by link class to d: the same rank (a local copy),
// then the same host, then another host. Among the nearest class the sender with
// the fewest transfers in this round wins, then the fewest in the whole plan so
// far, then the lowest rank, then the lowest slot (deterministic). When every
// nearest candidate has used its per-round budget the transfer waits for a later
// round rather than take a farther link. A slot overwritten in a round is lost as
// a source for later rounds, so when a round overwrites the nearest copy of X for
// some pending transfer of X (nearer than any copy that will be in place after
// the round), that transfer joins the same round if the budget allows.
//
// ## Rounds
// A round's budget, per rank (MigrationOptions; 0 switches a limit off):
//   staging_bytes_per_rank  bytes one rank receives in the round (its staging
//                           memory: every received transfer, local copies
//                           included, occupies a staging buffer until the commit);
//   layers_per_commit       distinct layers the round touches (layer by layer updates);
//   max_per_round           experts one rank sends, and experts one rank receives
//                           (a local copy counts as one send and one receive of its rank).
// Transfers are taken in order of (layer, destination rank, destination slot),
// so early rounds carry early layers, matching a runtime that commits layer by
// layer; a layer may span rounds when the budget runs out inside it. Rounds mix
// layers up to layers_per_commit.
// The only exception to the budget: a cycle of slots whose experts have no other
// in-place copy must move in one round; when such a cycle needs more than the
// per-rank budget on one rank and no other transfer can go, the round takes it
// whole and is marked over_limit; it then takes other transfers up to the
// per-rank counts and bytes that cycle forced, no further (layers_per_commit
// is never exceeded: a cycle lies in one layer). This happens when slots are
// full of sole copies (no redundant or empty slot to break the cycle), e.g.
// between two placements without redundancy: staging cannot help there, since
// writing any slot of the cycle first would leave its expert with no replica.
// A runtime whose staging memory is exactly the budget cannot run such a round.
//
// ## Time model
// Within a round all transfers run in parallel. A rank sends its transfers one
// after another, and receives its transfers one after another, each taking
// Topology::transfer_seconds(src, dst, bytes) = latency + bytes / bandwidth of
// the link class (same-rank, same-host, cross-host). A rank's time in the round
// is max(its send time, its receive time) (sending and receiving overlap; a
// local copy counts on both sides). The round's time is the largest rank time;
// the plan's time is the sum of its rounds (rounds run one after another).
// It is an estimate for comparing plans, not a measurement: it ignores link
// contention beyond one rank's own links and the commit step between rounds.
//
// Units: bytes, seconds. Shapes: per-layer vectors have num_layers elements.
// Thread safety: pure functions on immutable inputs; any thread may call them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"

namespace omni {

// One DeepSeek-V3 routed expert in FP8: 3 matrices of 7168 x 2048 one-byte
// parameters = 44,040,192 bytes (docs/REFERENCES.md §5).
inline constexpr int64_t kDeepSeekV3ExpertBytes = int64_t{3} * 7168 * 2048;
// Largest accepted expert size (16 GiB), so that plan totals never overflow int64.
inline constexpr int64_t kMaxExpertBytes = int64_t{1} << 34;
// Staging memory per rank per round (one commit) unless told otherwise: the
// default of MigrationOptions, PlacementManagerOptions, the YAML key
// staging_bytes_per_rank and the CLI's --staging-bytes-per-rank.
inline constexpr int64_t kDefaultStagingBytesPerRank = int64_t{1} << 30;

// The budget of one round (see "Rounds" above) and the sizes it is counted in.
// The defaults are the PlacementManager's: what the runtime runs.
struct MigrationOptions {
  // Bytes of one expert's weights, used for every layer unless layer_expert_bytes is set.
  // Must be in [1, kMaxExpertBytes].
  int64_t expert_bytes = kDeepSeekV3ExpertBytes;
  // Optional per-layer sizes: empty, or num_layers elements in [1, kMaxExpertBytes].
  std::vector<int64_t> layer_expert_bytes;
  // At most this many bytes received by one rank in one round (its staging
  // memory). 0 = no limit. >= 0.
  int64_t staging_bytes_per_rank = kDefaultStagingBytesPerRank;
  // At most this many distinct layers in one round. 0 = no limit. >= 0.
  int32_t layers_per_commit = 0;
  // At most this many experts sent, and this many received, by one rank in one
  // round. 0 = no limit (the runtime has none). >= 0.
  int32_t max_per_round = 0;
};

// One expert-weight copy. src and dst may be the same rank (a local copy between slots).
struct Transfer {
  LayerId layer = 0;
  ExpertId expert = kEmptySlot;  // the expert copied
  RankId src_rank = 0;
  SlotId src_slot = 0;
  RankId dst_rank = 0;
  SlotId dst_slot = 0;
  ExpertId replaced = kEmptySlot;  // what the destination held before (kEmptySlot: nothing)
  LinkClass link = LinkClass::kSameRank;
  int64_t bytes = 0;

  friend bool operator==(const Transfer&, const Transfer&) = default;
};

struct MigrationRound {
  // Sorted by (layer, dst_rank, dst_slot). Destinations are distinct.
  std::vector<Transfer> transfers;
  int64_t bytes = 0;         // sum of the transfers' bytes
  double seconds = 0;        // estimated time (time model in the file comment)
  int32_t max_sends = 0;     // most transfers sent by one rank in this round
  int32_t max_receives = 0;  // most transfers received by one rank in this round
  int64_t max_receive_bytes = 0;  // most bytes received by one rank in this round (its staging need)
  // max_sends or max_receives exceeds the plan's max_per_round, or
  // max_receive_bytes its staging_bytes_per_rank (see "Rounds").
  bool over_limit = false;

  friend bool operator==(const MigrationRound&, const MigrationRound&) = default;
};

// A slot whose weights are dropped after the last round without a replacement:
// the next placement leaves it empty (or has fewer slots on the rank).
struct SlotRelease {
  LayerId layer = 0;
  RankId rank = 0;
  SlotId slot = 0;
  ExpertId expert = kEmptySlot;  // what it held

  friend bool operator==(const SlotRelease&, const SlotRelease&) = default;
};

struct MigrationPlan {
  std::vector<MigrationRound> rounds;
  std::vector<SlotRelease> releases;  // sorted by (layer, rank, slot)
  // The budget the plan was made with (0 = none), from MigrationOptions.
  int32_t max_per_round = 0;
  int64_t staging_bytes_per_rank = 0;
  int32_t layers_per_commit = 0;
  int64_t num_transfers = 0;
  int64_t total_bytes = 0;
  double total_seconds = 0;         // sum of the rounds' seconds
  int64_t num_unchanged_slots = 0;  // slots that keep their (non-empty) expert: no transfer
  // Indexed by LinkClass (same-rank, same-host, cross-host).
  std::array<int64_t, 3> transfers_by_link{};
  std::array<int64_t, 3> bytes_by_link{};

  int32_t num_rounds() const { return static_cast<int32_t>(rounds.size()); }
  int32_t num_over_limit_rounds() const;
  // "2 transfers (0.09 GB: 0 same-rank, 0 same-host, 2 cross-host) in 1 round, est. 0.0008908 s;
  //  0 slots unchanged, 0 released" (one line; GB are 1e9 bytes)
  std::string summary() const;

  friend bool operator==(const MigrationPlan&, const MigrationPlan&) = default;
};

// The migration plan from `current` to `next` (semantics in the file comment).
// Requires: equal num_layers, num_ranks and num_experts in both placements,
// topology.num_ranks() equal to them, and every expert that has a replica in
// `next` has one in `current` (an expert with no replica anywhere cannot be
// copied; restore it from a backup source first). Shares are ignored: only which
// expert each slot holds matters. Errors: INVALID_ARGUMENT for mismatched sizes
// or bad options, FAILED_PRECONDITION for an expert missing from `current`.
// Cost: O(rounds x transfers) time, O(slots) memory.
StatusOr<MigrationPlan> diff(const Placement& current, const Placement& next, const Topology& topology,
                             const MigrationOptions& options = {});

// Replays `plan` on `current` under the staging semantics and checks that:
// every transfer is in range and reads a slot that holds its expert at the start
// of its round; its `replaced` field is what the destination held; no destination
// is written twice in a round; rounds not marked over_limit respect
// plan.max_per_round and plan.staging_bytes_per_rank, every round respects
// plan.layers_per_commit, and each round's bytes and max_receive_bytes are
// what its transfers add up to; after every round every expert with a replica in both
// placements has an in-place copy; the releases name slots that hold their
// expert and that `next` leaves empty; and the final state equals `next`
// exactly (every slot of max(slots_per_rank) of both, per layer).
// Returns OK, or INVALID_ARGUMENT naming the first problem (round, transfer
// index, layer, rank, slot, expert), or saying that the placements' sizes differ.
Status verify_migration(const Placement& current, const MigrationPlan& plan, const Placement& next);

// The slot contents after the first `rounds_applied` rounds of `plan`
// (0 <= rounds_applied <= plan.num_rounds()), before the releases, as a
// placement on the migration grid: layer l has max(current.slots_per_rank(l),
// next.slots_per_rank(l)) slots per rank. It is what a runtime routes by between
// rounds. Every expert of both placements has a replica in it; an expert that
// only `current` has may be gone, so it is created with require_every_expert =
// false. Checks the plan with verify_migration() first and returns its error;
// INVALID_ARGUMENT when rounds_applied is out of range.
StatusOr<Placement> placement_after_round(const Placement& current, const MigrationPlan& plan, const Placement& next,
                                          int32_t rounds_applied);

// The placement a runtime routes by after committing the first
// `rounds_applied` rounds of `plan` (0 <= rounds_applied <= plan.num_rounds()):
//   - a layer none of whose transfers is in those rounds is current's layer;
//   - a layer whose transfers are all in them is next's layer exactly (its
//     releases applied, next's shares), as is a layer that has no transfer at
//     all but differs (shares, releases) once rounds_applied >= 1;
//   - a layer in between (its transfers span the boundary) holds the slot
//     contents of placement_after_round(), and when either placement has
//     explicit shares, each slot keeps the share it has in the placement whose
//     expert it holds, renormalised per expert (renormalise_shares).
// So rounds_applied = 0 gives current and rounds_applied = num_rounds() >= 1
// gives next. Every expert served has a slot whose weights are in place (the
// safety invariant). Errors as placement_after_round().
StatusOr<Placement> routing_after_round(const Placement& current, const MigrationPlan& plan, const Placement& next,
                                        int32_t rounds_applied);

}  // namespace omni
