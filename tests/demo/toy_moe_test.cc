// Tests of ToyMoE: weights are distinct per expert, serving matches the reference bit for bit,
// and wrong or half-copied weights are detected.
#include "demo/toy_moe.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace omni {
namespace {

TEST(ToyMoE, RejectsBadConfig) {
  EXPECT_FALSE(ToyMoE::create({0, 4, 8, 1}).ok());
  EXPECT_FALSE(ToyMoE::create({1, 0, 8, 1}).ok());
  EXPECT_FALSE(ToyMoE::create({1, 4, 0, 1}).ok());
  EXPECT_FALSE(ToyMoE::create({1, 4, 257, 1}).ok());
  auto m = ToyMoE::create({2, 4, 8, 1});
  ASSERT_TRUE(m.ok());
  std::vector<std::byte> w(static_cast<size_t>(m->expert_bytes()));
  EXPECT_EQ(m->expert_weights(2, 0, w).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(m->expert_weights(0, 4, w).code(), StatusCode::kOutOfRange);
  std::vector<std::byte> small(3);
  EXPECT_EQ(m->expert_weights(0, 0, small).code(), StatusCode::kInvalidArgument);
}

TEST(ToyMoE, ServingFromCopiedWeightsMatchesReferenceExactly) {
  auto m = ToyMoE::create({3, 10, 16, 7});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->expert_bytes(), (16 * 16 + 16) * 4);
  std::vector<std::byte> w(static_cast<size_t>(m->expert_bytes()));
  std::vector<float> x(16);
  for (LayerId l = 0; l < 3; ++l) {
    for (ExpertId e = 0; e < 10; ++e) {
      ASSERT_TRUE(m->expert_weights(l, e, w).ok());
      m->token_input(static_cast<uint64_t>(l * 100 + e), x);
      std::vector<float> y(16, 0.5f), ref(16, 0.5f);
      ToyMoE::apply(w, 16, x, 0.3f, y);
      m->reference(l, e, x, 0.3f, ref);
      EXPECT_EQ(0, std::memcmp(y.data(), ref.data(), 16 * sizeof(float))) << "layer " << l << " expert " << e;
    }
  }
}

TEST(ToyMoE, WrongExpertOrHalfCopiedWeightsAreDetected) {
  auto m = ToyMoE::create({2, 8, 16, 3});
  ASSERT_TRUE(m.ok());
  const auto n = static_cast<size_t>(m->expert_bytes());
  std::vector<float> x(16);
  auto output = [&](std::span<const std::byte> w) {
    std::vector<float> y(16, 0.f);
    ToyMoE::apply(w, 16, x, 1.0f, y);
    return y;
  };
  for (ExpertId a = 0; a < 8; ++a) {
    for (ExpertId b = 0; b < 8; ++b) {
      if (a == b) continue;
      // A slot that should hold b holds a (wrong expert), or a with the first
      // half of b copied over it (a transfer interrupted half way).
      std::vector<std::byte> wa(n), wb(n);
      ASSERT_TRUE(m->expert_weights(1, a, wa).ok());
      ASSERT_TRUE(m->expert_weights(1, b, wb).ok());
      std::vector<std::byte> half = wa;
      std::memcpy(half.data(), wb.data(), n / 2);
      m->token_input(static_cast<uint64_t>(a * 8 + b), x);
      std::vector<float> expect(16, 0.f);
      m->reference(1, b, x, 1.0f, expect);
      EXPECT_EQ(output(wb), expect);
      EXPECT_NE(output(wa), expect) << "wrong expert " << a << " for " << b << " undetected";
      EXPECT_NE(output(half), expect) << "half-copied " << a << " -> " << b << " undetected";
    }
  }
}

TEST(ToyMoE, ExpertsAreDistinct) {
  auto m = ToyMoE::create({4, 16, 4, 11});
  ASSERT_TRUE(m.ok());
  const auto n = static_cast<size_t>(m->expert_bytes());
  std::vector<std::vector<std::byte>> all;
  for (LayerId l = 0; l < 4; ++l)
    for (ExpertId e = 0; e < 16; ++e) {
      all.emplace_back(n);
      ASSERT_TRUE(m->expert_weights(l, e, all.back()).ok());
    }
  for (size_t i = 0; i < all.size(); ++i)
    for (size_t j = i + 1; j < all.size(); ++j) EXPECT_NE(all[i], all[j]) << i << " vs " << j;
}

}  // namespace
}  // namespace omni
