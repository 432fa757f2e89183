// Prices of expert moves in tokens per window (see move_prices.h).
#include "move_prices.h"

#include <algorithm>

namespace omni::detail {

MovePrices::MovePrices(std::span<const ExpertId> reference, int32_t num_ranks, int32_t slots_per_rank,
                       int32_t num_experts, const std::vector<int32_t>& host_of_rank, const LinkBandwidths& links,
                       double expert_bytes, double token_seconds)
    : num_experts_(num_experts) {
  const auto R = static_cast<size_t>(num_ranks), E = static_cast<size_t>(num_experts);
  const int32_t H = host_of_rank.empty() ? 1 : *std::max_element(host_of_rank.begin(), host_of_rank.end()) + 1;
  held_.assign(R * E, 0);
  std::vector<char> on_host(static_cast<size_t>(H) * E, 0);
  std::vector<char> anywhere(E, 0);
  for (size_t g = 0; g < reference.size(); ++g) {
    const ExpertId e = reference[g];
    if (e < 0) continue;
    const size_t r = g / static_cast<size_t>(slots_per_rank);
    const size_t h = host_of_rank.empty() ? 0 : static_cast<size_t>(host_of_rank[r]);
    held_[r * E + static_cast<size_t>(e)] = 1;
    on_host[h * E + static_cast<size_t>(e)] = 1;
    anywhere[static_cast<size_t>(e)] = 1;
  }
  if (expert_bytes <= 0) {
    price_.assign(R * E, 0.0);
    return;
  }
  // Filled row by row below (no zero fill first).
  price_.clear();
  price_.reserve(R * E);
  // The ranks receive in parallel: a plan's moves, spread over the ranks, take
  // the time of one rank's share of them.
  const double parallel = static_cast<double>(num_ranks);
  const double same_host = (links.latency_s + expert_bytes / links.same_host_bytes_per_s) / token_seconds / parallel;
  const double cross_host = (links.latency_s + expert_bytes / links.cross_host_bytes_per_s) / token_seconds / parallel;
  // Each host's row of prices, copied to its ranks; a rank's own experts cost 0.
  std::vector<double> host_price(static_cast<size_t>(H) * E);
  for (size_t h = 0; h < static_cast<size_t>(H); ++h)
    for (size_t e = 0; e < E; ++e) host_price[h * E + e] = anywhere[e] && on_host[h * E + e] ? same_host : cross_host;
  for (size_t r = 0; r < R; ++r) {
    const size_t h = host_of_rank.empty() ? 0 : static_cast<size_t>(host_of_rank[r]);
    price_.insert(price_.end(), host_price.begin() + static_cast<std::ptrdiff_t>(h * E),
                  host_price.begin() + static_cast<std::ptrdiff_t>((h + 1) * E));
  }
  for (size_t g = 0; g < reference.size(); ++g)
    if (reference[g] >= 0) price_[g / static_cast<size_t>(slots_per_rank) * E + static_cast<size_t>(reference[g])] = 0.0;
  min_price_ = std::min(same_host, cross_host);
}

}  // namespace omni::detail
