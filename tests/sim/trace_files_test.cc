#include "omniplacement/sim/trace_files.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

namespace omni::sim {
namespace {

namespace fs = std::filesystem;

const std::string kQwen = std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv";

fs::path scratch_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("omni_sim_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

TEST(TraceFilesTest, QwenDatasetsInOrder) {
  auto w = read_trace_windows(kQwen, {.datasets = {"bookcorpus", "wikitext", "wmt19"}});
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->size(), 60u);
  EXPECT_EQ((*w)[0].num_layers(), 12);
  EXPECT_EQ((*w)[0].num_experts(), 60);
  // 98,304 assignments per layer per iteration (data/traces/README.md).
  EXPECT_EQ((*w)[0].layer_total(0), 98304);
  EXPECT_EQ((*w)[59].layer_total(11), 98304);
  auto all = read_trace_windows(kQwen);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 80u);  // 4 datasets x 20 iterations
  EXPECT_FALSE(read_trace_windows(kQwen, {.datasets = {"nosuchset"}}).ok());
}

TEST(TraceFilesTest, GeneratedDirectoryReadsBackAndIsReproducible) {
  WorkloadParams p;
  p.num_layers = 3;
  p.num_experts = 16;
  p.top_k = 2;
  p.tokens_per_step = 100;
  p.drift_rate = 0.05;
  p.seed = 11;
  const fs::path a = scratch_dir("a"), b = scratch_dir("b");
  auto wa = write_synthetic_trace(p, 4, 5, a.string());
  auto wb = write_synthetic_trace(p, 4, 5, b.string(), "csv");
  ASSERT_TRUE(wa.ok()) << wa.status();
  ASSERT_TRUE(wb.ok()) << wb.status();
  EXPECT_EQ(wa->size(), 4u);
  auto ra = read_trace_windows(a.string());
  auto rb = read_trace_windows(b.string());
  ASSERT_TRUE(ra.ok() && rb.ok());
  ASSERT_EQ(ra->size(), 4u);
  // The same seed gives the same windows, whatever the container.
  auto gen = SyntheticWorkload::create(p);
  LoadMatrix expect;
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(gen->next_window(5, &expect).ok());
    EXPECT_EQ((*ra)[i], expect) << "window " << i;
    EXPECT_EQ((*rb)[i], expect) << "window " << i;
  }
  // A directory that already holds windows is refused.
  EXPECT_EQ(write_synthetic_trace(p, 1, 1, a.string()).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(write_synthetic_trace(p, 1, 1, scratch_dir("c").string(), "parquet").ok());
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(TraceFilesTest, MissingAndEmptyInputsAreErrors) {
  EXPECT_FALSE(read_trace_windows("/nonexistent/trace.npy").ok());
  const fs::path empty = scratch_dir("empty");
  fs::create_directories(empty);
  EXPECT_EQ(read_trace_windows(empty.string()).status().code(), StatusCode::kNotFound);
  fs::remove_all(empty);
}

}  // namespace
}  // namespace omni::sim
