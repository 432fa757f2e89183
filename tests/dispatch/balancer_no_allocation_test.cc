// BatchBalancer's hot path must not allocate once warm (the planner scores
// thousands of placements per layer through one balancer): this binary
// replaces the global operator new (every form) with a counting version and
// checks that set_slots() on placements of one shape and balance() leave the
// count where it was, for whole tokens and for doubles.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "common/random_placement.h"
#include "omniplacement/dispatch/batch_balancer.h"

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

TEST(BalancerNoAllocation, CountingAllocatorSeesAnAllocation) {
  const int64_t before = g_allocations.load();
  auto* v = new std::vector<int>(100);
  EXPECT_GT(g_allocations.load(), before);
  delete v;
}

template <typename T>
void expect_no_allocation_once_warm() {
  std::mt19937_64 rng(5);
  const int32_t R = 16, E = 60;
  // Placements of one shape (several slot layouts, as a local search visits).
  std::vector<Placement> placements;
  for (int i = 0; i < 8; ++i)
    placements.push_back(*Placement::create(testing::random_layout(rng, 1, R, E, 2, 2, i % 2 == 0, 0.1)));
  std::vector<std::vector<T>> batches(8, std::vector<T>(static_cast<size_t>(E)));
  for (auto& b : batches)
    for (auto& t : b) t = static_cast<T>(rng() % 5000);
  auto balancer = *BatchBalancer<T>::create(R, E);
  // Warm: the first placement sizes the buffers.
  ASSERT_TRUE(balancer.set_slots(placements[0].phy2log(0), placements[0].slots_per_rank(0)).ok());
  ASSERT_TRUE(balancer.balance(batches[0]).ok());
  const int64_t before = g_allocations.load();
  for (int round = 0; round < 50; ++round) {
    const Placement& p = placements[static_cast<size_t>(round) % placements.size()];
    if (!balancer.set_slots(p.phy2log(0), p.slots_per_rank(0)).ok()) FAIL() << "set_slots, round " << round;
    for (const auto& b : batches)
      if (!balancer.balance(b).ok()) FAIL() << "balance, round " << round;
  }
  EXPECT_EQ(g_allocations.load(), before);
}

TEST(BalancerNoAllocation, WholeTokensAllocateNothingOnceWarm) { expect_no_allocation_once_warm<int64_t>(); }
TEST(BalancerNoAllocation, DoublesAllocateNothingOnceWarm) { expect_no_allocation_once_warm<double>(); }

}  // namespace
}  // namespace omni
