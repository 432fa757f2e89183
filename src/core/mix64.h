// SplitMix64: the project's deterministic hash and generator (same values on
// every platform) for seeded weights and token draws (runtime) and seeded
// candidate orders (planner). Internal to src/ (not installed).
#pragma once

#include <cstdint>

namespace omni::internal {

constexpr uint64_t kSplitMixGamma = 0x9e3779b97f4a7c15ULL;

// The SplitMix64 finaliser of x + gamma.
inline uint64_t mix64(uint64_t x) {
  x += kSplitMixGamma;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The next value of the SplitMix64 sequence seeded with `state` (advances it).
inline uint64_t splitmix64_next(uint64_t& state) {
  const uint64_t v = mix64(state);
  state += kSplitMixGamma;
  return v;
}

}  // namespace omni::internal
