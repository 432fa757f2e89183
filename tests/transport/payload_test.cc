// Payload (wire.h): sizing a receive buffer does not touch its pages.
//
// A wire sizes a buffer for each large message on the progress thread before
// the data arrives. Zero-filling it there faulted in every page at once (8 MiB
// took 50-300 ms on this VM's page faults) and held heartbeats back past a
// 100 ms failure timeout. These tests pin the property by the process's
// resident memory, which counts the pages touched: a Payload's resize must
// leave it unchanged, and a zero-filled vector of the same size (the control)
// must raise it, so the probe is shown to see touched pages.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <gtest/gtest.h>

#include "wire.h"

namespace omni::transport_internal {
namespace {

constexpr size_t kBufferBytes = size_t{256} << 20;  // a large contribution, well above malloc's mmap threshold
constexpr size_t kSlackBytes = size_t{32} << 20;    // other allocations of the process meanwhile

// Resident bytes of this process (/proc/self/statm, field 2, in pages).
int64_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE)) : -1;
}

TEST(Payload, ResizeLeavesThePagesUntouched) {
  const int64_t before = resident_bytes();
  ASSERT_GE(before, 0) << "cannot read /proc/self/statm";
  Payload p;
  p.resize(kBufferBytes);
  const int64_t after = resident_bytes();
  EXPECT_LT(after - before, static_cast<int64_t>(kSlackBytes))
      << "resizing a Payload to " << kBufferBytes << " bytes made " << (after - before)
      << " bytes resident: its pages were written (zero-filled?) before any data arrived";
  // Writing the bytes, as a wire does on arrival, is what touches them.
  for (size_t i = 0; i < p.size(); i += 4096) p[i] = std::byte{1};
  EXPECT_GE(resident_bytes() - before, static_cast<int64_t>(kBufferBytes - kSlackBytes));
}

TEST(Payload, ControlAZeroFilledVectorTouchesItsPages) {
  const int64_t before = resident_bytes();
  ASSERT_GE(before, 0) << "cannot read /proc/self/statm";
  std::vector<std::byte> v;
  v.resize(kBufferBytes);
  EXPECT_GE(resident_bytes() - before, static_cast<int64_t>(kBufferBytes - kSlackBytes))
      << "the probe did not see a zero-filled buffer's pages; the test above would prove nothing";
  EXPECT_EQ(v[kBufferBytes / 2], std::byte{0});
}

}  // namespace
}  // namespace omni::transport_internal
