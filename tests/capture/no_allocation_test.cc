// record() must not allocate: this binary replaces the global operator new
// (every form) with a counting version and checks that the count does not move
// across many record() calls on every path (shard, overflow, weighted,
// invalid, rejected, co-activation sampling, a fresh thread's first call).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "recorder_test_peer.h"
#include "omniplacement/capture/activation_recorder.h"

namespace {
std::atomic<int64_t> g_allocations{0};

void* counted_alloc(std::size_t size, std::size_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (size + align - 1) / align * align)
                                              : std::malloc(size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, 0); }
void* operator new[](std::size_t n) { return counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n, 0); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n, 0); } catch (...) { return nullptr; }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace omni {
namespace {

TEST(NoAllocation, CountingAllocatorSeesAnAllocation) {
  // The counter works: a vector that allocates is seen.
  const int64_t before = g_allocations.load();
  auto* v = new std::vector<int>(100);
  EXPECT_GT(g_allocations.load(), before);
  delete v;
}

TEST(NoAllocation, RecordNeverAllocatesOnAnyPath) {
  RecorderConfig c;
  c.num_layers = 4;
  c.num_ids = 32;
  c.num_shards = 2;
  c.track_gate_weights = true;
  c.coactivation_every = 3;
  c.top_k = 4;
  auto made = ActivationRecorder::create(c);
  ASSERT_TRUE(made.ok()) << made.status();
  ActivationRecorder& r = **made;
  std::vector<int32_t> ids(256 * 4);
  std::vector<float> weights(ids.size(), 0.5f);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7) % 40) - 2;  // some -1, -2, >= 32
  const std::vector<float> short_weights(3, 1.0f);

  const int64_t before = g_allocations.load();
  for (int i = 0; i < 1000; ++i) {
    r.record(i % 4, ids);
    r.record(i % 4, ids, weights);
  }
  r.record(7, ids);                  // rejected: layer out of range
  r.record(0, ids, short_weights);   // rejected: weights of the wrong length
  ActivationRecorderTestPeer::set_all_shards_busy(r, true);
  for (int i = 0; i < 100; ++i) r.record(i % 4, ids, weights);  // overflow path
  ActivationRecorderTestPeer::set_all_shards_busy(r, false);
  const int64_t after_main = g_allocations.load();
  EXPECT_EQ(after_main, before) << "record() allocated on the calling thread";

  // A fresh thread's first call (thread hint assignment) does not allocate
  // either; the thread itself is created outside the counted region.
  std::atomic<int64_t> in_thread{-1};
  std::atomic<bool> go{false};
  std::thread t([&] {
    while (!go.load()) std::this_thread::yield();
    const int64_t b = g_allocations.load();
    r.record(1, ids);
    in_thread.store(g_allocations.load() - b);
  });
  go.store(true);
  t.join();
  EXPECT_EQ(in_thread.load(), 0);

  const CaptureWindow w = r.take_window();  // allowed to allocate
  EXPECT_EQ(w.num_records, 2001 + 100);
  EXPECT_GT(w.num_invalid, 0);
}

}  // namespace
}  // namespace omni
