// Stress: several threads record random batches while another thread takes
// windows; the sum of all windows must equal exactly what was recorded (also
// padding, invalid ids and calls). Part of the ThreadSanitizer stage of
// scripts/test.sh (OMNI_TSAN_TESTS), so it is sized to run in seconds there.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "recorder_test_peer.h"
#include "omniplacement/capture/activation_recorder.h"

namespace omni {
namespace {

struct Totals {
  std::vector<int64_t> counts;
  std::vector<double> weights;
  int64_t padding = 0;
  int64_t invalid = 0;
  int64_t records = 0;
  int64_t rejected = 0;
};

void add_window(Totals& t, const CaptureWindow& w) {
  for (size_t i = 0; i < t.counts.size(); ++i) t.counts[i] += w.load.counts()[i];
  if (!t.weights.empty())
    for (size_t i = 0; i < t.weights.size(); ++i) t.weights[i] += w.gate_weights.values()[i];
  t.padding += w.num_padding;
  t.invalid += w.num_invalid;
  t.records += w.num_records;
  t.rejected += w.num_rejected_calls;
}

struct StressCase {
  const char* name;
  int32_t shards;    // fewer shards than threads exercises the overflow buffer
  int32_t threads;
  int32_t num_ids;   // 61: rows not a whole number of cache lines
  bool weighted;
  bool reserve_shards = false;  // every call takes the overflow path
};

class WindowStress : public ::testing::TestWithParam<StressCase> {};

TEST_P(WindowStress, SumOfWindowsEqualsWhatWasRecorded) {
  const StressCase& sc = GetParam();
  constexpr int32_t kLayers = 6;
  constexpr int32_t kTopK = 4;
  constexpr int kBatchesPerThread = 1000;
  RecorderConfig c;
  c.num_layers = kLayers;
  c.num_ids = sc.num_ids;
  c.num_shards = sc.shards;
  c.track_gate_weights = sc.weighted;
  c.history = 4;
  auto made = ActivationRecorder::create(c);
  ASSERT_TRUE(made.ok()) << made.status();
  ActivationRecorder& r = **made;
  const size_t elements = static_cast<size_t>(kLayers) * static_cast<size_t>(sc.num_ids);
  if (sc.reserve_shards) ActivationRecorderTestPeer::set_all_shards_busy(r, true);

  std::vector<Totals> expected(static_cast<size_t>(sc.threads));
  std::atomic<int> running{sc.threads};
  // Recorders keep going until the taker has closed kMinWindows windows, so
  // that takes overlap recording even when the scheduler runs threads late.
  constexpr int64_t kMinWindows = 20;
  std::atomic<int64_t> windows_taken{0};
  std::vector<std::thread> threads;
  for (int32_t t = 0; t < sc.threads; ++t) {
    threads.emplace_back([&, t] {
      Totals& mine = expected[static_cast<size_t>(t)];
      mine.counts.assign(elements, 0);
      std::mt19937_64 rng(1000 + static_cast<uint64_t>(t));
      std::uniform_int_distribution<int32_t> id(-2, sc.num_ids);  // -2 and num_ids are invalid
      std::vector<int32_t> ids;
      std::vector<float> weights;
      for (int b = 0; b < kBatchesPerThread || windows_taken.load() < kMinWindows; ++b) {
        // Layer -1 now and then: a rejected call.
        const LayerId l = std::uniform_int_distribution<LayerId>(-1, kLayers - 1)(rng);
        ids.resize(static_cast<size_t>(std::uniform_int_distribution<int>(0, 64)(rng)) * kTopK);
        for (int32_t& v : ids) v = id(rng);
        if (l < 0) {
          ++mine.rejected;
          mine.invalid += static_cast<int64_t>(ids.size());
          r.record(l, ids);
          continue;
        }
        for (int32_t v : ids) {
          if (v >= 0 && v < sc.num_ids) ++mine.counts[static_cast<size_t>(l * sc.num_ids + v)];
          else if (v == -1) ++mine.padding;
          else ++mine.invalid;
        }
        ++mine.records;
        if (sc.weighted) {
          // Multiples of 1/4: sums are exact in double whatever the order.
          weights.resize(ids.size());
          for (float& w : weights) w = static_cast<float>(rng() % 4) * 0.25f;
          if (mine.weights.empty()) mine.weights.assign(elements, 0.0);
          for (size_t i = 0; i < ids.size(); ++i)
            if (ids[i] >= 0 && ids[i] < sc.num_ids)
              mine.weights[static_cast<size_t>(l * sc.num_ids + ids[i])] += weights[i];
          r.record(l, ids, weights);
        } else {
          r.record(l, ids);
        }
      }
      running.fetch_sub(1);
    });
  }

  Totals got;
  got.counts.assign(elements, 0);
  if (sc.weighted) got.weights.assign(elements, 0.0);
  int64_t windows = 0;
  int64_t overflow = 0;
  while (running.load() > 0) {
    const CaptureWindow w = r.take_window();
    add_window(got, w);
    overflow += w.num_overflow_records;
    windows_taken.store(++windows);
  }
  for (auto& th : threads) th.join();
  const CaptureWindow last = r.take_window();  // what came after the last concurrent take
  add_window(got, last);
  overflow += last.num_overflow_records;

  Totals want;
  want.counts.assign(elements, 0);
  if (sc.weighted) want.weights.assign(elements, 0.0);
  for (const Totals& t : expected) {
    for (size_t i = 0; i < elements; ++i) want.counts[i] += t.counts[i];
    if (sc.weighted)
      for (size_t i = 0; i < elements; ++i) want.weights[i] += t.weights[i];
    want.padding += t.padding;
    want.invalid += t.invalid;
    want.records += t.records;
    want.rejected += t.rejected;
  }
  EXPECT_EQ(got.counts, want.counts);
  EXPECT_EQ(got.weights, want.weights);
  EXPECT_EQ(got.padding, want.padding);
  EXPECT_EQ(got.invalid, want.invalid);
  EXPECT_EQ(got.records, want.records);
  EXPECT_EQ(got.rejected, want.rejected);
  EXPECT_GE(windows, kMinWindows);
  // The ring holds the last `history` windows, and the EMA stays a valid matrix.
  EXPECT_EQ(r.recent_windows().size(), static_cast<size_t>(std::min<int64_t>(windows + 1, 4)));
  EXPECT_EQ(r.ema().num_experts(), sc.num_ids);
  if (sc.reserve_shards) {
    EXPECT_EQ(overflow, want.records + want.rejected);
  }
  RecordProperty("windows", static_cast<int>(windows));
  RecordProperty("overflow_records", static_cast<int>(overflow));
}

INSTANTIATE_TEST_SUITE_P(Concurrent, WindowStress,
                         ::testing::Values(StressCase{"FourThreadsEightShards", 8, 4, 64, false},
                                           StressCase{"SixThreadsOneShard", 1, 6, 61, false},
                                           StressCase{"ThreeThreadsTwoShardsWeighted", 2, 3, 61, true},
                                           StressCase{"FourThreadsOverflowOnlyWeighted", 2, 4, 61, true, true}),
                         [](const auto& info) { return std::string(info.param.name); });

// Co-activation under concurrency: with coactivation_every = 1 every token is
// sampled, so the pair counts are known exactly; take_coactivation() runs
// concurrently and the sum of its results must match.
TEST(CoactivationStress, ConcurrentTakesLoseNoPair) {
  RecorderConfig c;
  c.num_layers = 2;
  c.num_ids = 16;
  c.num_shards = 2;
  c.coactivation_every = 1;
  c.top_k = 2;
  auto made = ActivationRecorder::create(c);
  ASSERT_TRUE(made.ok()) << made.status();
  ActivationRecorder& r = **made;
  constexpr int kThreads = 3;
  constexpr int kBatches = 300;
  std::atomic<int> running{kThreads};
  std::atomic<int64_t> takes{0};
  std::atomic<int64_t> batches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      // Every token chooses experts 3 and 5 on layer 1: one (3, 5) pair per token.
      const std::vector<int32_t> ids = {3, 5, 5, 3, 3, 5, 5, 3};
      for (int b = 0; b < kBatches || takes.load() < 20; ++b) {
        r.record(1, ids);
        batches.fetch_add(1);
      }
      running.fetch_sub(1);
    });
  }
  int64_t pairs = 0, sampled = 0;
  while (running.load() > 0) {
    const CoactivationCounts co = r.take_coactivation();
    pairs += co.pair(1, 3, 5);
    sampled += co.sampled_tokens[1];
    takes.fetch_add(1);
  }
  for (auto& th : threads) th.join();
  const CoactivationCounts co = r.take_coactivation();
  pairs += co.pair(1, 3, 5);
  sampled += co.sampled_tokens[1];
  EXPECT_GE(batches.load(), int64_t{kThreads} * kBatches);
  EXPECT_EQ(pairs, batches.load() * 4);
  EXPECT_EQ(sampled, batches.load() * 4);
}

}  // namespace
}  // namespace omni
