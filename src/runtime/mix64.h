// SplitMix64 finaliser: the runtime's deterministic hash for seeded weights and
// token draws (same value on every platform). Private to src/runtime.
#pragma once

#include <cstdint>

namespace omni::internal {

inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace omni::internal
