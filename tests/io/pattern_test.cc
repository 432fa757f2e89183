#include "omniplacement/io/pattern.h"

#include <gtest/gtest.h>

#include <random>

#include "common/random_placement.h"
#include "io_test_util.h"
#include "omniplacement/core/metrics.h"

namespace omni {
namespace {

using testing::data_path;
using testing::slurp;

struct ShippedPattern {
  const char* file;
  PatternFormat format;
  int32_t ranks, layers, experts;
  int32_t min_spr, max_spr;  // slots per rank over layers
};

const ShippedPattern kShipped[] = {
    {"DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy", PatternFormat::kNpy, 32, 58, 256, 8, 9},
    {"placement_pattern_20250626_221356_58_rearrange_layers_58_layers_16_ranks_prefill_step0to100000.npy",
     PatternFormat::kNpy, 16, 58, 256, 16, 16},
    {"DSV3_baseline_8_devices_58_MoE_Layers.npy", PatternFormat::kNpy, 8, 58, 256, 32, 32},
    {"placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.txt", PatternFormat::kText, 4, 58, 64, 17, 17},
    {"placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.bin", PatternFormat::kBinary, 4, 58, 64, 17, 17},
    {"placement_pattern_test_for_optimizer.txt", PatternFormat::kText, 4, 20, 8, 3, 3},
};

TEST(PatternTest, EveryShippedSampleLoadsValidatesAndRoundTripsByteForByte) {
  for (const auto& s : kShipped) {
    const std::string path = data_path(std::string("patterns/") + s.file);
    auto p = read_pattern(path);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->num_ranks(), s.ranks) << s.file;
    EXPECT_EQ(p->num_layers(), s.layers) << s.file;
    EXPECT_EQ(p->num_experts(), s.experts) << s.file;
    int32_t lo = 1 << 30, hi = 0;
    for (LayerId l = 0; l < p->num_layers(); ++l) {
      lo = std::min(lo, p->slots_per_rank(l));
      hi = std::max(hi, p->slots_per_rank(l));
    }
    EXPECT_EQ(lo, s.min_spr) << s.file;
    EXPECT_EQ(hi, s.max_spr) << s.file;
    ValidationRules strict;
    strict.forbid_same_rank_duplicates = true;
    EXPECT_TRUE(p->validate(strict).empty()) << s.file;
    // Placement -> tensor -> bytes gives back the file exactly.
    auto original = read_pattern_tensor(path);
    ASSERT_TRUE(original.ok());
    auto t = pattern_from_placement(*p, original->npy_dtype);
    ASSERT_TRUE(t.ok()) << t.status();
    t->text_crlf = original->text_crlf;
    EXPECT_EQ(*t, *original) << s.file;
    auto bytes = encode_pattern(*t, s.format);
    ASSERT_TRUE(bytes.ok());
    EXPECT_TRUE(*bytes == slurp(path)) << s.file << " is not reproduced byte for byte";
  }
}

TEST(PatternTest, GsmDecodePatternIsLayerwiseUneven) {
  auto p = read_pattern(data_path("patterns/" + std::string(kShipped[0].file)));
  ASSERT_TRUE(p.ok());
  int with_288 = 0, with_256 = 0;
  for (LayerId l = 0; l < p->num_layers(); ++l) {
    const int32_t n = p->num_replicas(l);
    with_288 += n == 288;
    with_256 += n == 256;
    EXPECT_EQ(p->slots_per_rank(l), n == 288 ? 9 : 8) << "layer " << l;
  }
  EXPECT_EQ(with_288, 10);
  EXPECT_EQ(with_256, 48);
}

TEST(PatternTest, TextAndBinaryCopiesHoldTheSamePlacement) {
  auto t = read_pattern(data_path("patterns/placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.txt"));
  auto b = read_pattern(data_path("patterns/placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.bin"));
  ASSERT_TRUE(t.ok() && b.ok());
  EXPECT_TRUE(*t == *b);
  EXPECT_EQ(t->num_replicas(0), 68);
}

TEST(PatternTest, BaselineIsContiguous) {
  auto p = read_pattern(data_path("patterns/DSV3_baseline_8_devices_58_MoE_Layers.npy"));
  ASSERT_TRUE(p.ok());
  auto c = Placement::contiguous(58, 8, 256, 32);
  EXPECT_TRUE(*p == *c);
}

TEST(PatternTest, RandomCanonicalPlacementsRoundTripThroughEveryContainer) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 30; ++trial) {
    const int32_t R = 1 + static_cast<int32_t>(rng() % 8);
    const int32_t E = R + static_cast<int32_t>(rng() % 20);
    const int32_t L = 1 + static_cast<int32_t>(rng() % 5);
    auto layout = testing::random_layout(rng, L, R, E, 0, 3, /*no_dups=*/true);
    auto p = Placement::create(layout);
    ASSERT_TRUE(p.ok()) << p.status();
    auto t = pattern_from_placement(*p);
    ASSERT_TRUE(t.ok());
    // The canonical form: experts ascending on each rank, empties last, fewest slots.
    auto canonical = placement_from_pattern(*t);
    ASSERT_TRUE(canonical.ok()) << canonical.status();
    for (LayerId l = 0; l < L; ++l) {
      for (ExpertId e = 0; e < E; ++e) EXPECT_EQ(canonical->replica_count(l, e), p->replica_count(l, e));
    }
    for (PatternFormat f : {PatternFormat::kNpy, PatternFormat::kText, PatternFormat::kBinary}) {
      auto bytes = encode_pattern(*t, f);
      ASSERT_TRUE(bytes.ok());
      auto back = parse_pattern(*bytes, f);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(*back, *t);
      auto p2 = placement_from_pattern(*back);
      ASSERT_TRUE(p2.ok());
      EXPECT_TRUE(*p2 == *canonical);
    }
  }
}

TEST(PatternTest, SameRankDuplicateCannotBeExported) {
  PlacementLayout layout;
  layout.num_ranks = 2;
  layout.num_experts = 2;
  layout.slots_per_rank = {2};
  layout.phy2log = {{0, 0, 1, -1}};
  auto p = Placement::create(layout);
  ASSERT_TRUE(p.ok());
  auto t = pattern_from_placement(*p);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("layer 0, rank 0, slot 1: expert 0 is held twice"), std::string::npos)
      << t.status();
}

struct BadPattern {
  const char* name;
  PatternFormat format;
  std::string bytes;
  const char* message_part;
};

std::string bin(std::initializer_list<int32_t> v) {
  std::string s;
  for (int32_t x : v)
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((static_cast<uint32_t>(x) >> (8 * i)) & 0xff));
  return s;
}

TEST(PatternTest, MalformedFilesAreRefusedWithPositions) {
  const std::vector<BadPattern> cases = {
      {"text_value_2", PatternFormat::kText, "1 1 2\n1 2\n", "pattern value '2' at [rank 0, layer 0, expert 1]"},
      {"text_truncated", PatternFormat::kText, "2 1 2\n1 0 0\n", "header says 4 values, the file has 3"},
      {"text_extra", PatternFormat::kText, "1 1 2\n1 1 1\n", "unexpected text after the 2 pattern values"},
      {"text_bad_header", PatternFormat::kText, "R L E\n", "number of ranks is 'R'"},
      {"text_huge_shape", PatternFormat::kText, "100000 1 1\n", "out of range"},
      {"text_expert_missing", PatternFormat::kText, "2 1 3\n1 0 0 1 0 0\n", "expert 1"},
      {"text_empty_layer", PatternFormat::kText, "1 2 1\n1 0\n", "layer 1 has no replica"},
      {"bin_short_header", PatternFormat::kBinary, std::string(8, '\0'), "the header alone is 12"},
      {"bin_truncated", PatternFormat::kBinary, bin({1, 1, 3, 1, 1}), "needs 24 bytes, the file has 20"},
      {"bin_negative", PatternFormat::kBinary, bin({-1, 1, 1, 1}), "out of range"},
      {"bin_value", PatternFormat::kBinary, bin({1, 1, 2, 1, 7}), "pattern value 7 at [rank 0, layer 0, expert 1]"},
      {"bin_huge", PatternFormat::kBinary, bin({16384, 16384, 65536}), "has more than 268435456 elements"},
      {"npy_2d", PatternFormat::kNpy, *encode_npy(NpyArray{NpyDtype::kInt32, {2, 2}, {1, 1, 1, 1}, {}}),
       "must have shape [ranks, layers, experts]"},
      {"npy_float", PatternFormat::kNpy, *encode_npy(NpyArray{NpyDtype::kFloat32, {1, 1, 1}, {}, {1.0}}),
       "must be int32 or int64"},
  };
  for (const auto& c : cases) {
    auto t = parse_pattern(c.bytes, c.format, "case");
    Status s = t.status();
    if (t.ok()) s = placement_from_pattern(*t, "case").status();
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_NE(s.message().find(c.message_part), std::string::npos) << c.name << ": " << s;
  }
}

TEST(PatternTest, FormatFollowsExtension) {
  EXPECT_EQ(*pattern_format_for_path("a/b.NPY"), PatternFormat::kNpy);
  EXPECT_EQ(*pattern_format_for_path("x.txt"), PatternFormat::kText);
  EXPECT_EQ(*pattern_format_for_path("x.bin"), PatternFormat::kBinary);
  EXPECT_FALSE(pattern_format_for_path("x.json").ok());
}

}  // namespace
}  // namespace omni
