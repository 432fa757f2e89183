// The conformance suite on MpiTransport. Run under mpirun (ctest does:
// `mpirun --oversubscribe -np 4 transport_mpi_test`, label mpi); every rank
// runs every case in the same order on a fresh transport. Rank 0 prints the
// full gtest report, the other ranks only their failures; the exit code is
// non-zero on every rank if any rank failed.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>

#include "omniplacement/transport/mpi_transport.h"
#include "transport/conformance.h"

namespace omni {
namespace {

class MpiConformance : public ::testing::TestWithParam<size_t> {};

TEST_P(MpiConformance, PassesOnEveryRank) {
  const auto& c = testing::conformance_cases()[GetParam()];
  StatusOr<std::unique_ptr<MpiTransport>> t = MpiTransport::create_world(std::chrono::seconds(60));
  ASSERT_TRUE(t.ok()) << t.status();
  if ((*t)->size() < c.min_ranks) GTEST_SKIP() << "needs " << c.min_ranks << " ranks";
  const Status s = c.body(**t);
  EXPECT_TRUE(s.ok()) << "rank " << (*t)->rank() << ": " << s;
  // Cases must not bleed into each other: everyone finishes before the
  // transport goes away.
  MPI_Barrier(MPI_COMM_WORLD);
}

INSTANTIATE_TEST_SUITE_P(Cases, MpiConformance,
                         ::testing::Range<size_t>(0, testing::conformance_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return testing::conformance_cases()[info.param].name;
                         });

TEST(MpiTransport, RanksMatchTheWorld) {
  StatusOr<std::unique_ptr<MpiTransport>> t = MpiTransport::create_world(std::chrono::seconds(60));
  ASSERT_TRUE(t.ok()) << t.status();
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ((*t)->rank(), rank);
  EXPECT_EQ((*t)->size(), size);
  EXPECT_EQ((*t)->backend(), "mpi");
  EXPECT_TRUE(MpiTransport::available());
  int level = 0;
  MPI_Query_thread(&level);
  EXPECT_EQ(level, MPI_THREAD_MULTIPLE);
  MPI_Barrier(MPI_COMM_WORLD);
}

// Ranks other than 0 report only their failed checks, prefixed with the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.summary());
  }

 private:
  int rank_;
};

}  // namespace
}  // namespace omni

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const omni::Status init = omni::MpiTransport::init(&argc, &argv);
  if (!init.ok()) {
    std::fprintf(stderr, "%s\n", init.to_string().c_str());
    return 1;
  }
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new omni::FailurePrinter(rank));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  const omni::Status fin = omni::MpiTransport::finalize();
  if (!fin.ok()) std::fprintf(stderr, "%s\n", fin.to_string().c_str());
  return any_failed != 0 || !fin.ok() ? 1 : 0;
}
