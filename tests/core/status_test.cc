#include "omniplacement/core/status.h"

#include <gtest/gtest.h>

#include <memory>

namespace omni {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.to_string(), "OK");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s = invalid_argument_error("layer 3, rank 7: expert 300 out of range");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.to_string(), "INVALID_ARGUMENT: layer 3, rank 7: expert 300 out of range");
  EXPECT_EQ(s.with_context("reading p.npy").message(), "reading p.npy: layer 3, rank 7: expert 300 out of range");
}

TEST(StatusTest, OkCodeDropsMessage) {
  Status s(StatusCode::kOk, "ignored");
  EXPECT_TRUE(s.ok());
  EXPECT_TRUE(s.message().empty());
}

TEST(StatusTest, EveryCodeHasAName) {
  for (int c = 0; c <= static_cast<int>(StatusCode::kInternal); ++c)
    EXPECT_NE(status_code_name(static_cast<StatusCode>(c)), "UNKNOWN") << c;
}

StatusOr<int> half(int x) {
  if (x % 2) return invalid_argument_error("odd");
  return x / 2;
}

StatusOr<int> quarter(int x) {
  OMNI_ASSIGN_OR_RETURN(int h, half(x));
  OMNI_ASSIGN_OR_RETURN(int q, half(h));
  return q;
}

TEST(StatusOrTest, ValueAndErrorPropagate) {
  EXPECT_EQ(*quarter(8), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "odd");
}

TEST(StatusOrTest, MoveOnlyValue) {
  StatusOr<std::unique_ptr<int>> p = std::make_unique<int>(5);
  ASSERT_TRUE(p.ok());
  std::unique_ptr<int> v = std::move(p).value();
  EXPECT_EQ(*v, 5);
}

TEST(StatusOrDeathTest, ValueOfErrorAborts) {
  StatusOr<int> r = not_found_error("nothing");
  EXPECT_DEATH((void)r.value(), "NOT_FOUND: nothing");
}

}  // namespace
}  // namespace omni
