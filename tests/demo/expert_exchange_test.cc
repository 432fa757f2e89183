// Tests of ExpertExchange (the demo's all-to-all): served from the right
// weights every output matches its reference; a slot holding another expert's
// weights makes exactly its outputs wrong; the items of a failed peer come
// back as lost instead of being counted.
#include "demo/expert_exchange.h"

#include <gtest/gtest.h>

#include <mutex>

#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

using namespace std::chrono_literals;

constexpr int32_t kRanks = 3, kExperts = 6, kSlots = 2, kTopK = 2, kTokens = 4;

struct Outcome {
  ServeCounts counts;
  std::vector<ServeItem> lost;
};

// Every rank serves kTokens x kTopK ids of layer 0 (expert e lives in global
// slot e of a contiguous placement). corrupt: rank 1's slot 0 (expert 2)
// holds expert 3's weights; failed: rank 2 is dead (marked failed by the others).
std::vector<Outcome> serve_once(bool corrupt, bool failed) {
  const ToyMoE model = *ToyMoE::create({1, kExperts, 8, 5});
  const Placement placement = *Placement::contiguous(1, kRanks, kExperts, kSlots);
  std::vector<Outcome> out(kRanks);
  const auto statuses = LocalGroup::run(kRanks, [&](Transport& t) -> Status {
    const RankId q = t.rank();
    if (failed && q == 2) return ok_status();
    OMNI_ASSIGN_OR_RETURN(auto store, HostWeightStore::create({model.expert_bytes()}, {kSlots}, 0));
    std::vector<std::byte> w(static_cast<size_t>(model.expert_bytes()));
    for (SlotId s = 0; s < kSlots; ++s) {
      const ExpertId e = corrupt && q == 1 && s == 0 ? 3 : placement.expert_at(0, q, s);
      OMNI_RETURN_IF_ERROR(model.expert_weights(0, e, w));
      OMNI_RETURN_IF_ERROR(store->write_slot(0, s, 0, w));
    }
    if (failed) OMNI_RETURN_IF_ERROR(t.mark_failed(2));
    std::vector<std::vector<ExpertId>> ids(1);
    std::vector<ServeItem> items;
    for (int32_t i = 0; i < kTokens * kTopK; ++i) {
      const ExpertId e = (i + q) % kExperts;
      ids[0].push_back(e);
      items.push_back({0, i, e});  // global slot e holds expert e
    }
    ExpertExchange ex(t, model, *store, kTopK, 30s);
    Outcome& o = out[static_cast<size_t>(q)];
    OMNI_RETURN_IF_ERROR(ex.serve(/*step=*/3, placement, items, ids, o.lost, o.counts));
    // A second exchange reuses the buffers and gives the same counts again.
    Outcome again;
    OMNI_RETURN_IF_ERROR(ex.serve(/*step=*/4, placement, items, ids, again.lost, again.counts));
    EXPECT_EQ(again.counts.wrong, o.counts.wrong);
    EXPECT_EQ(again.counts.checked, o.counts.checked);
    return ok_status();
  });
  for (const Status& s : statuses) EXPECT_TRUE(s.ok()) << s;
  return out;
}

TEST(ExpertExchange, EveryOutputMatchesItsReference) {
  for (const Outcome& o : serve_once(false, false)) {
    EXPECT_EQ(o.counts.checked, kTokens * kTopK);
    EXPECT_EQ(o.counts.wrong, 0);
    EXPECT_EQ(o.counts.misrouted, 0);
    EXPECT_TRUE(o.lost.empty());
  }
}

TEST(ExpertExchange, WrongWeightsInASlotMakeExactlyItsOutputsWrong) {
  const auto out = serve_once(true, false);
  for (RankId q = 0; q < kRanks; ++q) {
    // Rank q asks for experts (i + q) % 6, i < 8: expert 2 comes up once or twice.
    int64_t asked_for_2 = 0;
    for (int32_t i = 0; i < kTokens * kTopK; ++i) asked_for_2 += (i + q) % kExperts == 2 ? 1 : 0;
    EXPECT_EQ(out[static_cast<size_t>(q)].counts.checked, kTokens * kTopK) << q;
    EXPECT_EQ(out[static_cast<size_t>(q)].counts.wrong, asked_for_2) << q;
  }
}

TEST(ExpertExchange, ItemsOfAFailedPeerComeBackAsLost) {
  const auto out = serve_once(false, true);
  for (RankId q : {0, 1}) {
    const Outcome& o = out[static_cast<size_t>(q)];
    // Experts 4 and 5 live on rank 2.
    int64_t on_2 = 0;
    for (int32_t i = 0; i < kTokens * kTopK; ++i) on_2 += (i + q) % kExperts >= 4 ? 1 : 0;
    EXPECT_EQ(static_cast<int64_t>(o.lost.size()), on_2) << q;
    for (const ServeItem& it : o.lost) EXPECT_GE(it.slot, 4) << q;
    EXPECT_EQ(o.counts.checked, kTokens * kTopK - on_2) << q;
    EXPECT_EQ(o.counts.wrong, 0) << q;
  }
}

}  // namespace
}  // namespace omni
