// The epoch-commit agreement: what every rank decides at a cadence step.
//
// A migration round (one re-plan) runs on every rank's planner thread: it
// plans, then stages the weights of one batch of layers after another. The
// engine threads never wait for it. At every cadence step while a round is
// due or running, step_boundary() makes one tiny collective: every rank
// contributes a Vote (its planner's phase for the current batch, the plan's
// checksum, the checksum of the placement in force), the collective returns the
// element-wise minimum and maximum over the ranks, and decide() turns them into
// the same Decision on every rank:
//
//   no round running:  all planners idle          -> kStartRound (take the window, hand it over)
//                      some planner still busy     -> kWait
//   round running:     any kFailed, any mismatch of round, batch, plan or
//                      placement checksum           -> kAbort (old epoch stays)
//                      all kNoChange                -> kFinish (plan not worth moving)
//                      all kReady, same batch/plan  -> kCommit (copy staging, epoch + 1)
//                      otherwise                    -> kWait, or kAbort past the timeout
//
// Because every rank applies the same decision at the same step, all ranks
// switch epochs together and a rank never routes to a slot whose weights are
// not committed on its owner.
//
//   omni::Vote v = ...;                                  // this rank
//   std::array<int64_t, omni::kVoteWords> buf;
//   omni::encode_vote(v, buf);
//   transport.all_reduce(buf, omni::ReduceOp::kMax, timeout);   // max of v and of -v
//   omni::VoteRange range = omni::decode_votes(buf);
//   omni::Decision d = omni::decide(range, state);
//
// Thread safety: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace omni {

// A rank's planner phase for the current round and batch. Ordered so that the
// maximum over ranks tells whether anyone failed.
enum class StagePhase : int64_t {
  kIdle = 0,      // no job (before a round starts, or not yet picked up)
  kWorking = 1,   // planning or transferring
  kReady = 2,     // the current batch is staged completely
  kNoChange = 3,  // the plan is not worth moving (min_gain) or identical
  kFailed = 4,    // planning or a transfer failed or timed out
};
std::string_view stage_phase_name(StagePhase p);

struct Vote {
  int64_t round = -1;              // round this rank's planner reports on (-1: none)
  int64_t batch = 0;               // batch index within the round
  StagePhase phase = StagePhase::kIdle;
  int64_t last_batch = 0;          // 1 when this batch is the round's last
  int64_t plan_checksum = 0;       // checksum of the planned placement (vote_checksum())
  int64_t placement_checksum = 0;  // checksum of the placement in force (vote_checksum())
};

// A 64-bit placement checksum as a vote field (its low 63 bits, >= 0).
inline int64_t vote_checksum(uint64_t checksum) { return static_cast<int64_t>(checksum & 0x7fffffffffffffffULL); }

inline constexpr size_t kVoteFields = 6;
// The collective buffer: the fields, then their negations (one all-reduce max
// gives both the maximum and the minimum).
inline constexpr size_t kVoteWords = 2 * kVoteFields;

void encode_vote(const Vote& v, std::span<int64_t, kVoteWords> out);

struct VoteRange {
  Vote min;
  Vote max;
  // Every field equal on every rank.
  bool unanimous() const;
};
// From a buffer reduced with max.
VoteRange decode_votes(std::span<const int64_t, kVoteWords> reduced);

enum class Decision {
  kNone,        // no collective this step
  kStartRound,  // every rank starts round `next round` now
  kWait,        // keep serving; ask again at the next cadence step
  kCommit,      // every rank commits the current batch now
  kFinish,      // the round ends without a change
  kAbort,       // the round ends; staged weights are dropped, the epoch stays
};
std::string_view decision_name(Decision d);

// The engine's view of the round, identical on every rank.
struct RoundState {
  bool active = false;
  int64_t round = -1;
  int64_t batch = 0;
  int64_t waited_steps = 0;       // steps since the current batch began waiting
  int64_t timeout_steps = 1000;   // abort a batch not ready after this many steps
  int64_t placement_checksum = 0; // this rank's placement in force
};

// Why a kAbort was decided (for stats and logs).
enum class AbortReason { kNone, kFailed, kMismatch, kTimeout, kPlacementDiverged };
std::string_view abort_reason_name(AbortReason r);

struct DecisionResult {
  Decision decision = Decision::kNone;
  AbortReason reason = AbortReason::kNone;
  bool last_batch = false;  // with kCommit: the round ends after this batch
};

DecisionResult decide(const VoteRange& votes, const RoundState& state);

}  // namespace omni
