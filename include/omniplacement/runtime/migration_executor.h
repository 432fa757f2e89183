// MigrationExecutor: moves one migration step's expert weights into the
// WeightStore's staging buffers of this rank, while serving goes on.
//
// Every rank calls stage() with the same step (the same transfers in the same
// order, migration_steps.h). A rank sends, on a thread of its own, the
// transfers it is the source of for another rank (reading its slots), and
// receives on the calling thread the transfers it is the destination of: from
// another rank (a tagged message), from one of its own slots (a local copy) or
// from the BackupSource (src_rank kFromBackup, a restore). Both sides walk the
// transfers in the given order, so whatever the transport's send semantics the
// earliest pending transfer always has both ends working on it and nothing
// deadlocks. Nothing is written to a slot: the staged weights wait for the
// commit (WeightStore::commit_staging), which is the PlacementManager's.
//
//   omni::MigrationExecutor exec(planner_transport, store, options);
//   std::vector<omni::StagingId> staged;
//   omni::Status s = exec.stage(round, batch, step.transfers, [&] { return abort_requested(); }, staged);
//   if (!s.ok()) for (auto id : staged) store.release_staging(id);   // the caller owns the staging
//
// Every weight message starts with a header naming (round, layer, expert,
// destination), so that a message left over from an aborted round (same peer
// and tag) is recognised and dropped; any other mismatch is DATA_LOSS. The
// header also carries the sender's checksum of the weights (XXH3-64 of the
// payload, xxHash): the receiver checks it before staging, and a mismatch (a
// payload corrupted in transit, on any transport) is DATA_LOSS naming the
// layer, expert and source rank; the step fails, so the round aborts and the
// old epoch stays.
//
// Thread safety: stage() from one thread at a time (the manager's planner
// thread); it starts and joins its sender thread before returning. The hooks
// run on the calling thread (before_transfer) and on the sender (before_send).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"
#include "omniplacement/planner/migration_plan.h"
#include "omniplacement/runtime/backup_source.h"
#include "omniplacement/runtime/weight_store.h"
#include "omniplacement/transport/transport.h"

namespace omni {

// Transfer::src_rank of a restore: the weights come from the BackupSource.
inline constexpr RankId kFromBackup = -1;

// Describes one weight transfer to the optional test hooks.
struct TransferEvent {
  int64_t round = 0;
  int64_t batch = 0;
  Transfer transfer;
};

struct MigrationExecutorOptions {
  // Longest wait for one transfer's peer (DEADLINE_EXCEEDED after it).
  std::chrono::milliseconds transfer_timeout{30000};
  // Called before each transfer this rank receives (local copies and restores
  // included), on the calling thread; an error fails the step.
  std::function<Status(const TransferEvent&)> before_transfer;
  // Called before each transfer this rank sends to another rank, on the
  // sender thread; an error fails the step.
  std::function<Status(const TransferEvent&)> before_send;
  // Source of kFromBackup transfers (borrowed; may be null when there are none).
  const BackupSource* backup = nullptr;
};

// What one stage() call did on this rank.
struct StageStats {
  int64_t experts_received = 0;      // staged on this rank (messages, local copies and restores)
  int64_t experts_loaded = 0;        // of which read from the backup
  double restore_load_seconds = 0;   // reading the backup into staging
};

class MigrationExecutor {
 public:
  // `transport` carries the weight messages (a Transport of its own: the
  // executor uses tags 1..kMaxTag); `store` holds this rank's slots. Both are
  // borrowed and must outlive the executor.
  MigrationExecutor(Transport& transport, WeightStore& store, MigrationExecutorOptions options)
      : transport_(&transport), store_(&store), options_(std::move(options)) {}

  // Stages the transfers of step `batch` of round `round` that involve this
  // rank (see the file comment). `staged` receives every staging buffer
  // acquired, also when an error is returned: the caller commits or releases
  // them. `aborted` is polled while waiting for a peer (every few ms); when it
  // returns true the call stops with ABORTED. Errors name the round, batch,
  // layer, expert and peer rank: UNAVAILABLE or DEADLINE_EXCEEDED from the
  // transport, RESOURCE_EXHAUSTED from the store's staging limit,
  // FAILED_PRECONDITION for a restore without a backup, DATA_LOSS for an
  // unexpected message or a payload that fails its checksum, or a hook's error.
  Status stage(int64_t round, int64_t batch, std::span<const Transfer> transfers,
               const std::function<bool()>& aborted, std::vector<StagingId>& staged, StageStats* stats = nullptr);

 private:
  Status send_all(int64_t round, int64_t batch, std::span<const Transfer> transfers,
                  const std::function<bool()>& aborted);
  Status receive(int64_t round, size_t index, const Transfer& t, StagingId id, const std::function<bool()>& aborted);

  Transport* transport_;
  WeightStore* store_;
  MigrationExecutorOptions options_;
};

}  // namespace omni
