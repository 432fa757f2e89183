#include "omniplacement/io/load_file.h"

#include <gtest/gtest.h>

#include <random>

#include "common/random_placement.h"
#include "io_test_util.h"
#include "omniplacement/io/npy.h"
#include "omniplacement/io/trace.h"

namespace omni {
namespace {

using testing::data_path;

TEST(LoadFileTest, CsvAndNpyRoundTripCountsAndWeightsExactly) {
  testing::ScratchDir dir;
  std::mt19937_64 rng(3);
  LoadMatrix counts = testing::random_load(rng, 5, 17);
  LoadMatrix weights = counts;
  ASSERT_TRUE(weights.scale(1.0 / 3.0).ok());
  for (const LoadMatrix* m : {&counts, &weights}) {
    for (const char* name : {"l.csv", "l.npy"}) {
      ASSERT_TRUE(write_load_file(dir.file(name), *m).ok());
      auto back = read_load_file(dir.file(name));
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_TRUE(*back == *m) << name;
      EXPECT_EQ(back->kind(), m->kind());
    }
  }
}

TEST(LoadFileTest, WholeNumberWeightsStayWeights) {
  auto w = LoadMatrix::from_weights(1, 3, {0.0, 2.0, 1e15});
  ASSERT_TRUE(w.ok());
  const std::string text = encode_load_csv(*w);
  EXPECT_NE(text.find("0.0,2.0,1e+15"), std::string::npos) << text;
  auto back = parse_load_csv(text);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == *w);
  EXPECT_FALSE(back->is_counts());
}

TEST(LoadFileTest, CsvAcceptsHeaderCommentsAndBlankLines) {
  auto m = parse_load_csv("# a comment\nlayer_e0,e1,e2\n\n1, 2 ,3\r\n4,5,6\n");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->num_layers(), 2);
  EXPECT_EQ(m->counts_row(1)[2], 6);
  auto w = parse_load_csv("1.5,2\n3,4e2\n");
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->is_counts());
  EXPECT_EQ(w->at(1, 1), 400.0);
}

TEST(LoadFileTest, MalformedCsvNamesLineLayerAndExpert) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1,2,3\n4,5\n", "x.csv:2: layer 1 has 2 values, the first layer has 3"},
      {"1,2,3\n4,x,6\n", "x.csv:2: layer 1, expert 1: 'x' is not a finite number"},
      {"1,2,nan\n", "expert 2"},
      {"1,-2\n", "x.csv"},
      {"# nothing\n", "no load rows"},
      {"model,domain,layer_index,0\nm,d,0,1\n", "this CSV is a trace"},
  };
  for (const auto& [text, part] : cases) {
    auto r = parse_load_csv(text, "x.csv");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find(part), std::string::npos) << r.status();
  }
}

TEST(LoadFileTest, NpyMustBeTwoDimensional) {
  testing::ScratchDir dir;
  NpyArray a{NpyDtype::kInt64, {2, 2, 2}, std::vector<int64_t>(8, 1), {}};
  ASSERT_TRUE(write_npy(dir.file("x.npy"), a).ok());
  auto r = read_load_file(dir.file("x.npy"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("[layers, experts]"), std::string::npos);
  NpyArray neg{NpyDtype::kInt32, {1, 2}, {1, -1}, {}};
  ASSERT_TRUE(write_npy(dir.file("n.npy"), neg).ok());
  EXPECT_FALSE(read_load_file(dir.file("n.npy")).ok());
}

TEST(LoadFileTest, TraceCsvNeedsASelector) {
  const std::string qwen = data_path("traces/qwen15moe_expert_freq_by_iteration.csv");
  auto none = read_load_file(qwen);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("matches 80 windows"), std::string::npos) << none.status();
  auto one = read_load_file(qwen, "dataset=wikitext,iteration=3");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->num_layers(), 12);
  EXPECT_EQ(one->num_experts(), 60);
  EXPECT_FALSE(read_load_file(data_path("traces/olmoe_expert_counts.csv"), "dataset=x").ok());
}

}  // namespace
}  // namespace omni
