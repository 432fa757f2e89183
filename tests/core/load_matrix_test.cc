#include "omniplacement/core/load_matrix.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace omni {
namespace {

TEST(LoadMatrixTest, CountsAreExactAndVisibleAsDoubles) {
  auto m = LoadMatrix::from_counts(2, 3, {1, 2, 3, 4, 5, 6});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->is_counts());
  EXPECT_EQ(m->row(1)[2], 6.0);
  EXPECT_EQ(m->counts_row(0)[1], 2);
  EXPECT_EQ(m->layer_total(1), 15.0);
  EXPECT_EQ(m->at(0, 0), 1.0);
}

TEST(LoadMatrixTest, AddKeepsCountsExactUpToTheLayerLimit) {
  const int64_t half = kMaxLayerLoad / 2;  // 2^52
  auto a = LoadMatrix::from_counts(2, 2, {half, 1, 0, 0});
  auto b = LoadMatrix::from_counts(2, 2, {half - 4, 2, 0, 5});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a->add(*b).ok());
  EXPECT_EQ(a->counts_row(0)[0], kMaxLayerLoad - 4);
  EXPECT_EQ(a->counts_row(0)[1], 3);  // layer 0 sums to 2^53 - 1, exactly
  EXPECT_EQ(a->layer_total(0), static_cast<double>(kMaxLayerLoad - 1));
  // Layer 0 at exactly 2^53 is accepted; one more token is refused and changes nothing.
  auto one = LoadMatrix::from_counts(2, 2, {1, 0, 0, 0});
  ASSERT_TRUE(a->add(*one).ok());
  const LoadMatrix before = *a;
  Status s = a->add(*one);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find("layer 0"), std::string::npos) << s;
  EXPECT_NE(s.message().find("kMaxLayerLoad"), std::string::npos) << s;
  EXPECT_TRUE(*a == before);
}

TEST(LoadMatrixTest, LayerTotalsAboveTheLimitAreRefusedEverywhere) {
  const int64_t max = std::numeric_limits<int64_t>::max();
  // Counts whose int64 sum would overflow, or whose sum is above 2^53.
  EXPECT_EQ(LoadMatrix::from_counts(1, 2, {max, max}).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(LoadMatrix::from_counts(2, 2, {0, 0, kMaxLayerLoad, 1}).status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(LoadMatrix::from_counts(2, 2, {0, 0, kMaxLayerLoad, 1}).status().message().find("layer 1"),
            std::string::npos);
  EXPECT_TRUE(LoadMatrix::from_counts(2, 2, {0, 0, kMaxLayerLoad - 1, 1}).ok());
  // Finite weights whose sum is infinite, or just above the limit.
  EXPECT_EQ(LoadMatrix::from_weights(1, 2, {1.7e308, 1.7e308}).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(LoadMatrix::from_weights(1, 1, {1e300}).status().code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(LoadMatrix::from_weights(1, 2, {4.5e15, 4.5e15}).ok());
  // Setters, add and scale check the layer they change and leave the matrix as it was.
  auto m = LoadMatrix::from_counts(1, 2, {kMaxLayerLoad - 1, 0});
  ASSERT_TRUE(m.ok());
  const LoadMatrix before = *m;
  EXPECT_EQ(m->set_count(0, 1, 2).code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(*m == before);
  EXPECT_TRUE(m->set_count(0, 1, 1).ok());
  EXPECT_EQ(m->set_weight(0, 1, 1e300).code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(m->is_counts());
  EXPECT_EQ(m->scale(2.0).code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(m->is_counts());
  EXPECT_EQ(m->counts_row(0)[1], 1);
  EXPECT_TRUE(m->scale(0.5).ok());
  auto w = LoadMatrix::from_weights(1, 1, {8e15});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->add(*w).code(), StatusCode::kOutOfRange);
  EXPECT_DOUBLE_EQ(w->row(0)[0], 8e15);
}

TEST(LoadMatrixTest, MixingKindsGivesWeights) {
  auto a = LoadMatrix::from_counts(1, 2, {1, 2});
  auto b = LoadMatrix::from_weights(1, 2, {0.5, 0.25});
  ASSERT_TRUE(a->add(*b).ok());
  EXPECT_FALSE(a->is_counts());
  EXPECT_TRUE(a->counts_row(0).empty());
  EXPECT_DOUBLE_EQ(a->row(0)[1], 2.25);
}

TEST(LoadMatrixTest, ScaleAndSlice) {
  auto m = LoadMatrix::from_counts(3, 2, {1, 2, 3, 4, 5, 6});
  auto s = m->layers(1, 2);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->num_layers(), 2);
  EXPECT_EQ(s->counts_row(1)[1], 6);
  ASSERT_TRUE(m->scale(0.5).ok());
  EXPECT_DOUBLE_EQ(m->at(2, 1), 3.0);
  EXPECT_FALSE(m->layers(2, 2).ok());
  EXPECT_FALSE(m->scale(-1).ok());
  EXPECT_FALSE(m->scale(std::nan("")).ok());
}

TEST(LoadMatrixTest, RejectsBadInput) {
  EXPECT_FALSE(LoadMatrix::zeros(0, 4).ok());
  EXPECT_FALSE(LoadMatrix::zeros(4, 0).ok());
  EXPECT_FALSE(LoadMatrix::zeros(-1, 4).ok());
  EXPECT_FALSE(LoadMatrix::zeros(1 << 20, 1 << 20).ok());
  auto wrong = LoadMatrix::from_counts(2, 2, {1, 2, 3});
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("expected 2 x 2 = 4 counts, got 3"), std::string::npos);
  auto neg = LoadMatrix::from_counts(2, 2, {1, 2, -3, 4});
  ASSERT_FALSE(neg.ok());
  EXPECT_NE(neg.status().message().find("layer 1, expert 0"), std::string::npos);
  EXPECT_FALSE(LoadMatrix::from_weights(1, 2, {1.0, std::numeric_limits<double>::infinity()}).ok());
  auto m = LoadMatrix::zeros(2, 2);
  EXPECT_EQ(m->set_count(2, 0, 1).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(m->set_count(0, -1, 1).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(m->set_count(0, 0, -1).code(), StatusCode::kInvalidArgument);
  auto other = LoadMatrix::zeros(2, 3);
  EXPECT_FALSE(m->add(*other).ok());
}

}  // namespace
}  // namespace omni
