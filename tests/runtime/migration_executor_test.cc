// MigrationExecutor over LocalTransport: weights staged from another rank, a
// local slot and the backup; aborts and timeouts while waiting for a silent
// peer; messages left over from an aborted round; hook and store errors.
#include "omniplacement/runtime/migration_executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

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

// A weight message as the executor frames it: (round, layer, expert, dst rank, dst slot), then the bytes.
std::vector<std::byte> framed(int64_t round, const Transfer& t, std::byte fill) {
  const int64_t h[5] = {round, t.layer, t.expert, t.dst_rank, t.dst_slot};
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
      EXPECT_NE(received.message().find("unexpected weight message (104 bytes, round 9, layer 0, expert 1)"),
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

}  // namespace
}  // namespace omni
