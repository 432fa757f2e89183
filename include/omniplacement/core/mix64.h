// SplitMix64: the project's deterministic hash and random sequence. The same
// inputs give the same values on every platform, compiler and run, which is
// what seeded work needs: the runtime's synthetic weights and token draws and
// the planner's seeded candidate orders (a plan must be identical on every
// rank). Not a cryptographic hash.
//
//   uint64_t h = omni::mix64(key);            // hash of one 64-bit key
//   uint64_t state = seed;
//   uint64_t a = omni::splitmix64_next(state);  // first value of the sequence
//   uint64_t b = omni::splitmix64_next(state);  // second; state advanced twice
//
// Thread safety: pure functions; splitmix64_next changes only the state it is
// given.
#pragma once

#include <cstdint>

namespace omni {

// The golden-ratio increment of SplitMix64.
inline constexpr uint64_t kSplitMixGamma = 0x9e3779b97f4a7c15ULL;

// The SplitMix64 finaliser of x + kSplitMixGamma: a bijection of 64-bit values
// whose bits all depend on every bit of x.
inline constexpr uint64_t mix64(uint64_t x) {
  x += kSplitMixGamma;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The next value of the SplitMix64 sequence seeded with `state`; advances
// state by kSplitMixGamma.
inline constexpr uint64_t splitmix64_next(uint64_t& state) {
  const uint64_t v = mix64(state);
  state += kSplitMixGamma;
  return v;
}

}  // namespace omni
