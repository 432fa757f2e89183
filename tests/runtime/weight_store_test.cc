// Tests of HostWeightStore: slot I/O, staging limits, commit semantics, bad input.
#include "omniplacement/runtime/weight_store.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace omni {
namespace {

std::vector<std::byte> pattern(size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + static_cast<size_t>(seed) * 7) & 0xff);
  return v;
}

TEST(HostWeightStore, CreateRejectsBadSizes) {
  EXPECT_EQ(HostWeightStore::create({}, {}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HostWeightStore::create({10}, {1, 2}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HostWeightStore::create({0}, {1}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HostWeightStore::create({10}, {0}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HostWeightStore::create({10}, {1}, -1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HostWeightStore::create({int64_t{1} << 40}, {1 << 10}, 0).status().code(), StatusCode::kInvalidArgument);
}

TEST(HostWeightStore, SlotsAreIndependentAndUnevenLayersWork) {
  auto store = HostWeightStore::create({100, 37}, {3, 5}, 0);
  ASSERT_TRUE(store.ok());
  auto& s = **store;
  EXPECT_EQ(s.slot_bytes_total(), 100 * 3 + 37 * 5);
  for (SlotId k = 0; k < 5; ++k) ASSERT_TRUE(s.write_slot(1, k, 0, pattern(37, k)).ok());
  for (SlotId k = 0; k < 5; ++k) {
    std::vector<std::byte> out(37);
    ASSERT_TRUE(s.read_slot(1, k, 0, out).ok());
    EXPECT_EQ(out, pattern(37, k)) << "slot " << k;
    EXPECT_EQ(s.slot_view(1, k).bytes, 37);
  }
  std::vector<std::byte> part(10);
  ASSERT_TRUE(s.read_slot(1, 2, 27, part).ok());
  EXPECT_EQ(part[0], pattern(37, 2)[27]);
}

TEST(HostWeightStore, OutOfRangeAccessIsAnError) {
  auto store = HostWeightStore::create({16}, {2}, 64);
  ASSERT_TRUE(store.ok());
  auto& s = **store;
  std::vector<std::byte> b(16);
  EXPECT_EQ(s.read_slot(1, 0, 0, b).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.read_slot(0, 2, 0, b).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.read_slot(0, -1, 0, b).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.read_slot(0, 0, 1, b).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.write_slot(0, 0, -1, b).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.acquire_staging(0, 5).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.write_staging(12345, 0, b).code(), StatusCode::kNotFound);
  EXPECT_EQ(s.commit_staging(12345).code(), StatusCode::kNotFound);
  auto id = s.acquire_staging(0, 0);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(s.write_staging(*id, 8, b).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.stage_from_slot(*id, 9).code(), StatusCode::kOutOfRange);
}

TEST(HostWeightStore, StagingIsBoundedAndReleased) {
  auto store = HostWeightStore::create({100}, {4}, 250);
  ASSERT_TRUE(store.ok());
  auto& s = **store;
  auto a = s.acquire_staging(0, 0);
  auto b = s.acquire_staging(0, 1);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(s.staging_bytes_in_use(), 200);
  auto c = s.acquire_staging(0, 2);
  EXPECT_EQ(c.status().code(), StatusCode::kResourceExhausted);
  s.release_staging(*a);
  s.release_staging(*a);  // twice is harmless
  EXPECT_EQ(s.staging_bytes_in_use(), 100);
  EXPECT_TRUE(s.acquire_staging(0, 2).ok());
}

TEST(HostWeightStore, SlotChangesOnlyAtCommit) {
  auto store = HostWeightStore::create({64}, {3}, 1024);
  ASSERT_TRUE(store.ok());
  auto& s = **store;
  ASSERT_TRUE(s.write_slot(0, 0, 0, pattern(64, 1)).ok());
  ASSERT_TRUE(s.write_slot(0, 1, 0, pattern(64, 2)).ok());
  // Swap slots 0 and 1 through staging, plus a remote write into slot 2.
  auto to0 = s.acquire_staging(0, 0), to1 = s.acquire_staging(0, 1), to2 = s.acquire_staging(0, 2);
  ASSERT_TRUE(to0.ok() && to1.ok() && to2.ok());
  ASSERT_TRUE(s.stage_from_slot(*to0, 1).ok());
  ASSERT_TRUE(s.stage_from_slot(*to1, 0).ok());
  const auto remote = pattern(64, 9);
  ASSERT_TRUE(s.write_staging(*to2, 0, std::span(remote).first(32)).ok());
  ASSERT_TRUE(s.write_staging(*to2, 32, std::span(remote).subspan(32)).ok());
  std::vector<std::byte> out(64);
  ASSERT_TRUE(s.read_slot(0, 0, 0, out).ok());
  EXPECT_EQ(out, pattern(64, 1)) << "slot 0 changed before commit";
  for (auto id : {*to0, *to1, *to2}) ASSERT_TRUE(s.commit_staging(id).ok());
  ASSERT_TRUE(s.read_slot(0, 0, 0, out).ok());
  EXPECT_EQ(out, pattern(64, 2));
  ASSERT_TRUE(s.read_slot(0, 1, 0, out).ok());
  EXPECT_EQ(out, pattern(64, 1));
  ASSERT_TRUE(s.read_slot(0, 2, 0, out).ok());
  EXPECT_EQ(out, remote);
}

TEST(HostWeightStore, ConcurrentStagingFromTwoThreads) {
  auto store = HostWeightStore::create({256}, {64}, 256 * 64);
  ASSERT_TRUE(store.ok());
  auto& s = **store;
  auto worker = [&](int first) {
    for (int k = first; k < 64; k += 2) {
      auto id = s.acquire_staging(0, k);
      ASSERT_TRUE(id.ok());
      ASSERT_TRUE(s.write_staging(*id, 0, pattern(256, k)).ok());
      ASSERT_TRUE(s.commit_staging(*id).ok());
      s.release_staging(*id);
    }
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  EXPECT_EQ(s.staging_bytes_in_use(), 0);
  for (int k = 0; k < 64; ++k) {
    auto d = s.slot_data(0, k);
    EXPECT_EQ(std::vector<std::byte>(d.begin(), d.end()), pattern(256, k));
  }
}

}  // namespace
}  // namespace omni
