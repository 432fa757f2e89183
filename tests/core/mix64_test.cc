// SplitMix64 (core/mix64.h): the published sequence for seed 0, and the
// relation between mix64 and splitmix64_next.
#include "omniplacement/core/mix64.h"

#include <gtest/gtest.h>

namespace omni {
namespace {

TEST(Mix64, SeedZeroGivesTheReferenceSplitMix64Sequence) {
  // The first outputs of the reference SplitMix64 generator seeded with 0.
  uint64_t state = 0;
  EXPECT_EQ(splitmix64_next(state), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(splitmix64_next(state), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(splitmix64_next(state), 0x06c45d188009454fULL);
  EXPECT_EQ(state, 3 * kSplitMixGamma);
}

TEST(Mix64, NextIsTheHashOfTheStateBeforeAdvancing) {
  uint64_t state = 12345;
  const uint64_t before = state;
  EXPECT_EQ(splitmix64_next(state), mix64(before));
  EXPECT_EQ(state, before + kSplitMixGamma);
  static_assert(mix64(0) == 0xe220a8397b1dcdafULL, "usable in constant expressions");
}

}  // namespace
}  // namespace omni
