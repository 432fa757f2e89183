// Tests of trace_workload: the shipped Qwen1.5-MoE series in dataset order,
// one name per window, and errors that name the missing piece.
#include "demo/demo_workload.h"

#include <gtest/gtest.h>

namespace omni {
namespace {

const std::string kQwen = std::string(OMNI_SOURCE_DIR) + "/data/traces/qwen15moe_expert_freq_by_iteration.csv";

TEST(DemoWorkload, WindowsFollowTheDatasetsInOrder) {
  auto w = trace_workload(kQwen, {"wmt19", "bookcorpus"}, 10, 8, 4, 1, 0, 2);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->routing.num_windows(), 6);
  EXPECT_EQ(w->window_names, (std::vector<std::string>{"wmt19", "wmt19", "wmt19", "bookcorpus", "bookcorpus",
                                                       "bookcorpus"}));
  EXPECT_EQ(w->routing.num_layers(), 12);
  EXPECT_EQ(w->routing.num_experts(), 60);
  EXPECT_EQ(w->routing.ids_per_step(), 32);
  EXPECT_EQ(w->routing.window_of(25), 2);
}

TEST(DemoWorkload, ErrorsNameWhatIsMissing) {
  auto w = trace_workload(kQwen, {"nosuchset"}, 10, 8, 4, 1);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("nosuchset"), std::string::npos) << w.status();
  w = trace_workload("/nonexistent/trace.csv", {"wmt19"}, 10, 8, 4, 1);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("/nonexistent/trace.csv"), std::string::npos) << w.status();
  w = trace_workload(kQwen, {"wmt19"}, 0, 8, 4, 1);  // steps_per_window 0
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace omni
