// UcxTransport in a build without UCX: the class exists and says so. (With
// UCX, transport_ucx_test runs the conformance suite under mpirun and
// transport_ucx_kill_test / transport_ucx_stall_test kill and stop processes.)
#include "omniplacement/transport/ucx_transport.h"

#include <gtest/gtest.h>

#include <chrono>

namespace omni {
namespace {

TEST(UcxTransport, WithoutUcxFactoriesReturnUnimplemented) {
  if (UcxTransport::available()) GTEST_SKIP() << "built with UCX: covered by transport_ucx_test under mpirun";
  EXPECT_EQ(UcxTransport::init(nullptr, nullptr, std::chrono::seconds(1)).code(), StatusCode::kUnimplemented);
  const auto t = UcxTransport::create_world(std::chrono::seconds(1));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(t.status().message().find("OMNI_WITH_UCX"), std::string::npos) << t.status();
  EXPECT_TRUE(UcxTransport::finalize().ok());
}

// Without init(), create_world says what to do first.
TEST(UcxTransport, CreateWorldBeforeInitIsRefused) {
  if (!UcxTransport::available()) GTEST_SKIP() << "no UCX in this build";
  const auto t = UcxTransport::create_world(std::chrono::seconds(1));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(t.status().message().find("init"), std::string::npos) << t.status();
}

}  // namespace
}  // namespace omni
