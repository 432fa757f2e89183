// Test helpers shared by module test suites: seeded random placements and loads.
#pragma once

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"

namespace omni::testing {

// A random valid layout: every expert has >= 1 replica, per-layer slots per
// rank drawn in [min_spr, max_spr] (uneven layers), remaining slots either
// extra replicas (never two of one expert on one rank when no_dups) or empty.
inline PlacementLayout random_layout(std::mt19937_64& rng, int32_t L, int32_t R, int32_t E, int32_t extra_min,
                                     int32_t extra_max, bool no_dups = true, double empty_prob = 0.2) {
  PlacementLayout p;
  p.num_ranks = R;
  p.num_experts = E;
  const int32_t base = (E + R - 1) / R;
  for (int32_t l = 0; l < L; ++l) {
    const int32_t spr = base + std::uniform_int_distribution<int32_t>(extra_min, extra_max)(rng);
    p.slots_per_rank.push_back(spr);
    std::vector<ExpertId> row(static_cast<size_t>(R) * static_cast<size_t>(spr), kEmptySlot);
    // Experts shuffled, dealt round-robin over ranks so that each rank gets at most `base`.
    std::vector<ExpertId> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<int32_t> used(static_cast<size_t>(R), 0);
    for (int32_t i = 0; i < E; ++i) {
      const int32_t r = i % R;
      row[static_cast<size_t>(r) * static_cast<size_t>(spr) + static_cast<size_t>(used[static_cast<size_t>(r)]++)] =
          order[static_cast<size_t>(i)];
    }
    std::uniform_int_distribution<ExpertId> pick(0, E - 1);
    std::bernoulli_distribution empty(empty_prob);
    for (int32_t r = 0; r < R; ++r) {
      for (int32_t s = used[static_cast<size_t>(r)]; s < spr; ++s) {
        if (empty(rng)) continue;
        for (int tries = 0; tries < 20; ++tries) {
          const ExpertId e = pick(rng);
          bool dup = false;
          if (no_dups)
            for (int32_t t = 0; t < spr; ++t)
              dup |= row[static_cast<size_t>(r) * static_cast<size_t>(spr) + static_cast<size_t>(t)] == e;
          if (!dup) {
            row[static_cast<size_t>(r) * static_cast<size_t>(spr) + static_cast<size_t>(s)] = e;
            break;
          }
        }
      }
    }
    p.phy2log.push_back(std::move(row));
  }
  return p;
}

// Lognormal(0, sigma) loads scaled to integers (kCounts).
inline LoadMatrix random_load(std::mt19937_64& rng, int32_t L, int32_t E, double sigma = 1.0, double scale = 1000.0) {
  std::lognormal_distribution<double> d(0.0, sigma);
  std::vector<int64_t> c(static_cast<size_t>(L) * static_cast<size_t>(E));
  for (auto& v : c) v = static_cast<int64_t>(d(rng) * scale);
  return *LoadMatrix::from_counts(L, E, std::move(c));
}

}  // namespace omni::testing
