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

TEST(LoadMatrixTest, AddKeepsCountsExactUpTo2To62) {
  const int64_t big = int64_t{1} << 62;
  auto a = LoadMatrix::from_counts(1, 2, {big, 1});
  auto b = LoadMatrix::from_counts(1, 2, {big - 1, 2});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a->add(*b).ok());
  EXPECT_EQ(a->counts_row(0)[0], (big - 1) + big);  // 2^63 - 1: the largest int64
  EXPECT_EQ(a->counts_row(0)[1], 3);
  // One more overflows: reported, and the matrix is unchanged.
  auto one = LoadMatrix::from_counts(1, 2, {1, 0});
  Status s = a->add(*one);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find("layer 0, expert 0"), std::string::npos) << s;
  EXPECT_EQ(a->counts_row(0)[0], std::numeric_limits<int64_t>::max());
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
