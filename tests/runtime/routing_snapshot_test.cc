// Tests of RoutingSnapshot building, layer sharing on rebuild, and lock-free publication.
#include "omniplacement/runtime/routing_snapshot.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "common/random_placement.h"

namespace omni {
namespace {

TEST(RoutingSnapshot, BuildsEveryLayerAndMatchesExpertMap) {
  std::mt19937_64 rng(1);
  auto p = std::make_shared<const Placement>(*Placement::create(testing::random_layout(rng, 3, 4, 10, 0, 2)));
  auto topo = *Topology::uniform(4, 2);
  auto s = RoutingSnapshot::build(p, topo, 1, 7);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->epoch(), 7u);
  EXPECT_EQ((*s)->checksum(), p->checksum());
  auto map = *ExpertMap::from_placement(*p);
  for (LayerId l = 0; l < 3; ++l) {
    EXPECT_EQ((*s)->layer(l).map.phy2log, map.layer(l).phy2log);
    EXPECT_EQ((*s)->layer(l).map.logcnt, map.layer(l).logcnt);
    for (ExpertId e = 0; e < 10; ++e)
      for (GlobalSlot g : (*s)->layer(l).dispatch.sequence(e)) EXPECT_EQ(p->expert_at(l, g), e);
  }
  EXPECT_FALSE(RoutingSnapshot::build(nullptr, topo, 0, 0).ok());
}

TEST(RoutingSnapshot, RebuildSharesUnchangedLayers) {
  std::mt19937_64 rng(2);
  auto layout = testing::random_layout(rng, 3, 4, 10, 1, 1);
  auto p0 = std::make_shared<const Placement>(*Placement::create(layout));
  std::swap(layout.phy2log[1][0], layout.phy2log[1][1]);
  auto p1 = std::make_shared<const Placement>(*Placement::create(layout));
  auto topo = *Topology::uniform(4, 1);
  auto s0 = *RoutingSnapshot::build(p0, topo, 0, 0);
  const LayerId changed[] = {1};
  auto s1 = RoutingSnapshot::rebuild(*s0, p1, changed, topo, 0, 1);
  ASSERT_TRUE(s1.ok());
  EXPECT_EQ((*s1)->layer_ptr(0), s0->layer_ptr(0));
  EXPECT_EQ((*s1)->layer_ptr(2), s0->layer_ptr(2));
  EXPECT_NE((*s1)->layer_ptr(1), s0->layer_ptr(1));
  EXPECT_EQ((*s1)->layer(1).epoch, 1u);
  EXPECT_EQ((*s1)->layer(0).epoch, 0u);
  const LayerId bad[] = {3};
  EXPECT_EQ(RoutingSnapshot::rebuild(*s0, p1, bad, topo, 0, 1).status().code(), StatusCode::kOutOfRange);
}

TEST(SnapshotCell, ReadersSeeWholeSnapshotsWhilePublisherSwaps) {
  auto topo = *Topology::uniform(2, 1);
  std::vector<std::shared_ptr<const RoutingSnapshot>> snaps;
  for (int i = 0; i < 4; ++i) {
    auto p = std::make_shared<const Placement>(*Placement::contiguous(2, 2, 4 + i * 2, 2 + i));
    snaps.push_back(*RoutingSnapshot::build(p, topo, 0, static_cast<uint64_t>(i)));
  }
  SnapshotCell cell(snaps[0]);
  std::atomic<bool> done{false};
  std::atomic<int64_t> bad{0}, reads{0};
  std::thread reader([&] {
    while (!done.load()) {
      auto s = cell.load();
      // A snapshot is self-consistent: its epoch names the placement it holds.
      if (s->placement().num_experts() != 4 + static_cast<int32_t>(s->epoch()) * 2) ++bad;
      ++reads;
    }
  });
  // Publish until the reader has overlapped with many stores (bounded by time).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (int k = 0; k < 20000 || (reads.load() < 1000 && std::chrono::steady_clock::now() < until); ++k)
    cell.store(snaps[static_cast<size_t>(k % 4)]);
  done = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 0);
}

}  // namespace
}  // namespace omni
