#include "omniplacement/runtime/commit_protocol.h"

namespace omni {

std::string_view stage_phase_name(StagePhase p) {
  switch (p) {
    case StagePhase::kIdle: return "idle";
    case StagePhase::kWorking: return "working";
    case StagePhase::kReady: return "ready";
    case StagePhase::kNoChange: return "no-change";
    case StagePhase::kFailed: return "failed";
  }
  return "unknown";
}

std::string_view decision_name(Decision d) {
  switch (d) {
    case Decision::kNone: return "none";
    case Decision::kStartRound: return "start-round";
    case Decision::kWait: return "wait";
    case Decision::kCommit: return "commit";
    case Decision::kFinish: return "finish";
    case Decision::kAbort: return "abort";
  }
  return "unknown";
}

std::string_view abort_reason_name(AbortReason r) {
  switch (r) {
    case AbortReason::kNone: return "none";
    case AbortReason::kFailed: return "failed";
    case AbortReason::kMismatch: return "mismatch";
    case AbortReason::kTimeout: return "timeout";
    case AbortReason::kPlacementDiverged: return "placement-diverged";
  }
  return "unknown";
}

namespace {

std::array<int64_t, kVoteFields> fields(const Vote& v) {
  return {v.round, v.batch, static_cast<int64_t>(v.phase), v.last_batch, v.plan_checksum, v.placement_checksum};
}

Vote from_fields(const int64_t* f) {
  Vote v;
  v.round = f[0];
  v.batch = f[1];
  v.phase = static_cast<StagePhase>(f[2]);
  v.last_batch = f[3];
  v.plan_checksum = f[4];
  v.placement_checksum = f[5];
  return v;
}

// Votes hold values >= -1 (checksums are masked to 63 bits), so negation
// never overflows; INT64_MIN is clamped anyway so that a bad vote cannot trap.
int64_t negate(int64_t x) { return x == INT64_MIN ? INT64_MAX : -x; }

}  // namespace

void encode_vote(const Vote& v, std::span<int64_t, kVoteWords> out) {
  const auto f = fields(v);
  for (size_t i = 0; i < kVoteFields; ++i) {
    out[i] = f[i];
    out[kVoteFields + i] = negate(f[i]);
  }
}

VoteRange decode_votes(std::span<const int64_t, kVoteWords> reduced) {
  std::array<int64_t, kVoteFields> mn{};
  for (size_t i = 0; i < kVoteFields; ++i) mn[i] = negate(reduced[kVoteFields + i]);
  VoteRange r;
  r.max = from_fields(reduced.data());
  r.min = from_fields(mn.data());
  return r;
}

bool VoteRange::unanimous() const { return fields(min) == fields(max); }

DecisionResult decide(const VoteRange& v, const RoundState& s) {
  DecisionResult out;
  if (v.min.placement_checksum != v.max.placement_checksum) {
    // Ranks disagree on the placement in force: never start or continue a
    // migration on top of that (a bug elsewhere; reported, not hidden).
    out.decision = s.active ? Decision::kAbort : Decision::kWait;
    out.reason = AbortReason::kPlacementDiverged;
    return out;
  }
  if (!s.active) {
    const bool all_idle = v.min.phase == StagePhase::kIdle && v.max.phase == StagePhase::kIdle;
    out.decision = all_idle ? Decision::kStartRound : Decision::kWait;
    return out;
  }
  auto abort = [&](AbortReason r) {
    out.decision = Decision::kAbort;
    out.reason = r;
    return out;
  };
  if (v.max.phase == StagePhase::kFailed) return abort(AbortReason::kFailed);
  const bool everyone_reporting = v.min.round == s.round && v.max.round == s.round;
  if (everyone_reporting && v.min.phase == v.max.phase) {
    if (v.min.phase == StagePhase::kNoChange) {
      out.decision = Decision::kFinish;
      return out;
    }
    if (v.min.phase == StagePhase::kReady) {
      if (!v.unanimous() || v.min.batch != s.batch) return abort(AbortReason::kMismatch);
      out.decision = Decision::kCommit;
      out.last_batch = v.min.last_batch != 0;
      return out;
    }
  }
  // Some rank has reached a final phase that another contradicts (ready vs no
  // change, or ready/no-change on different plans): they planned differently.
  const bool final_min = v.min.round == s.round && v.min.phase >= StagePhase::kReady;
  if (final_min && (v.min.phase != v.max.phase || v.min.plan_checksum != v.max.plan_checksum))
    return abort(AbortReason::kMismatch);
  if (s.waited_steps >= s.timeout_steps) return abort(AbortReason::kTimeout);
  out.decision = Decision::kWait;
  return out;
}

}  // namespace omni
