// Sharing one rank's plan with every rank: in a re-plan round only the leader
// (the lowest live rank) runs the planner; the placement it plans is
// broadcast with its checksum, and every rank checks the checksum before it
// derives the migration from it. A rank that receives a plan whose checksum
// does not match fails the round (DATA_LOSS), which aborts it everywhere.
//
//   StatusOr<omni::Placement> mine = ...;    // on the leader: its plan, or why planning failed
//   auto plan = omni::share_plan(transport, leader, rank == leader ? &mine : nullptr, timeout);
//   if (!plan.ok()) return plan.status();    // the leader's error, a transport error or a bad checksum
//
// Wire format (two broadcasts from the leader, native byte order: every rank
// of one job runs the same build): a header of three int64 — kind (1 plan,
// 2 error), payload bytes, Placement::checksum() of the plan (0 for an error)
// — then the payload: for a plan encode_plan()'s bytes, for an error its
// message.
//
// Thread safety: encode_plan/decode_plan are pure; share_plan is a collective
// on `transport` (one thread at a time per Transport, same order on every rank).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/transport/transport.h"

namespace omni {

// The placement as bytes: int64 num_layers, num_ranks, num_experts, has_shares;
// int32 slots_per_rank[num_layers]; int32 phy2log of every layer; then, with
// shares, every layer's shares as doubles.
std::vector<std::byte> encode_plan(const Placement& p);

// The placement encode_plan() wrote. DATA_LOSS when the bytes are truncated,
// malformed (sizes out of range, a placement that does not validate) or when
// the decoded placement's checksum is not `checksum`; the message says which
// and gives both checksums.
StatusOr<Placement> decode_plan(std::span<const std::byte> bytes, uint64_t checksum);

// Collective: the leader's plan on every surviving rank. On the leader,
// `leader_plan` is its plan or its planning error (the error is broadcast and
// returned on every rank as FAILED_PRECONDITION naming the leader; a leader
// that passes nullptr broadcasts such an error too); other ranks pass nullptr
// (anything else is ignored there). Errors: the transport's (UNAVAILABLE when
// the leader has failed, DEADLINE_EXCEEDED), decode_plan()'s.
StatusOr<Placement> share_plan(Transport& transport, RankId leader, const StatusOr<Placement>* leader_plan,
                               Timeout timeout);

}  // namespace omni
