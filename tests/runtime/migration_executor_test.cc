// MigrationExecutor over LocalTransport: weights staged from another rank, a
// local slot and the backup; aborts and timeouts while waiting for a silent
// peer; messages left over from an aborted round; hook and store errors.
#include "omniplacement/runtime/migration_executor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstring>
#include <thread>

#include "omniplacement/core/str_cat.h"
#include "omniplacement/runtime/placement_manager.h"
#include "omniplacement/transport/forwarding_transport.h"
#include "omniplacement/transport/local_transport.h"

namespace omni {
namespace {

using namespace std::chrono_literals;
constexpr int64_t kBytes = 64;

// Slot (l, s) of rank r starts filled with the byte 16 * r + s + 1.
std::unique_ptr<HostWeightStore> store_of(RankId r, int64_t staging_limit = 1 << 20) {
  auto store = *HostWeightStore::create({kBytes}, {2}, staging_limit);
  for (SlotId s = 0; s < 2; ++s) {
    std::vector<std::byte> w(kBytes, std::byte(16 * r + s + 1));
    OMNI_CHECK(store->write_slot(0, s, 0, w).ok());
  }
  return store;
}

Transfer transfer(ExpertId e, RankId src, SlotId src_slot, RankId dst, SlotId dst_slot) {
  Transfer t;
  t.layer = 0;
  t.expert = e;
  t.src_rank = src;
  t.src_slot = src_slot;
  t.dst_rank = dst;
  t.dst_slot = dst_slot;
  t.link = src == dst ? LinkClass::kSameRank : LinkClass::kSameHost;
  t.bytes = kBytes;
  return t;
}

std::byte first_byte(const HostWeightStore& s, SlotId slot) { return s.slot_data(0, slot)[0]; }

TEST(MigrationExecutorTest, StagesFromPeersLocalSlotsAndTheBackup) {
  auto backup = *HostMemoryBackup::create({kBytes}, 8);
  ASSERT_TRUE(backup->set(0, 5, std::vector<std::byte>(kBytes, std::byte{0x55})).ok());
  std::vector<std::unique_ptr<HostWeightStore>> stores;
  for (RankId r = 0; r < 3; ++r) stores.push_back(store_of(r));
  // r0 s0 -> r1 s1 (a message), r2 s0 -> r2 s1 (a local copy), backup expert 5 -> r0 s1, r1 s0 -> r2 s0
  // (r2 s0 is also read by the local copy in the same step: both read it as it was before).
  const std::vector<Transfer> ts = {transfer(1, 0, 0, 1, 1), transfer(2, 2, 0, 2, 1), transfer(5, kFromBackup, -1, 0, 1),
                                    transfer(3, 1, 0, 2, 0)};
  std::vector<StageStats> stats(3);
  auto statuses = LocalGroup::run(3, [&](Transport& t) -> Status {
    MigrationExecutorOptions o;
    o.backup = backup.get();
    MigrationExecutor exec(t, *stores[static_cast<size_t>(t.rank())], o);
    std::vector<StagingId> staged;
    OMNI_RETURN_IF_ERROR(exec.stage(7, 0, ts, [] { return false; }, staged, &stats[static_cast<size_t>(t.rank())]));
    for (StagingId id : staged) OMNI_RETURN_IF_ERROR(stores[static_cast<size_t>(t.rank())]->commit_staging(id));
    for (StagingId id : staged) stores[static_cast<size_t>(t.rank())]->release_staging(id);
    return ok_status();
  });
  for (const Status& s : statuses) ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(first_byte(*stores[1], 1), std::byte{1});     // rank 0 slot 0
  EXPECT_EQ(first_byte(*stores[2], 1), std::byte{33});    // rank 2 slot 0 before the step
  EXPECT_EQ(first_byte(*stores[2], 0), std::byte{17});    // rank 1 slot 0
  EXPECT_EQ(first_byte(*stores[0], 1), std::byte{0x55});  // the backup
  EXPECT_EQ(first_byte(*stores[0], 0), std::byte{1});     // untouched
  EXPECT_EQ(stats[0].experts_received, 1);
  EXPECT_EQ(stats[0].experts_loaded, 1);
  EXPECT_EQ(stats[1].experts_received, 1);
  EXPECT_EQ(stats[2].experts_received, 2);
  EXPECT_EQ(stats[2].experts_loaded, 0);
  for (const auto& st : stores) EXPECT_EQ(st->staging_bytes_in_use(), 0);
}

// Rank 1 waits for a transfer rank 0 never sends (rank 0 does not stage).
Status wait_for_silent_peer(const MigrationExecutorOptions& o, const std::function<bool()>& aborted,
                            std::chrono::steady_clock::duration* waited) {
  Status result;
  auto statuses = LocalGroup::run(2, [&](Transport& t) -> Status {
    if (t.rank() == 0) return ok_status();
    auto store = store_of(1);
    MigrationExecutor exec(t, *store, o);
    std::vector<StagingId> staged;
    const auto t0 = std::chrono::steady_clock::now();
    result = exec.stage(3, 1, std::vector<Transfer>{transfer(4, 0, 0, 1, 1)}, aborted, staged);
    *waited = std::chrono::steady_clock::now() - t0;
    if (staged.size() != 1) return internal_error("the staging buffer was not handed back");
    store->release_staging(staged[0]);
    return ok_status();
  });
  for (const Status& s : statuses) EXPECT_TRUE(s.ok()) << s;
  return result;
}

TEST(MigrationExecutorTest, AbortStopsTheWaitForASilentPeer) {
  MigrationExecutorOptions o;
  o.transfer_timeout = 60s;  // only the abort can end the wait in time
  std::atomic<bool> stop{false};
  std::thread trigger([&] {
    std::this_thread::sleep_for(50ms);
    stop = true;
  });
  std::chrono::steady_clock::duration waited{};
  const Status s = wait_for_silent_peer(o, [&] { return stop.load(); }, &waited);
  trigger.join();
  EXPECT_EQ(s.code(), StatusCode::kAborted) << s;
  EXPECT_NE(s.message().find("round 3 aborted"), std::string::npos) << s;
  EXPECT_LT(waited, 30s);
}

TEST(MigrationExecutorTest, SilentPeerTimesOutNamingTheTransfer) {
  MigrationExecutorOptions o;
  o.transfer_timeout = 100ms;
  std::chrono::steady_clock::duration waited{};
  const Status s = wait_for_silent_peer(o, [] { return false; }, &waited);
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
  EXPECT_NE(s.message().find("round 3, batch 1: receiving layer 0 expert 4 from rank 0 into slot 1"),
            std::string::npos)
      << s;
  EXPECT_GE(waited, 100ms);
}

// A weight message as the executor frames it: (round, layer, expert, dst rank, dst slot, checksum), then
// the bytes (the checksum is never reached: these messages fail or are dropped on their header).
std::vector<std::byte> framed(int64_t round, const Transfer& t, std::byte fill) {
  const int64_t h[6] = {round, t.layer, t.expert, t.dst_rank, t.dst_slot, 0};
  std::vector<std::byte> m(sizeof(h) + static_cast<size_t>(kBytes), fill);
  std::memcpy(m.data(), h, sizeof(h));
  return m;
}

TEST(MigrationExecutorTest, DropsMessagesLeftOverFromAnAbortedRoundAndRefusesStrangers) {
  const Transfer t = transfer(1, 0, 0, 1, 1);
  for (const bool stranger : {false, true}) {
    SCOPED_TRACE(stranger ? "a message of a later round" : "a message of an earlier round");
    std::vector<std::unique_ptr<HostWeightStore>> stores;
    for (RankId r = 0; r < 2; ++r) stores.push_back(store_of(r));
    Status received;
    auto statuses = LocalGroup::run(2, [&](Transport& tr) -> Status {
      MigrationExecutor exec(tr, *stores[static_cast<size_t>(tr.rank())], {});
      std::vector<StagingId> staged;
      if (tr.rank() == 0) {
        // The leftover travels on the tag of transfer 0 (tag 1), ahead of this round's message.
        OMNI_RETURN_IF_ERROR(tr.send(1, 1, framed(stranger ? 9 : 4, t, std::byte{0x77}), 5s));
        if (stranger) return ok_status();  // rank 1 fails on it; nothing more to send
        return exec.stage(5, 0, std::vector<Transfer>{t}, [] { return false; }, staged);
      }
      received = exec.stage(5, 0, std::vector<Transfer>{t}, [] { return false; }, staged);
      if (received.ok()) OMNI_RETURN_IF_ERROR(stores[1]->commit_staging(staged.at(0)));
      for (StagingId id : staged) stores[1]->release_staging(id);
      return ok_status();
    });
    for (const Status& s : statuses) ASSERT_TRUE(s.ok()) << s;
    if (stranger) {
      EXPECT_EQ(received.code(), StatusCode::kDataLoss) << received;
      EXPECT_NE(received.message().find("unexpected weight message (112 bytes, round 9, layer 0, expert 1)"),
                std::string::npos)
          << received;
    } else {
      ASSERT_TRUE(received.ok()) << received;
      EXPECT_EQ(first_byte(*stores[1], 1), std::byte{1});  // this round's weights, not the leftover's 0x77
    }
  }
}

TEST(MigrationExecutorTest, HookStoreAndBackupErrorsFailTheStep) {
  struct Case {
    const char* name;
    MigrationExecutorOptions options;
    int64_t staging_limit;
    Transfer t;
    StatusCode code;
    const char* message;
  };
  MigrationExecutorOptions hook;
  hook.before_transfer = [](const TransferEvent& ev) -> Status {
    return unavailable_error("injected at round " + std::to_string(ev.round));
  };
  const std::vector<Case> cases = {
      {"HookError", hook, 1 << 20, transfer(1, 0, 0, 0, 1), StatusCode::kUnavailable, "injected at round 2"},
      {"StagingFull", {}, kBytes - 1, transfer(1, 0, 0, 0, 1), StatusCode::kResourceExhausted, ""},
      {"NoBackup", {}, 1 << 20, transfer(1, kFromBackup, -1, 0, 1), StatusCode::kFailedPrecondition,
       "no backup source"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto statuses = LocalGroup::run(1, [&](Transport& t) -> Status {
      auto store = store_of(0, c.staging_limit);
      MigrationExecutor exec(t, *store, c.options);
      std::vector<StagingId> staged;
      const Status s = exec.stage(2, 0, std::vector<Transfer>{c.t}, [] { return false; }, staged);
      for (StagingId id : staged) store->release_staging(id);
      EXPECT_EQ(s.code(), c.code) << s;
      EXPECT_NE(s.message().find(c.message), std::string::npos) << s;
      EXPECT_EQ(store->staging_bytes_in_use(), 0);
      return ok_status();
    });
    ASSERT_TRUE(statuses[0].ok()) << statuses[0];
  }
}

// Forwards everything to another transport; a point-to-point message received
// here that is longer than a weight header gets one byte of its payload
// flipped, as a link that corrupts data in flight. Duplicates corrupt too.
class CorruptingLink final : public ForwardingTransport {
 public:
  static constexpr size_t kHeaderBytes = 48;  // the executor's weight header
  explicit CorruptingLink(std::unique_ptr<Transport> inner) : ForwardingTransport(std::move(inner)) {}
  explicit CorruptingLink(Transport& inner) : ForwardingTransport(inner) {}
  std::string_view backend() const override { return inner().backend(); }
  StatusOr<std::unique_ptr<Transport>> duplicate(Timeout timeout) override {
    OMNI_ASSIGN_OR_RETURN(auto dup, inner().duplicate(timeout));
    return std::unique_ptr<Transport>(new CorruptingLink(std::move(dup)));
  }
  StatusOr<std::vector<std::byte>> recv_message(RankId src, int32_t tag, Timeout timeout) override {
    OMNI_ASSIGN_OR_RETURN(auto m, inner().recv_message(src, tag, timeout));
    if (m.size() > kHeaderBytes) m[kHeaderBytes + (m.size() - kHeaderBytes) / 2] ^= std::byte{0x10};
    return m;
  }
};

TEST(MigrationExecutorTest, PayloadCorruptedInTransitFailsTheStepNamingTheTransfer) {
  std::vector<std::unique_ptr<HostWeightStore>> stores;
  for (RankId r = 0; r < 2; ++r) stores.push_back(store_of(r));
  const std::vector<Transfer> ts = {transfer(6, 0, 1, 1, 0)};  // rank 0 slot 1 -> rank 1 slot 0
  for (const bool corrupt : {false, true}) {
    SCOPED_TRACE(corrupt ? "corrupting link" : "clean link");
    Status received;
    auto statuses = LocalGroup::run(2, [&](Transport& t) -> Status {
      CorruptingLink bad(t);
      Transport& use = corrupt ? static_cast<Transport&>(bad) : t;
      HostWeightStore& store = *stores[static_cast<size_t>(t.rank())];
      MigrationExecutor exec(use, store, {});
      std::vector<StagingId> staged;
      const Status s = exec.stage(3, 0, ts, [] { return false; }, staged);
      if (t.rank() == 1) {
        received = s;
        if (s.ok()) OMNI_RETURN_IF_ERROR(store.commit_staging(staged.at(0)));
      } else {
        OMNI_RETURN_IF_ERROR(s);
      }
      for (StagingId id : staged) store.release_staging(id);
      return ok_status();
    });
    for (const Status& s : statuses) ASSERT_TRUE(s.ok()) << s;
    if (!corrupt) {
      ASSERT_TRUE(received.ok()) << received;
      EXPECT_EQ(first_byte(*stores[1], 0), std::byte{2});  // rank 0 slot 1's bytes arrived intact
      OMNI_CHECK(stores[1]->write_slot(0, 0, 0, std::vector<std::byte>(kBytes, std::byte{17})).ok());
      continue;
    }
    EXPECT_EQ(received.code(), StatusCode::kDataLoss) << received;
    EXPECT_NE(received.message().find("the weights of layer 0 expert 6 from rank 0 were corrupted in transit"),
              std::string::npos)
        << received;
    EXPECT_NE(received.message().find("XXH3-64"), std::string::npos) << received;
    // Nothing staged was committed: the slot keeps its own bytes.
    const std::span<const std::byte> slot = stores[1]->slot_data(0, 0);
    EXPECT_TRUE(std::all_of(slot.begin(), slot.end(), [](std::byte b) { return b == std::byte{17}; }));
    EXPECT_EQ(stores[1]->staging_bytes_in_use(), 0);
  }
}

// Four managers re-planning a drifting load, every rank's weight messages
// behind a corrupting link (or none): with corruption every round that moves
// an expert aborts on its checksum and the initial epoch stays; without, the
// same runs commit.
TEST(MigrationExecutorTest, CorruptedWeightsAbortTheRoundAndTheOldEpochStays) {
  constexpr int32_t R = 4, L = 2, E = 8, S = 3;
  const Topology topo = *Topology::uniform(R, 2);
  const Placement initial = *Placement::contiguous(L, R, E, S);
  for (const bool corrupt : {false, true}) {
    SCOPED_TRACE(corrupt ? "corrupting link" : "clean link");
    PlacementManagerOptions opt;
    opt.planner_spec = "eplb";
    opt.replan_interval_steps = 4;
    opt.commit_cadence_steps = 1;
    // Short: a rank whose receive failed ends its batch at once, the others wait for it that long.
    opt.stage_wait = 300ms;
    opt.collective_timeout = 5s;
    std::vector<std::unique_ptr<HostWeightStore>> stores;
    for (RankId q = 0; q < R; ++q) {
      stores.push_back(*HostWeightStore::create({32, 32}, {S, S}, 1 << 20));
      for (LayerId l = 0; l < L; ++l)
        for (SlotId s = 0; s < S; ++s)
          OMNI_CHECK(stores.back()
                         ->write_slot(l, s, 0, std::vector<std::byte>(32, std::byte(initial.expert_at(l, q, s) + 1)))
                         .ok());
    }
    std::vector<PlacementManagerStats> stats(R);
    std::vector<Placement> final_placement(R, initial);
    std::barrier sync(R);
    auto statuses = LocalGroup::run(R, [&](Transport& t) -> Status {
      CorruptingLink bad(t);
      Transport& use = corrupt ? static_cast<Transport&>(bad) : t;
      OMNI_ASSIGN_OR_RETURN(auto pm, PlacementManager::create(use, topo, initial,
                                                              *stores[static_cast<size_t>(t.rank())], opt));
      std::vector<ExpertId> ids(32);
      std::vector<GlobalSlot> out(ids.size());
      for (int64_t step = 0; step < 16; ++step) {
        for (LayerId l = 0; l < L; ++l) {
          for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<ExpertId>((i % 3 == 0 ? step / 4 + l : i) % E);
          pm->record(l, ids);
          OMNI_RETURN_IF_ERROR(pm->dispatch(l, ids, out));
        }
        OMNI_RETURN_IF_ERROR(pm->step_boundary(step));
        sync.arrive_and_wait();
      }
      stats[static_cast<size_t>(t.rank())] = pm->stats();
      final_placement[static_cast<size_t>(t.rank())] = pm->snapshot()->placement();
      return ok_status();
    });
    for (const Status& s : statuses) ASSERT_TRUE(s.ok()) << s;
    for (RankId q = 0; q < R; ++q) {
      const PlacementManagerStats& st = stats[static_cast<size_t>(q)];
      SCOPED_TRACE(str_cat("rank ", q));
      if (!corrupt) {
        EXPECT_GE(st.epoch, 1u);
        EXPECT_EQ(st.rounds_aborted, 0);
        continue;
      }
      EXPECT_EQ(st.epoch, 0u);
      EXPECT_GE(st.rounds_aborted, 1) << "started " << st.rounds_started << ", no change " << st.rounds_no_change
                                      << ", last abort: " << st.last_abort;
      EXPECT_EQ(st.rounds_completed, 0);
      EXPECT_EQ(final_placement[static_cast<size_t>(q)], initial);
      // Every slot still holds its initial expert's bytes.
      for (LayerId l = 0; l < L; ++l)
        for (SlotId s = 0; s < S; ++s)
          EXPECT_EQ(stores[static_cast<size_t>(q)]->slot_data(l, s)[0], std::byte(initial.expert_at(l, q, s) + 1));
    }
    if (corrupt) {
      // Some rank received a corrupted payload and said which transfer it was.
      bool named = false;
      for (const auto& st : stats)
        named |= st.last_abort.find("were corrupted in transit") != std::string::npos &&
                 st.last_abort.find("from rank ") != std::string::npos;
      EXPECT_TRUE(named) << stats[0].last_abort;
    }
  }
}

}  // namespace
}  // namespace omni
