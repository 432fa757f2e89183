// The leader's plan shared with every rank (runtime/plan_broadcast.h): the
// byte encoding, checksum verification, leader errors; and in the
// PlacementManager: only the leader plans, the next live rank leads after a
// failure, and a plan corrupted on one rank aborts the round everywhere.
#include "omniplacement/runtime/plan_broadcast.h"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <latch>
#include <chrono>
#include <cmath>
#include <random>

#include "common/random_placement.h"
#include "omniplacement/core/placement_ops.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/forwarding_transport.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

using namespace std::chrono_literals;

Placement with_shares(std::mt19937_64& rng) {
  PlacementLayout p = testing::random_layout(rng, 3, 4, 9, 0, 2);
  p.shares.clear();
  for (const auto& row : p.phy2log) {
    auto& sh = p.shares.emplace_back(row.size(), 0.0);
    for (size_t g = 0; g < row.size(); ++g)
      if (row[g] != kEmptySlot) sh[g] = std::uniform_real_distribution<double>(0.1, 1.0)(rng);
    renormalise_shares(row, sh, p.num_experts);
  }
  return *Placement::create(std::move(p));
}

TEST(PlanBroadcastTest, EncodingRoundTrips) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 10; ++trial) {
    const Placement plain = *Placement::create(testing::random_layout(rng, 3, 4, 9, 0, 2));
    const Placement shared = with_shares(rng);
    for (const Placement* p : {&plain, &shared}) {
      auto back = decode_plan(encode_plan(*p), p->checksum());
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(*back, *p);
    }
  }
}

TEST(PlanBroadcastTest, DecodeRefusesCorruptedTruncatedAndPaddedBytes) {
  std::mt19937_64 rng(6);
  const Placement p = with_shares(rng);
  const std::vector<std::byte> good = encode_plan(p);
  // Two slots of layer 0 swapped (the int32 expert ids after the 4 x int64 header and 3 x int32 slot
  // counts): still a valid placement, but not the leader's.
  const Placement plain = *Placement::create(testing::random_layout(rng, 3, 4, 9, 0, 2));
  std::vector<std::byte> swapped = encode_plan(plain);
  const size_t first = 4 * sizeof(int64_t) + 3 * sizeof(int32_t);
  ASSERT_NE(plain.expert_at(0, 0), plain.expert_at(0, 1));
  std::swap_ranges(swapped.begin() + first, swapped.begin() + first + 4, swapped.begin() + first + 4);
  auto bad = decode_plan(swapped, plain.checksum());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("corrupted in transit"), std::string::npos) << bad.status();
  // A share's high byte: not a placement at all.
  std::vector<std::byte> flipped = good;
  flipped.back() ^= std::byte{0x40};
  EXPECT_EQ(decode_plan(flipped, p.checksum()).status().code(), StatusCode::kDataLoss);
  auto wrong_sum = decode_plan(good, p.checksum() + 1);
  EXPECT_EQ(wrong_sum.status().code(), StatusCode::kDataLoss);
  auto truncated = decode_plan(std::span(good).first(good.size() - 3), p.checksum());
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.status().message().find("truncated"), std::string::npos) << truncated.status();
  std::vector<std::byte> padded = good;
  padded.push_back(std::byte{0});
  EXPECT_EQ(decode_plan(padded, p.checksum()).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(decode_plan({}, 0).status().code(), StatusCode::kDataLoss);
}

// Forwards everything to a LocalTransport; broadcasts received on this rank
// (not sent by it) get their last byte flipped, as a link that corrupts data.
class CorruptingTransport final : public ForwardingTransport {
 public:
  explicit CorruptingTransport(std::unique_ptr<Transport> inner) : ForwardingTransport(std::move(inner)) {}
  explicit CorruptingTransport(Transport& inner) : ForwardingTransport(inner) {}
  std::string_view backend() const override { return inner().backend(); }
  Status broadcast(std::span<std::byte> data, RankId root, Timeout timeout) override {
    OMNI_RETURN_IF_ERROR(inner().broadcast(data, root, timeout));
    if (root != rank() && data.size() > 64) data.back() ^= std::byte{1};  // the payload, not the header
    return ok_status();
  }
  StatusOr<std::unique_ptr<Transport>> duplicate(Timeout timeout) override {
    OMNI_ASSIGN_OR_RETURN(auto dup, inner().duplicate(timeout));
    return std::unique_ptr<Transport>(new CorruptingTransport(std::move(dup)));
  }
};

TEST(PlanBroadcastTest, EveryRankGetsTheLeadersPlanOrItsError) {
  std::mt19937_64 rng(7);
  const Placement plan = with_shares(rng);
  for (const RankId leader : {0, 2}) {
    std::vector<StatusOr<Placement>> got(4, internal_error("not run"));
    auto statuses = LocalGroup::run(4, [&](Transport& t) -> Status {
      const StatusOr<Placement> mine = plan;
      got[static_cast<size_t>(t.rank())] = share_plan(t, leader, t.rank() == leader ? &mine : nullptr, 5s);
      return ok_status();
    });
    for (RankId r = 0; r < 4; ++r) {
      ASSERT_TRUE(got[static_cast<size_t>(r)].ok()) << "leader " << leader << ", rank " << r << ": "
                                                    << got[static_cast<size_t>(r)].status();
      EXPECT_EQ(*got[static_cast<size_t>(r)], plan);
    }
  }
  // The leader's planning error, on every rank.
  std::vector<Status> errors(3);
  auto statuses = LocalGroup::run(3, [&](Transport& t) -> Status {
    const StatusOr<Placement> mine = invalid_argument_error("layer 4: no room");
    errors[static_cast<size_t>(t.rank())] = share_plan(t, 1, t.rank() == 1 ? &mine : nullptr, 5s).status();
    return ok_status();
  });
  for (const Status& e : errors) {
    EXPECT_EQ(e.code(), StatusCode::kFailedPrecondition) << e;
    EXPECT_NE(e.message().find("the leader, rank 1, could not plan: INVALID_ARGUMENT: layer 4: no room"),
              std::string::npos)
        << e;
  }
  // A link that corrupts the plan on rank 2: that rank refuses it, the others take it.
  std::vector<Status> verdicts(3);
  statuses = LocalGroup::run(3, [&](Transport& t) -> Status {
    CorruptingTransport bad(t);
    Transport& use = t.rank() == 2 ? static_cast<Transport&>(bad) : t;
    const StatusOr<Placement> mine = plan;
    verdicts[static_cast<size_t>(t.rank())] = share_plan(use, 0, t.rank() == 0 ? &mine : nullptr, 5s).status();
    return ok_status();
  });
  EXPECT_TRUE(verdicts[0].ok() && verdicts[1].ok()) << verdicts[0] << verdicts[1];
  EXPECT_EQ(verdicts[2].code(), StatusCode::kDataLoss) << verdicts[2];
}

// Four managers on a drifting load, rank `corrupt` (or none) behind a corrupting link, rank
// `fail` (or none) failed over after `fail_step` steps. Returns each rank's stats.
std::vector<PlacementManagerStats> run_managers(RankId corrupt, RankId fail, int64_t fail_step, int64_t steps,
                                                std::chrono::milliseconds stage_wait = 20s) {
  constexpr int32_t R = 4, L = 2, E = 8, S = 3;
  const Topology topo = *Topology::uniform(R, 2);
  const Placement initial = *Placement::contiguous(L, R, E, S);
  PlacementManagerOptions opt;
  opt.planner_spec = "eplb";
  opt.replan_interval_steps = 4;
  opt.commit_cadence_steps = 1;
  opt.stage_wait = stage_wait;
  opt.collective_timeout = 5s;  // bounds a planner left in a collective when its peers shut down
  auto backup = *HostMemoryBackup::create({32, 32}, E);  // lost experts come back from here
  opt.backup = backup.get();
  std::vector<std::unique_ptr<HostWeightStore>> stores;
  for (RankId q = 0; q < R; ++q) stores.push_back(*HostWeightStore::create({32, 32}, {S, S}, 1 << 20));
  std::vector<PlacementManagerStats> stats(R);
  std::barrier sync(R);
  std::latch survivors_done(fail >= 0 ? R - 1 : R);
  auto statuses = LocalGroup::run(R, [&](Transport& t) -> Status {
    CorruptingTransport bad(t);
    Transport& use = t.rank() == corrupt ? static_cast<Transport&>(bad) : t;
    auto pm = PlacementManager::create(use, topo, initial, *stores[static_cast<size_t>(t.rank())], opt);
    if (!pm.ok()) return pm.status();
    std::vector<ExpertId> ids(32);
    std::vector<GlobalSlot> out(ids.size());
    for (int64_t step = 0; step < steps; ++step) {
      if (step == fail_step && t.rank() == fail) {
        // This rank crashes: it leaves the step barrier and, once the survivors are done, fails them
        // in its own view so that its planner thread's collectives return at once.
        sync.arrive_and_drop();
        survivors_done.wait();
        std::vector<RankId> others;
        for (RankId r = 0; r < R; ++r)
          if (r != fail) others.push_back(r);
        stats[static_cast<size_t>(t.rank())] = (*pm)->stats();
        return (*pm)->fail_ranks(others);
      }
      if (fail >= 0 && step == fail_step) OMNI_RETURN_IF_ERROR((*pm)->fail_ranks(std::vector<RankId>{fail}));
      for (LayerId l = 0; l < L; ++l) {
        for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<ExpertId>((i % 3 == 0 ? step / 4 + l : i) % E);
        (*pm)->record(l, ids);
        OMNI_RETURN_IF_ERROR((*pm)->dispatch(l, ids, out));
      }
      OMNI_RETURN_IF_ERROR((*pm)->step_boundary(step));
      sync.arrive_and_wait();
    }
    stats[static_cast<size_t>(t.rank())] = (*pm)->stats();
    survivors_done.count_down();
    return ok_status();
  });
  for (const Status& s : statuses) EXPECT_TRUE(s.ok()) << s;
  return stats;
}

TEST(PlanBroadcastTest, OnlyTheLeaderPlansAndTheNextLiveRankTakesOver) {
  const auto healthy = run_managers(-1, -1, 0, 40);
  EXPECT_GE(healthy[0].plans_made, 5);
  EXPECT_EQ(healthy[0].rounds_aborted, 0) << healthy[0].last_abort;
  for (RankId r = 1; r < 4; ++r) {
    EXPECT_EQ(healthy[static_cast<size_t>(r)].plans_made, 0) << "rank " << r;
    EXPECT_EQ(healthy[static_cast<size_t>(r)].epoch, healthy[0].epoch);
    EXPECT_EQ(healthy[static_cast<size_t>(r)].placement_checksum, healthy[0].placement_checksum);
  }
  // Rank 0 fails after 10 steps: rank 1 plans the later rounds.
  const auto failed = run_managers(-1, 0, 10, 48);
  EXPECT_GE(failed[1].plans_made, 3);
  EXPECT_EQ(failed[2].plans_made, 0);
  EXPECT_EQ(failed[3].plans_made, 0);
  EXPECT_EQ(failed[2].epoch, failed[1].epoch);
  EXPECT_EQ(failed[3].placement_checksum, failed[1].placement_checksum);
}

TEST(PlanBroadcastTest, APlanCorruptedOnOneRankAbortsTheRoundEverywhere) {
  // A short stage wait: the other ranks' planners wait for rank 3's transfers until the round aborts,
  // and their engines wait that long for them at each cadence step.
  const auto stats = run_managers(/*corrupt=*/3, -1, 0, 16, 300ms);
  for (RankId r = 0; r < 4; ++r) {
    const auto& s = stats[static_cast<size_t>(r)];
    EXPECT_GT(s.rounds_aborted, 0) << "rank " << r;
    EXPECT_EQ(s.epoch, 0u) << "rank " << r << " committed a plan that rank 3 refused";
  }
  EXPECT_NE(stats[0].last_abort.find("failed"), std::string::npos) << stats[0].last_abort;
  EXPECT_NE(stats[3].last_abort.find("plan of leader 0: decode_plan"), std::string::npos) << stats[3].last_abort;
}

}  // namespace
}  // namespace omni
