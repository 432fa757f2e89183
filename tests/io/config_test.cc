#include "omniplacement/io/config.h"

#include <gtest/gtest.h>

#include "io_test_util.h"

namespace omni {
namespace {

TEST(ConfigTest, ReadsOmniInferAndOwnKeys) {
  auto c = parse_config(
      "# omni-infer keys\n"
      "pattern_path: patterns/p.npy\n"
      "max_moe_layer_num: 58\n"
      "enable_dynamic: true\n"
      "max_redundant_per_expert: 4\n"
      "max_redundant_per_rank: 1\n"
      "enable_dump: True\n"
      "dump_dir: /tmp/dumps\n"
      "planner: \"omni(max_moves_per_rank=4)\"\n"
      "replan_interval_steps: 3000\n"
      "window_steps: 500\n"
      "ema_decay: 0.9\n"
      "ranks_per_host: 8\n"
      "min_gain: 0.05\n"
      "max_moves_per_rank: 4\n"
      "layers_per_commit: 2\n"
      "staging_bytes_per_rank: 1073741824\n"
      "heartbeat_timeout_ms: 2000\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->pattern_path, "patterns/p.npy");
  EXPECT_EQ(c->max_moe_layer_num, 58);
  EXPECT_TRUE(c->enable_dynamic);
  EXPECT_EQ(c->max_redundant_per_expert, 4);
  EXPECT_EQ(c->max_redundant_per_rank, 1);
  EXPECT_TRUE(c->enable_dump);
  EXPECT_EQ(c->dump_dir, "/tmp/dumps");
  EXPECT_EQ(c->planner, "omni(max_moves_per_rank=4)");
  EXPECT_EQ(c->replan_interval_steps, 3000);
  EXPECT_EQ(c->window_steps, 500);
  EXPECT_EQ(c->ema_decay, 0.9);
  EXPECT_EQ(c->ranks_per_host, 8);
  EXPECT_EQ(c->min_gain, 0.05);
  EXPECT_EQ(c->max_moves_per_rank, 4);
  EXPECT_EQ(c->layers_per_commit, 2);
  EXPECT_EQ(c->staging_bytes_per_rank, int64_t{1} << 30);
  EXPECT_EQ(c->heartbeat_timeout_ms, 2000);
  EXPECT_TRUE(c->warnings.empty());
}

TEST(ConfigTest, EmptyFileGivesDefaults) {
  auto c = parse_config("");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, Config{});
  auto d = parse_config("# only a comment\n");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, Config{});
}

TEST(ConfigTest, EncodeParsesBackToTheSameConfig) {
  Config c;
  c.pattern_path = "a \"quoted\" path\\x.npy";
  c.planner = "eplb(hierarchical)";
  c.ema_decay = 1.0 / 3.0;
  c.shift_check_steps = 12;
  c.shift_threshold = 0.07;
  c.enable_dump = true;
  c.ranks_per_host = 4;
  auto back = parse_config(encode_config(c));
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << encode_config(c);
  EXPECT_EQ(*back, c);
  EXPECT_EQ(config_keys().size(), 19u);
  EXPECT_EQ(config_keys()[0], "pattern_path");
}

TEST(ConfigTest, UnknownKeysAreReportedWithFileAndLine) {
  const std::string text = "enable_dynamic: true\n\nenable_dynamc: false\n";
  auto c = parse_config(text, "conf.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("conf.yaml:3: unknown key 'enable_dynamc'"), std::string::npos) << c.status();
  EXPECT_NE(c.status().message().find("valid keys: pattern_path"), std::string::npos);
  ConfigOptions lenient;
  lenient.allow_unknown_keys = true;
  auto w = parse_config(text, "conf.yaml", lenient);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->enable_dynamic);
  ASSERT_EQ(w->warnings.size(), 1u);
  EXPECT_EQ(w->warnings[0].rfind("conf.yaml:3: unknown key", 0), 0u);
}

TEST(ConfigTest, BadValuesNameKeyAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a: 1\nmax_moe_layer_num: many\n", "c.yaml:2: 'max_moe_layer_num' must be an integer, got 'many'"},
      {"max_moe_layer_num: -1\n", "c.yaml:1: 'max_moe_layer_num' = -1 is out of range"},
      {"enable_dump: maybe\n", "'enable_dump' must be true or false"},
      {"ema_decay: 1.0\n", "'ema_decay' = 1 is out of range [0, 1)"},
      {"window_steps: 0\n", "out of range"},
      {"planner: [a, b]\n", "'planner' must be a single value"},
      {"- a\n- b\n", "must be a map"},
      {"window_steps: 1\nwindow_steps: 2\n", "c.yaml:2: key 'window_steps' appears twice"},
      {"a: [\n", "not valid YAML"},
      {std::string(40, '[') + "\n", "nested collections"},
      {std::string(40, '-') + " a\n", "nested sequences"},
  };
  for (const auto& [text, part] : cases) {
    ConfigOptions lenient;
    lenient.allow_unknown_keys = true;
    auto c = parse_config(text, "c.yaml", lenient);
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_NE(c.status().message().find(part), std::string::npos) << text << " -> " << c.status();
  }
}

TEST(ConfigTest, ReadConfigResolvesRelativePathsAgainstItsFolder) {
  testing::ScratchDir dir;
  testing::spit(dir.file("c.yaml"), "pattern_path: sub/p.npy\ndump_dir: /abs/dumps\n");
  auto c = read_config(dir.file("c.yaml"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->pattern_path, dir.file("sub/p.npy"));
  EXPECT_EQ(c->dump_dir, "/abs/dumps");
  EXPECT_EQ(read_config(dir.file("missing.yaml")).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace omni
