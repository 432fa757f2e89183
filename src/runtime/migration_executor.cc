#include "omniplacement/runtime/migration_executor.h"

#include <cstring>
#include <thread>

#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

using Clock = std::chrono::steady_clock;

// Header of every weight message: identifies the transfer so that a message
// left over from an aborted round (same peer and tag) is recognised and dropped.
struct WeightHeader {
  int64_t round;
  int64_t layer;
  int64_t expert;
  int64_t dst_rank;
  int64_t dst_slot;
};

// A wait for a peer is cut into slices so that an abort is noticed quickly.
constexpr std::chrono::milliseconds kWaitSlice{5};

// Transfer i travels under this tag (1..kMaxTag): the same on both ends.
int32_t tag_of(size_t i) { return static_cast<int32_t>(1 + i % static_cast<size_t>(kMaxTag)); }

}  // namespace

Status MigrationExecutor::send_all(int64_t round, int64_t batch, std::span<const Transfer> transfers,
                                   const std::function<bool()>& aborted) {
  const RankId me = transport_->rank();
  std::vector<std::byte> buf;
  for (size_t i = 0; i < transfers.size(); ++i) {
    const Transfer& t = transfers[i];
    if (t.src_rank != me || t.dst_rank == me) continue;
    if (options_.before_send) OMNI_RETURN_IF_ERROR(options_.before_send(TransferEvent{round, batch, t}));
    const WeightHeader h{round, t.layer, t.expert, t.dst_rank, t.dst_slot};
    buf.resize(sizeof(h) + static_cast<size_t>(t.bytes));
    std::memcpy(buf.data(), &h, sizeof(h));
    Status s = store_->read_slot(t.layer, t.src_slot, 0, std::span(buf).subspan(sizeof(h)));
    const auto deadline = Clock::now() + options_.transfer_timeout;
    while (s.ok()) {
      s = transport_->send(t.dst_rank, tag_of(i), buf, kWaitSlice);
      if (s.code() != StatusCode::kDeadlineExceeded) break;  // sent, or failed
      if (aborted()) s = aborted_error(str_cat("round ", round, " aborted"));
      if (!s.ok() && (s.code() != StatusCode::kDeadlineExceeded || Clock::now() > deadline)) break;
      s = ok_status();  // not taken yet: try again
    }
    if (!s.ok())
      return s.with_context(str_cat("round ", round, ", batch ", batch, ": sending layer ", t.layer, " expert ",
                                    t.expert, " to rank ", t.dst_rank));
  }
  return ok_status();
}

Status MigrationExecutor::receive(int64_t round, size_t index, const Transfer& t, StagingId id,
                                  const std::function<bool()>& aborted) {
  const auto deadline = Clock::now() + options_.transfer_timeout;
  for (;;) {
    auto msg = transport_->recv_message(t.src_rank, tag_of(index), kWaitSlice);
    if (msg.status().code() == StatusCode::kDeadlineExceeded) {
      if (aborted()) return aborted_error(str_cat("round ", round, " aborted"));
      if (Clock::now() > deadline) return msg.status();
      continue;
    }
    OMNI_RETURN_IF_ERROR(msg.status());
    WeightHeader h{};
    if (msg->size() >= sizeof(h)) std::memcpy(&h, msg->data(), sizeof(h));
    if (msg->size() >= sizeof(h) && h.round < round) continue;  // left over from an aborted round
    if (msg->size() != sizeof(h) + static_cast<size_t>(t.bytes) || h.round != round || h.layer != t.layer ||
        h.expert != t.expert || h.dst_rank != t.dst_rank || h.dst_slot != t.dst_slot)
      return data_loss_error(str_cat("unexpected weight message (", msg->size(), " bytes, round ", h.round, ", layer ",
                                     h.layer, ", expert ", h.expert, ")"));
    return store_->write_staging(id, 0, std::span(*msg).subspan(sizeof(h)));
  }
}

Status MigrationExecutor::stage(int64_t round, int64_t batch, std::span<const Transfer> transfers,
                                const std::function<bool()>& aborted, std::vector<StagingId>& staged,
                                StageStats* stats) {
  const RankId me = transport_->rank();
  StageStats local;
  // Sends run on their own thread, receives on this one, both in the global
  // transfer order (see the file comment).
  Status send_status;
  std::thread sender([&] { send_status = send_all(round, batch, transfers, aborted); });
  Status recv_status;
  std::vector<std::byte> backup_buf;
  for (size_t i = 0; i < transfers.size() && recv_status.ok(); ++i) {
    const Transfer& t = transfers[i];
    if (t.dst_rank != me) continue;
    if (options_.before_transfer) {
      recv_status = options_.before_transfer(TransferEvent{round, batch, t});
      if (!recv_status.ok()) break;
    }
    auto id = store_->acquire_staging(t.layer, t.dst_slot);
    if (!id.ok()) {
      recv_status = id.status();
      break;
    }
    staged.push_back(*id);
    ++local.experts_received;
    if (t.src_rank == kFromBackup) {
      const auto tb = Clock::now();
      if (options_.backup == nullptr) {
        recv_status = failed_precondition_error("no backup source");
        break;
      }
      backup_buf.resize(static_cast<size_t>(store_->slot_bytes(t.layer)));
      recv_status = options_.backup->read_expert(t.layer, t.expert, backup_buf);
      if (recv_status.ok()) recv_status = store_->write_staging(*id, 0, backup_buf);
      local.restore_load_seconds += std::chrono::duration<double>(Clock::now() - tb).count();
      ++local.experts_loaded;
    } else if (t.src_rank == me) {
      recv_status = store_->stage_from_slot(*id, t.src_slot);
    } else {
      recv_status = receive(round, i, t, *id, aborted);
    }
    if (!recv_status.ok())
      recv_status = recv_status.with_context(str_cat("round ", round, ", batch ", batch, ": receiving layer ", t.layer,
                                                     " expert ", t.expert, " from ",
                                                     t.src_rank == kFromBackup ? std::string("the backup")
                                                                               : str_cat("rank ", t.src_rank),
                                                     " into slot ", t.dst_slot));
  }
  sender.join();
  if (stats) *stats = local;
  OMNI_RETURN_IF_ERROR(recv_status.with_context(str_cat("rank ", me)));
  return send_status.with_context(str_cat("rank ", me));
}

}  // namespace omni
