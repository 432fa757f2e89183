#include "omniplacement/capture/window_history.h"

#include <gtest/gtest.h>

#include <vector>

namespace omni {
namespace {

LoadMatrix counts(std::vector<int64_t> c, int32_t layers = 1) {
  const auto experts = static_cast<int32_t>(c.size()) / layers;
  auto m = LoadMatrix::from_counts(layers, experts, std::move(c));
  OMNI_CHECK_MSG(m.ok(), m.status().to_string());
  return *std::move(m);
}

std::vector<double> values_of(const LoadMatrix& m) { return {m.values().begin(), m.values().end()}; }

WindowHistory history(int32_t max_windows, double decay) {
  WindowHistoryOptions o;
  o.max_windows = max_windows;
  o.ema_decay = decay;
  auto h = WindowHistory::create(o);
  OMNI_CHECK_MSG(h.ok(), h.status().to_string());
  return *std::move(h);
}

TEST(WindowHistoryTest, KeepsTheNewestWindowsOldestFirst) {
  WindowHistory h = history(2, 0.0);
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.ema().num_layers(), 0);
  for (int64_t i = 1; i <= 3; ++i) ASSERT_TRUE(h.add(counts({i, 10 * i})).ok());
  EXPECT_EQ(h.num_added(), 3);
  ASSERT_EQ(h.windows().size(), 2u);
  EXPECT_EQ(values_of(h.windows()[0]), (std::vector<double>{2, 20}));
  EXPECT_EQ(values_of(h.windows()[1]), (std::vector<double>{3, 30}));
  const std::vector<LoadMatrix> last = h.newest(1);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(values_of(last[0]), (std::vector<double>{3, 30}));
  EXPECT_EQ(h.newest(5).size(), 2u);
  EXPECT_TRUE(h.newest(0).empty());
}

TEST(WindowHistoryTest, ZeroDecayIsTheNewestWindowItself) {
  WindowHistory h = history(1, 0.0);
  ASSERT_TRUE(h.add(counts({4, 0, 7})).ok());
  ASSERT_TRUE(h.add(counts({1, 2, 3})).ok());
  EXPECT_TRUE(h.ema().is_counts());  // exact counts, not a weighted copy
  EXPECT_EQ(h.ema(), counts({1, 2, 3}));
}

TEST(WindowHistoryTest, EmaFollowsTheRecurrence) {
  // ema = 0.75 ema + 0.25 window; the first window initialises it.
  WindowHistory h = history(1, 0.75);
  ASSERT_TRUE(h.add(counts({8, 0})).ok());
  EXPECT_EQ(values_of(h.ema()), (std::vector<double>{8, 0}));
  ASSERT_TRUE(h.add(counts({0, 16})).ok());
  EXPECT_EQ(values_of(h.ema()), (std::vector<double>{6, 4}));
  ASSERT_TRUE(h.add(counts({2, 0})).ok());
  EXPECT_EQ(values_of(h.ema()), (std::vector<double>{5, 3}));
  EXPECT_FALSE(h.ema().is_counts());
  // Only the newest window is kept, whatever the decay remembers.
  EXPECT_EQ(h.windows().size(), 1u);
}

TEST(WindowHistoryTest, VolatilityHedgeAddsTheLastChange) {
  WindowHistory h = history(2, 0.0);
  ASSERT_TRUE(h.add(counts({10, 10, 4})).ok());
  auto one = h.with_volatility(0.5);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(values_of(*one), (std::vector<double>{10, 10, 4}));  // one window: nothing to compare
  ASSERT_TRUE(h.add(counts({14, 6, 4})).ok());
  auto two = h.with_volatility(0.5);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(values_of(*two), (std::vector<double>{16, 8, 4}));
  auto off = h.with_volatility(0.0);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(*off, h.ema());
  EXPECT_FALSE(h.with_volatility(-1).ok());
}

TEST(WindowHistoryTest, RefusesBadOptionsAndShapes) {
  WindowHistoryOptions o;
  o.max_windows = 0;
  auto bad = WindowHistory::create(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("max_windows = 0"), std::string::npos) << bad.status();
  o.max_windows = 1;
  o.ema_decay = 1.0;
  bad = WindowHistory::create(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("ema_decay = 1; valid: [0, 1)"), std::string::npos) << bad.status();

  WindowHistory h = history(3, 0.5);
  ASSERT_TRUE(h.add(counts({1, 2, 3, 4}, 2)).ok());
  const Status s = h.add(counts({1, 2, 3, 4}, 1));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("window 1 has shape [1, 4], the history holds [2, 2]"), std::string::npos) << s;
  EXPECT_EQ(h.num_added(), 1);
  EXPECT_EQ(h.windows().size(), 1u);
}

}  // namespace
}  // namespace omni
