// Tests of the demo's failure injection parts: which crash requests are
// refused (and why), and the per-rank backup sources (host memory, a
// safetensors checkpoint per rank removed afterwards, none). The crash itself
// runs end to end in demo_test.cc.
#include "demo/demo_failure.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace omni {
namespace {

struct FailureCase {
  const char* name;
  std::vector<RankId> ranks;
  int64_t at_step;
  const char* backup;
  const char* error;  // nullptr: accepted; else a part of the message
};

class CheckFailureInjection : public ::testing::TestWithParam<FailureCase> {};

TEST_P(CheckFailureInjection, AcceptsOrNamesTheProblem) {
  const FailureCase& c = GetParam();
  const Status s = check_failure_injection(c.ranks, c.at_step, /*steps=*/100, c.backup, /*num_ranks=*/4);
  if (c.error == nullptr) {
    EXPECT_TRUE(s.ok()) << s;
  } else {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(c.error), std::string::npos) << s;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CheckFailureInjection,
    ::testing::Values(FailureCase{"OneRank", {2}, 50, "host", nullptr},
                      FailureCase{"ThreeOfFour", {0, 1, 3}, 0, "safetensors", nullptr},
                      FailureCase{"NoBackup", {1}, 99, "none", nullptr},
                      FailureCase{"StepPastTheEnd", {1}, 100, "host", "fail_at_step 100 outside [0, 100)"},
                      FailureCase{"NegativeStep", {1}, -1, "host", "fail_at_step -1"},
                      FailureCase{"RankOutOfRange", {4}, 10, "host", "in [0, 4)"},
                      FailureCase{"DuplicateRank", {1, 1}, 10, "host", "distinct"},
                      FailureCase{"NoSurvivor", {0, 1, 2, 3}, 10, "host", "leave a survivor"},
                      FailureCase{"NoRank", {}, 10, "host", "0 given"},
                      FailureCase{"UnknownBackup", {1}, 10, "disk", "backup 'disk'"}),
    [](const ::testing::TestParamInfo<FailureCase>& info) { return std::string(info.param.name); });

TEST(DemoBackups, EveryRankGetsASourceThatReadsTheModelsWeights) {
  const ToyMoE model = *ToyMoE::create({2, 5, 4, 3});
  std::vector<std::string> files;
  for (const char* kind : {"host", "safetensors"}) {
    auto b = DemoBackups::create(kind, model, 3);
    ASSERT_TRUE(b.ok()) << b.status();
    const auto sources = (*b)->sources();
    ASSERT_EQ(sources.size(), 3u);
    std::vector<std::byte> want(static_cast<size_t>(model.expert_bytes())), got(want.size());
    for (const BackupSource* s : sources) {
      ASSERT_NE(s, nullptr) << kind;
      for (LayerId l = 0; l < 2; ++l)
        for (ExpertId e = 0; e < 5; ++e) {
          ASSERT_TRUE(model.expert_weights(l, e, want).ok());
          ASSERT_TRUE(s->read_expert(l, e, got).ok()) << kind;
          EXPECT_EQ(got, want) << kind << " layer " << l << " expert " << e;
        }
    }
    if (std::string(kind) == "safetensors") {
      files = (*b)->files();
      ASSERT_EQ(files.size(), 3u);
      for (const auto& f : files) EXPECT_TRUE(std::filesystem::exists(f)) << f;
      EXPECT_NE(sources[1]->describe().find("safetensors:"), std::string::npos) << sources[1]->describe();
    } else {
      EXPECT_TRUE((*b)->files().empty());
      EXPECT_EQ(sources[0]->describe(), "host-memory");
    }
  }
  for (const auto& f : files) EXPECT_FALSE(std::filesystem::exists(f)) << f << " left behind";
  auto none = DemoBackups::create("none", model, 2);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ((*none)->sources(), (std::vector<const BackupSource*>{nullptr, nullptr}));
  EXPECT_FALSE(DemoBackups::create("disk", model, 2).ok());
}

}  // namespace
}  // namespace omni
