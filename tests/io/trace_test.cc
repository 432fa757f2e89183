#include "omniplacement/io/trace.h"

#include <gtest/gtest.h>

#include "io_test_util.h"

namespace omni {
namespace {

using testing::data_path;

TEST(TraceTest, QwenIsATwentyIterationTimeSeriesOverFourDatasets) {
  auto t = Trace::read_csv(data_path("traces/qwen15moe_expert_freq_by_iteration.csv"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->layout(), TraceLayout::kPerIteration);
  EXPECT_EQ(t->num_layers(), 12);
  EXPECT_EQ(t->num_experts(), 60);
  EXPECT_EQ(t->windows().size(), 80u);
  // Top-4 routing of 24,576 tokens: every layer of every window sums to 98,304 (data/traces/README.md).
  for (const auto& w : t->windows()) {
    ASSERT_TRUE(w.load.is_counts());
    for (LayerId l = 0; l < 12; ++l) EXPECT_EQ(w.load.layer_total(l), 98304.0) << w.label() << " layer " << l;
  }
  auto first = t->select(*TraceSelector::parse("dataset=bookcorpus,iteration=0"));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->counts_row(0)[0], 555);  // the first value of the file
  EXPECT_EQ(first->counts_row(0)[3], 4864);
}

TEST(TraceTest, WindowsFollowTheDatasetListThenIterations) {
  auto t = Trace::read_csv(data_path("traces/qwen15moe_expert_freq_by_iteration.csv"));
  ASSERT_TRUE(t.ok());
  auto series = t->windows({"bookcorpus", "wikitext", "wmt19"});
  ASSERT_TRUE(series.ok()) << series.status();
  ASSERT_EQ(series->size(), 60u);
  for (size_t i = 0; i < 60; ++i) {
    EXPECT_EQ((*series)[i].group, (i < 20 ? "bookcorpus" : i < 40 ? "wikitext" : "wmt19"));
    EXPECT_EQ((*series)[i].iteration, static_cast<int32_t>(i % 20));
    TraceSelector sel;
    sel.dataset = (*series)[i].group;
    sel.iteration = (*series)[i].iteration;
    EXPECT_TRUE((*series)[i].load == *t->select(sel));
  }
  auto part = t->windows({"random"}, 5, 7);
  ASSERT_TRUE(part.ok());
  ASSERT_EQ(part->size(), 3u);
  EXPECT_EQ((*part)[0].label(), "random#5");
  EXPECT_EQ(t->windows({"c4"}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(t->windows({"wmt19"}, 0, 20).status().code(), StatusCode::kNotFound);
}

TEST(TraceTest, PerDomainTracesSelectByModelAndDomain) {
  auto o = Trace::read_csv(data_path("traces/olmoe_expert_counts.csv"));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->layout(), TraceLayout::kPerDomain);
  EXPECT_EQ(o->num_layers(), 3);
  EXPECT_EQ(o->num_experts(), 64);
  EXPECT_EQ(o->windows().size(), 6u);
  auto arxiv = o->select(*TraceSelector::parse("domain=arxiv"));
  ASSERT_TRUE(arxiv.ok());
  EXPECT_EQ(arxiv->layer_total(0), 1671168.0);
  EXPECT_EQ(arxiv->counts_row(0)[0], 204013);

  auto m = Trace::read_csv(data_path("traces/mixtral_expert_counts.csv"));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->num_experts(), 8);
  EXPECT_EQ(m->windows().size(), 5u);
  auto c = m->select(*TraceSelector::parse("model=mistral,domain=arxiv"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->counts_row(0)[0], 55713);
  auto bad = m->select(*TraceSelector::parse("domain=tulu"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("domains: arxiv, book, c4, github, wikipedia"), std::string::npos)
      << bad.status();
}

TEST(TraceTest, SelectorSyntax) {
  auto s = TraceSelector::parse(" dataset = wmt19 , iteration=12 ");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->dataset, "wmt19");
  EXPECT_EQ(s->iteration, 12);
  EXPECT_EQ(s->to_string(), "dataset=wmt19,iteration=12");
  EXPECT_TRUE(TraceSelector::parse("")->empty());
  EXPECT_FALSE(TraceSelector::parse("layer=3").ok());
  EXPECT_FALSE(TraceSelector::parse("iteration=-1").ok());
  EXPECT_FALSE(TraceSelector::parse("dataset").ok());
  EXPECT_FALSE(TraceSelector::parse("dataset=").ok());
}

TEST(TraceTest, MalformedTracesAreRefusedWithLines) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model,domain,layer_index,0,1\nm,d,0,1\n", "t.csv:2: 4 fields, the header has 5"},
      {"model,domain,layer_index,0,2\n", "expert column 1 is named '2'"},
      {"model,domain,layer_index,0,1\nm,d,0,1,2\nm,d,0,3,4\n", "has layer 0 twice"},
      {"model,domain,layer_index,0,1\nm,d,0,1,2\nm,e,1,3,4\n", "window m/d has no row for layer 1"},
      {"model,domain,layer_index,0,1\nm,d,x,1,2\n", "layer_index 'x'"},
      {"model,domain,layer_index,0,1\nm,d,0,1,-2\n", "window m/d"},
      {",dataset,iteration,layer_idx,0\n0,a,-1,0,5\n", "iteration '-1'"},
      {"model,domain,layer_index,0,1\n", "no rows"},
      {"a,b\n", "not a trace header"},
  };
  for (const auto& [text, part] : cases) {
    auto r = Trace::parse_csv(text, "t.csv");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find(part), std::string::npos) << text << " -> " << r.status();
  }
}

}  // namespace
}  // namespace omni
