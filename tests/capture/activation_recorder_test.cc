// ActivationRecorder: counting, padding, invalid ids, gate weights, windows,
// ring, EMA, co-activation, config validation, and a seeded property check
// against a reference count.
#include "omniplacement/capture/activation_recorder.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "recorder_test_peer.h"

namespace omni {
namespace {

std::unique_ptr<ActivationRecorder> make(RecorderConfig c) {
  auto r = ActivationRecorder::create(std::move(c));
  EXPECT_TRUE(r.ok()) << r.status();
  return std::move(r).value();
}

RecorderConfig small(int32_t layers = 3, int32_t ids = 8) {
  RecorderConfig c;
  c.num_layers = layers;
  c.num_ids = ids;
  c.num_shards = 2;
  return c;
}

TEST(ActivationRecorder, CountsEveryIdOfABatch) {
  auto r = make(small());
  const std::vector<int32_t> ids = {0, 3, 3, 7, 1, 3};  // 3 tokens x top-2
  r->record(1, ids);
  r->record(2, std::vector<int32_t>{5});
  const CaptureWindow w = r->take_window();
  EXPECT_EQ(w.load.counts_row(1)[3], 3);
  EXPECT_EQ(w.load.counts_row(1)[0], 1);
  EXPECT_EQ(w.load.counts_row(1)[7], 1);
  EXPECT_EQ(w.load.counts_row(1)[1], 1);
  EXPECT_EQ(w.load.counts_row(2)[5], 1);
  EXPECT_EQ(w.load.layer_total(0), 0);
  EXPECT_EQ(w.num_records, 2);
  EXPECT_EQ(w.num_invalid, 0);
  EXPECT_TRUE(w.check().ok());
  EXPECT_TRUE(w.load.is_counts());
}

TEST(ActivationRecorder, PaddingIsSkippedAndCounted) {
  auto r = make(small());
  r->record(0, std::vector<int32_t>{-1, 2, -1, -1});
  const CaptureWindow w = r->take_window();
  EXPECT_EQ(w.load.layer_total(0), 1);
  EXPECT_EQ(w.num_padding, 3);
  EXPECT_EQ(w.num_invalid, 0);
}

struct InvalidCase {
  std::string name;
  LayerId layer;
  std::vector<int32_t> ids;
  int64_t valid;
  int64_t invalid;
  int64_t rejected;
};

class InvalidIds : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidIds, AreCountedNeverWritten) {
  const InvalidCase& c = GetParam();
  auto r = make(small(3, 8));
  r->record(c.layer, c.ids);
  const CaptureWindow w = r->take_window();
  int64_t total = 0;
  for (int64_t v : w.load.counts()) total += v;
  EXPECT_EQ(total, c.valid);
  EXPECT_EQ(w.num_invalid, c.invalid);
  EXPECT_EQ(w.num_rejected_calls, c.rejected);
  if (c.invalid > 0) {
    const Status s = w.check();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("invalid expert ids"), std::string::npos) << s;
    EXPECT_NE(s.message().find("id in [0, 8)"), std::string::npos) << s;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, InvalidIds,
    ::testing::Values(InvalidCase{"IdEqualToWidth", 0, {8, 1}, 1, 1, 0},
                      InvalidCase{"LargeId", 2, {2000000000, 3, 4}, 2, 1, 0},
                      InvalidCase{"NegativeOtherThanPadding", 1, {-2, -1, 0}, 1, 1, 0},
                      InvalidCase{"MinInt", 1, {INT32_MIN}, 0, 1, 0},
                      InvalidCase{"LayerPastEnd", 3, {0, 1, 2}, 0, 3, 1},
                      InvalidCase{"NegativeLayer", -1, {0, 1}, 0, 2, 1},
                      InvalidCase{"EmptyBatch", 0, {}, 0, 0, 0}),
    [](const auto& info) { return info.param.name; });

TEST(ActivationRecorder, InvalidExampleNamesLayerAndId) {
  auto r = make(small(3, 8));
  r->record(2, std::vector<int32_t>{1, 99});
  const CaptureWindow w = r->take_window();
  EXPECT_EQ(w.invalid_layer, 2);
  EXPECT_EQ(w.invalid_id, 99);
  EXPECT_NE(w.check().message().find("layer 2 id 99"), std::string::npos) << w.check();
}

TEST(ActivationRecorder, UnevenLayerWidthsFromIdsPerLayer) {
  RecorderConfig c = small(2, 10);
  c.id_space = IdSpace::kGlobalSlot;
  c.ids_per_layer = {10, 6};
  auto r = make(c);
  r->record(0, std::vector<int32_t>{9, 5});
  r->record(1, std::vector<int32_t>{9, 5});  // 9 is past layer 1's 6 slots
  const CaptureWindow w = r->take_window();
  EXPECT_EQ(w.load.counts_row(0)[9], 1);
  EXPECT_EQ(w.load.counts_row(1)[5], 1);
  EXPECT_EQ(w.load.counts_row(1)[9], 0);
  EXPECT_EQ(w.num_invalid, 1);
}

TEST(ActivationRecorder, GateWeightsAreSummedWhenTracked) {
  RecorderConfig c = small(2, 4);
  c.track_gate_weights = true;
  auto r = make(c);
  const std::vector<int32_t> ids = {0, 1, 1, 3, -1, 9};
  const std::vector<float> w = {0.5f, 0.25f, 0.75f, 1.0f, 0.9f, 0.9f};
  r->record(1, ids, w);
  const CaptureWindow win = r->take_window();
  ASSERT_EQ(win.gate_weights.num_layers(), 2);
  EXPECT_DOUBLE_EQ(win.gate_weights.at(1, 0), 0.5);
  EXPECT_DOUBLE_EQ(win.gate_weights.at(1, 1), 1.0);
  EXPECT_DOUBLE_EQ(win.gate_weights.at(1, 3), 1.0);
  EXPECT_DOUBLE_EQ(win.gate_weights.at(1, 2), 0.0);
  EXPECT_EQ(win.load.counts_row(1)[1], 2);
  EXPECT_EQ(win.num_padding, 1);
  EXPECT_EQ(win.num_invalid, 1);
}

TEST(ActivationRecorder, NonFiniteOrNegativeGateWeightsCountAsZero) {
  RecorderConfig c = small(1, 4);
  c.track_gate_weights = true;
  auto r = make(c);
  const std::vector<int32_t> ids = {0, 0, 0, 0};
  const std::vector<float> w = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                -1.0f, 2.0f};
  r->record(0, ids, w);
  const CaptureWindow win = r->take_window();
  EXPECT_DOUBLE_EQ(win.gate_weights.at(0, 0), 2.0);
  EXPECT_EQ(win.load.counts_row(0)[0], 4);
}

TEST(ActivationRecorder, WeightsOfWrongLengthRejectTheCall) {
  RecorderConfig c = small(1, 4);
  c.track_gate_weights = true;
  auto r = make(c);
  r->record(0, std::vector<int32_t>{0, 1, 2}, std::vector<float>{1.0f});
  const CaptureWindow win = r->take_window();
  EXPECT_EQ(win.load.layer_total(0), 0);
  EXPECT_EQ(win.num_rejected_calls, 1);
  EXPECT_EQ(win.num_invalid, 3);
}

TEST(ActivationRecorder, WeightedOverloadCountsWithoutTracking) {
  auto r = make(small(1, 4));
  r->record(0, std::vector<int32_t>{2, 2}, std::vector<float>{0.5f, 0.5f});
  const CaptureWindow win = r->take_window();
  EXPECT_EQ(win.load.counts_row(0)[2], 2);
  EXPECT_EQ(win.gate_weights.num_layers(), 0);
}

TEST(ActivationRecorder, TakeWindowStartsANewWindow) {
  auto r = make(small());
  r->note_step(5);
  r->record(0, std::vector<int32_t>{1});
  const CaptureWindow a = r->take_window();
  r->record(0, std::vector<int32_t>{2, 2});
  r->note_step(9);
  const CaptureWindow b = r->take_window();
  const CaptureWindow c = r->take_window();
  EXPECT_EQ(a.index, 0u);
  EXPECT_EQ(b.index, 1u);
  EXPECT_EQ(c.index, 2u);
  EXPECT_EQ(a.load.counts_row(0)[1], 1);
  EXPECT_EQ(a.load.counts_row(0)[2], 0);
  EXPECT_EQ(b.load.counts_row(0)[1], 0);
  EXPECT_EQ(b.load.counts_row(0)[2], 2);
  EXPECT_EQ(c.load.layer_total(0), 0);
  EXPECT_EQ(a.step_begin, 0);
  EXPECT_EQ(a.step_end, 5);
  EXPECT_EQ(b.step_begin, 5);
  EXPECT_EQ(b.step_end, 9);
  EXPECT_EQ(c.step_begin, 9);
}

TEST(ActivationRecorder, RingKeepsTheLastHistoryWindowsOldestFirst) {
  RecorderConfig c = small(1, 4);
  c.history = 3;
  auto r = make(c);
  for (int i = 0; i < 5; ++i) {
    r->record(0, std::vector<int32_t>(static_cast<size_t>(i + 1), 0));
    (void)r->take_window();
  }
  const std::vector<CaptureWindow> ring = r->recent_windows();
  ASSERT_EQ(ring.size(), 3u);
  EXPECT_EQ(ring[0].index, 2u);
  EXPECT_EQ(ring[1].index, 3u);
  EXPECT_EQ(ring[2].index, 4u);
  EXPECT_EQ(ring[2].load.counts_row(0)[0], 5);
  EXPECT_EQ(r->recent_sum().counts_row(0)[0], 3 + 4 + 5);
}

TEST(ActivationRecorder, EmaFollowsTheStatedRecurrence) {
  RecorderConfig c = small(1, 2);
  c.ema_decay = 0.75;
  auto r = make(c);
  EXPECT_EQ(r->ema().at(0, 0), 0.0);  // before the first window
  const std::vector<int64_t> window_counts = {8, 0, 4};
  double expected = 0;
  for (size_t i = 0; i < window_counts.size(); ++i) {
    r->record(0, std::vector<int32_t>(static_cast<size_t>(window_counts[i]), 0));
    (void)r->take_window();
    expected = i == 0 ? 8.0 : 0.75 * expected + 0.25 * static_cast<double>(window_counts[i]);
    EXPECT_DOUBLE_EQ(r->ema().at(0, 0), expected) << "after window " << i;
  }
  EXPECT_DOUBLE_EQ(expected, 0.75 * (0.75 * 8.0) + 0.25 * 4.0);
  EXPECT_FALSE(r->ema().is_counts());
}

TEST(ActivationRecorder, EmaWithDecayZeroIsTheLastWindow) {
  RecorderConfig c = small(1, 2);
  c.ema_decay = 0.0;
  auto r = make(c);
  r->record(0, std::vector<int32_t>{0, 0, 1});
  (void)r->take_window();
  r->record(0, std::vector<int32_t>{1});
  (void)r->take_window();
  EXPECT_DOUBLE_EQ(r->ema().at(0, 0), 0.0);
  EXPECT_DOUBLE_EQ(r->ema().at(0, 1), 1.0);
}

TEST(ActivationRecorder, OverflowPathCountsExactlyWhenEveryShardIsBusy) {
  RecorderConfig c = small(2, 5);
  c.track_gate_weights = true;
  auto r = make(c);
  r->record(0, std::vector<int32_t>{1});
  ActivationRecorderTestPeer::set_all_shards_busy(*r, true);
  r->record(0, std::vector<int32_t>{1, 4, -1, 7});
  r->record(1, std::vector<int32_t>{2}, std::vector<float>{0.5f});
  r->record(9, std::vector<int32_t>{2});
  ActivationRecorderTestPeer::set_all_shards_busy(*r, false);
  const CaptureWindow w = r->take_window();
  EXPECT_EQ(w.num_overflow_records, 3);
  EXPECT_EQ(w.num_records, 3);  // one on a shard, two on the overflow buffer (one rejected)
  EXPECT_EQ(w.load.counts_row(0)[1], 2);
  EXPECT_EQ(w.load.counts_row(0)[4], 1);
  EXPECT_EQ(w.load.counts_row(1)[2], 1);
  EXPECT_DOUBLE_EQ(w.gate_weights.at(1, 2), 0.5);
  EXPECT_EQ(w.num_padding, 1);
  EXPECT_EQ(w.num_invalid, 2);  // id 7, and the rejected call on layer 9
  EXPECT_EQ(w.num_rejected_calls, 1);
  // The overflow buffer was cleared with the window.
  const CaptureWindow next = r->take_window();
  EXPECT_EQ(next.load.layer_total(0), 0);
  EXPECT_EQ(next.num_overflow_records, 0);
}

struct BadConfig {
  std::string name;
  RecorderConfig config;
  std::string message;
};

RecorderConfig with(void (*edit)(RecorderConfig&)) {
  RecorderConfig c = small(4, 16);
  edit(c);
  return c;
}

class BadConfigs : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigs, AreRejectedWithAMessage) {
  auto r = ActivationRecorder::create(GetParam().config);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(GetParam().message), std::string::npos) << r.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadConfigs,
    ::testing::Values(
        BadConfig{"ZeroLayers", with([](RecorderConfig& c) { c.num_layers = 0; }), "layers"},
        BadConfig{"ZeroIds", with([](RecorderConfig& c) { c.num_ids = 0; }), "experts"},
        BadConfig{"TooManyExperts", with([](RecorderConfig& c) { c.num_ids = kMaxExperts + 1; }), "experts"},
        BadConfig{"IdsPerLayerLength", with([](RecorderConfig& c) { c.ids_per_layer = {16, 16}; }),
                  "expected num_layers = 4"},
        BadConfig{"IdsPerLayerTooWide", with([](RecorderConfig& c) { c.ids_per_layer = {16, 17, 1, 1}; }),
                  "ids_per_layer[1] = 17"},
        BadConfig{"NegativeShards", with([](RecorderConfig& c) { c.num_shards = -1; }), "num_shards = -1"},
        BadConfig{"TooManyShards", with([](RecorderConfig& c) { c.num_shards = 100000; }), "num_shards"},
        BadConfig{"BuffersTooLarge",
                  with([](RecorderConfig& c) {
                    c.id_space = IdSpace::kGlobalSlot;
                    c.num_layers = 64;
                    c.num_ids = 1 << 20;
                    c.num_shards = 8;
                  }),
                  "use fewer shards"},
        BadConfig{"ZeroHistory", with([](RecorderConfig& c) { c.history = 0; }), "history = 0"},
        BadConfig{"DecayOne", with([](RecorderConfig& c) { c.ema_decay = 1.0; }), "ema_decay"},
        BadConfig{"DecayNaN", with([](RecorderConfig& c) { c.ema_decay = std::nan(""); }), "ema_decay"},
        BadConfig{"NegativeTopK", with([](RecorderConfig& c) { c.top_k = -1; }), "top_k = -1"},
        BadConfig{"CoactivationWithoutTopK", with([](RecorderConfig& c) { c.coactivation_every = 4; }),
                  "needs top_k"},
        BadConfig{"CoactivationTooLarge",
                  with([](RecorderConfig& c) {
                    c.num_layers = 58;
                    c.num_ids = 2048;
                    c.coactivation_every = 1;
                    c.top_k = 8;
                  }),
                  "pair counters"},
        BadConfig{"NegativeCoactivation", with([](RecorderConfig& c) { c.coactivation_every = -3; }),
                  "coactivation_every = -3"}),
    [](const auto& info) { return info.param.name; });

TEST(Coactivation, EveryTokenCountsEachPairOfDistinctValidIds) {
  RecorderConfig c = small(2, 6);
  c.coactivation_every = 1;
  c.top_k = 3;
  auto r = make(c);
  // Tokens: {0,1,2}, {2,1,-1}, {4,4,5}, {0,9,1} on layer 1.
  r->record(1, std::vector<int32_t>{0, 1, 2, 2, 1, -1, 4, 4, 5, 0, 9, 1});
  const CoactivationCounts co = r->take_coactivation();
  ASSERT_EQ(co.num_layers, 2);
  EXPECT_EQ(co.sampled_tokens[1], 4);
  EXPECT_EQ(co.sampled_tokens[0], 0);
  EXPECT_EQ(co.pair(1, 0, 1), 2);
  EXPECT_EQ(co.pair(1, 1, 0), 2);
  EXPECT_EQ(co.pair(1, 1, 2), 2);
  EXPECT_EQ(co.pair(1, 0, 2), 1);
  EXPECT_EQ(co.pair(1, 4, 5), 2);  // the two positions holding 4 each pair with 5
  EXPECT_EQ(co.pair(1, 4, 4), 0);
  EXPECT_EQ(co.pair(0, 0, 1), 0);
  int64_t total = 0;
  for (int64_t v : co.pairs) total += v;
  EXPECT_EQ(total, 3 + 1 + 2 + 1);
  // Taking resets.
  const CoactivationCounts again = r->take_coactivation();
  EXPECT_EQ(again.pair(1, 0, 1), 0);
  EXPECT_EQ(again.sampled_tokens[1], 0);
}

TEST(Coactivation, SamplesOneTokenInNAcrossCalls) {
  RecorderConfig c = small(1, 8);
  c.num_shards = 1;
  c.coactivation_every = 3;
  c.top_k = 2;
  auto r = make(c);
  // 7 tokens in two calls (4 + 3): tokens 0, 3 and 6 are sampled.
  r->record(0, std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7});
  r->record(0, std::vector<int32_t>{0, 2, 1, 3, 5, 7});
  const CoactivationCounts co = r->take_coactivation();
  EXPECT_EQ(co.sampled_tokens[0], 3);
  EXPECT_EQ(co.pair(0, 0, 1), 1);  // token 0
  EXPECT_EQ(co.pair(0, 6, 7), 1);  // token 3
  EXPECT_EQ(co.pair(0, 5, 7), 1);  // token 6
  EXPECT_EQ(co.pair(0, 2, 3), 0);  // token 1: not sampled
}

TEST(Coactivation, OffByDefault) {
  auto r = make(small());
  r->record(0, std::vector<int32_t>{0, 1});
  EXPECT_EQ(r->take_coactivation().num_layers, 0);
}

// Property: random batches (padding, invalid ids, random layers, random window
// cuts) against a reference count, for several shard counts and widths that are
// not a multiple of a cache line.
TEST(ActivationRecorderProperty, WindowsSumToAReferenceCount) {
  std::mt19937_64 rng(20261126);
  for (int32_t shards : {1, 3, 8}) {
    for (int32_t width : {1, 13, 64}) {
      RecorderConfig c;
      c.num_layers = 5;
      c.num_ids = width;
      c.num_shards = shards;
      auto r = make(c);
      std::vector<int64_t> expected(static_cast<size_t>(5 * width), 0);
      std::vector<int64_t> got(expected.size(), 0);
      int64_t invalid = 0, padding = 0, got_invalid = 0, got_padding = 0;
      std::uniform_int_distribution<int32_t> id(-3, width + 2);
      for (int batch = 0; batch < 200; ++batch) {
        const LayerId l = std::uniform_int_distribution<LayerId>(0, 4)(rng);
        std::vector<int32_t> ids(std::uniform_int_distribution<size_t>(0, 64)(rng));
        for (int32_t& v : ids) {
          v = id(rng);
          if (v >= 0 && v < width) ++expected[static_cast<size_t>(l * width + v)];
          else if (v == -1) ++padding;
          else ++invalid;
        }
        r->record(l, ids);
        if (rng() % 17 == 0 || batch == 199) {
          const CaptureWindow w = r->take_window();
          for (size_t i = 0; i < got.size(); ++i) got[i] += w.load.counts()[i];
          got_invalid += w.num_invalid;
          got_padding += w.num_padding;
        }
      }
      EXPECT_EQ(got, expected) << shards << " shards, width " << width;
      EXPECT_EQ(got_invalid, invalid);
      EXPECT_EQ(got_padding, padding);
    }
  }
}

}  // namespace
}  // namespace omni
