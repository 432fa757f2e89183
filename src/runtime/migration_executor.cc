#include "omniplacement/runtime/migration_executor.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "omniplacement/core/str_cat.h"

// xxHash (libxxhash-dev), compiled inline here: no library to link or export.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace omni {

namespace {

using Clock = std::chrono::steady_clock;

// Header of every weight message: identifies the transfer so that a message
// left over from an aborted round (same peer and tag) is recognised and
// dropped, and carries the sender's XXH3-64 of the payload (the weights).
struct WeightHeader {
  int64_t round;
  int64_t layer;
  int64_t expert;
  int64_t dst_rank;
  int64_t dst_slot;
  uint64_t checksum;
};

uint64_t payload_checksum(std::span<const std::byte> payload) { return XXH3_64bits(payload.data(), payload.size()); }

std::string hex(uint64_t v) {
  char out[19];
  std::snprintf(out, sizeof out, "0x%016llx", static_cast<unsigned long long>(v));
  return out;
}

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
    WeightHeader h{round, t.layer, t.expert, t.dst_rank, t.dst_slot, 0};
    buf.resize(sizeof(h) + static_cast<size_t>(t.bytes));
    const std::span<std::byte> payload = std::span(buf).subspan(sizeof(h));
    Status s = store_->read_slot(t.layer, t.src_slot, 0, payload);
    h.checksum = payload_checksum(payload);
    std::memcpy(buf.data(), &h, sizeof(h));
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
    // The payload as the sender read it, or the step fails (nothing corrupted is ever staged, so never committed).
    const std::span<const std::byte> payload = std::span<const std::byte>(*msg).subspan(sizeof(h));
    if (const uint64_t got = payload_checksum(payload); got != h.checksum)
      return data_loss_error(str_cat("the weights of layer ", t.layer, " expert ", t.expert, " from rank ", t.src_rank,
                                     " were corrupted in transit: ", payload.size(), " bytes hash to ", hex(got),
                                     ", the sender's checksum (XXH3-64) is ", hex(h.checksum)));
    return store_->write_staging(id, 0, payload);
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
  // Once a receive failed the step is lost on this rank: the sender stops
  // too, so that this rank reports the failure (and the round aborts) without
  // waiting for peers that may be waiting for this rank.
  std::atomic<bool> receive_failed{false};
  const std::function<bool()> send_aborted = [&] { return receive_failed.load() || aborted(); };
  std::thread sender([&] { send_status = send_all(round, batch, transfers, send_aborted); });
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
  if (!recv_status.ok()) receive_failed = true;
  sender.join();
  if (stats) *stats = local;
  OMNI_RETURN_IF_ERROR(recv_status.with_context(str_cat("rank ", me)));
  return send_status.with_context(str_cat("rank ", me));
}

}  // namespace omni
