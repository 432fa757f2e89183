// The placements shipped in data/placements/ are exactly what Placement::contiguous
// gives for each trace's model, written by encode_placement_json. Run with
// OMNI_REGENERATE_DATA=1 to (re)write them.
#include <gtest/gtest.h>

#include <cstdlib>

#include "io_test_util.h"
#include "omniplacement/io/io.h"

namespace omni {
namespace {

struct Shipped {
  const char* file;
  const char* trace;
  const char* selector;  // any window: only the sizes matter
  int32_t ranks, slots_per_rank, ranks_per_host;
};

const Shipped kShipped[] = {
    {"qwen15moe_contiguous_12ranks_6slots.json", "qwen15moe_expert_freq_by_iteration.csv",
     "dataset=bookcorpus,iteration=0", 12, 6, 4},
    {"olmoe_contiguous_8ranks_8slots.json", "olmoe_expert_counts.csv", "domain=arxiv", 8, 8, 4},
    {"mixtral_contiguous_4ranks_2slots.json", "mixtral_expert_counts.csv", "domain=arxiv", 4, 2, 2},
};

TEST(ShippedPlacementsTest, AreContiguousPlacementsSizedForTheirTraces) {
  const bool regenerate = std::getenv("OMNI_REGENERATE_DATA") != nullptr;
  for (const auto& s : kShipped) {
    auto load = read_load_file(testing::data_path(std::string("traces/") + s.trace), s.selector);
    ASSERT_TRUE(load.ok()) << load.status();
    PlacementFile f;
    auto p = Placement::contiguous(load->num_layers(), s.ranks, load->num_experts(), s.slots_per_rank);
    ASSERT_TRUE(p.ok()) << p.status();
    f.placement = *p;
    f.topology = *Topology::uniform(s.ranks, s.ranks_per_host);
    const std::string path = testing::data_path(std::string("placements/") + s.file);
    if (regenerate) {
      ASSERT_TRUE(write_placement_file(path, f).ok());
    }
    EXPECT_EQ(testing::slurp(path), *encode_placement_json(f)) << path;
    auto back = read_placement_file(path);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(back->placement == f.placement);
  }
}

}  // namespace
}  // namespace omni
