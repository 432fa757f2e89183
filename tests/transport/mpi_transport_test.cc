// MpiTransport in a build without MPI: the class exists and says so. (With
// MPI, transport_mpi_test runs the conformance suite under mpirun.)
#include "omniplacement/transport/mpi_transport.h"

#include <gtest/gtest.h>

#include <chrono>

namespace omni {
namespace {

TEST(MpiTransport, WithoutMpiFactoriesReturnUnimplemented) {
  if (MpiTransport::available()) GTEST_SKIP() << "built with MPI: covered by transport_mpi_test under mpirun";
  EXPECT_EQ(MpiTransport::init(nullptr, nullptr).code(), StatusCode::kUnimplemented);
  const auto t = MpiTransport::create_world(std::chrono::seconds(1));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(t.status().message().find("OMNI_WITH_MPI"), std::string::npos) << t.status();
  EXPECT_TRUE(MpiTransport::finalize().ok());
}

}  // namespace
}  // namespace omni
