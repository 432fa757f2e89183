// Internal (not installed): what it costs to give a rank an expert it does
// not hold in the placement in force, in the unit of the planner's gains.
//
// A plan's gain is the busiest rank's tokens it saves per window (its
// expected max rank load is lower), worth seconds_per_token each, in every
// window until the next re-plan: token_seconds = seconds_per_token x
// interval_steps / window_steps (ServingModel, planner.h). Moving expert e's
// weights to rank r takes the link time from its nearest replica in the
// placement in force (same host when one is there, else across hosts; an
// expert with no replica is restored over a cross-host link). Every rank
// receives at the same time, and a migration lasts as long as its busiest
// receiver, so a plan whose moves are spread over the R ranks takes 1 / R of
// their summed link time; each move is charged that share:
//   price(r, e) = (latency + expert_bytes / bandwidth) / R / token_seconds  tokens
// and 0 when r holds e already (slots within a rank are interchangeable; the
// planner keeps such experts in their slots). expert_bytes = 0: every move is
// free.
//
//   detail::MovePrices prices(current_row, R, S, E, host_of_rank, topology.bandwidths(), bytes, token_seconds);
//   prices.price(r, e);    // tokens a plan must save per window to pay for it
//
// Thread safety: immutable after construction.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/topology.h"

namespace omni::detail {

class MovePrices {
 public:
  // reference: the placement in force of one layer, [R * S] (-1 empty);
  // host_of_rank [R]; token_seconds > 0; expert_bytes >= 0.
  MovePrices(std::span<const ExpertId> reference, int32_t num_ranks, int32_t slots_per_rank, int32_t num_experts,
             const std::vector<int32_t>& host_of_rank, const LinkBandwidths& links, double expert_bytes,
             double token_seconds);

  // Tokens per window a plan must save to pay for giving rank r expert e.
  double price(RankId r, ExpertId e) const {
    return price_[static_cast<size_t>(r) * static_cast<size_t>(num_experts_) + static_cast<size_t>(e)];
  }
  // The least positive price (0 when every move is free).
  double min_price() const { return min_price_; }
  // Whether rank r holds expert e in the placement in force.
  bool held(RankId r, ExpertId e) const {
    return held_[static_cast<size_t>(r) * static_cast<size_t>(num_experts_) + static_cast<size_t>(e)] != 0;
  }

 private:
  int32_t num_experts_;
  double min_price_ = 0;
  std::vector<double> price_;  // [R * E]
  std::vector<char> held_;     // [R * E]
};

}  // namespace omni::detail
