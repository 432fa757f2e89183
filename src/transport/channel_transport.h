// ChannelTransport: the Transport of a process-based backend, one channel of
// a MessageEngine (message_engine.h). MpiTransport and UcxTransport hand out
// these (their world transports forward to one); duplicate() makes another
// channel of the same engine. Internal to the transport module.
//
// Collectives are built from the engine's contribution exchange: every live
// rank's contribution reaches every other live rank, and each rank combines
// them itself in rank order (so sums of doubles agree bitwise everywhere).
//
// Threads: as in transport.h.
#pragma once

#include <memory>
#include <mutex>

#include "omniplacement/transport/transport.h"
#include "message_engine.h"

namespace omni::transport_internal {

class ChannelTransport final : public Transport {
 public:
  // Opens channel id on engine with the given failed set.
  static StatusOr<std::unique_ptr<ChannelTransport>> open(std::shared_ptr<MessageEngine> engine, uint64_t id,
                                                          std::vector<char> failed);
  ~ChannelTransport() override;

  RankId rank() const override { return engine_->rank(); }
  int32_t size() const override { return engine_->size(); }
  std::string_view backend() const override { return engine_->backend(); }

  Status barrier(Timeout timeout) override;
  Status all_reduce(std::span<int64_t> data, ReduceOp op, Timeout timeout) override;
  Status all_reduce(std::span<double> data, ReduceOp op, Timeout timeout) override;
  Status all_gather(std::span<const std::byte> send, std::span<std::byte> recv, Timeout timeout) override;
  Status broadcast(std::span<std::byte> data, RankId root, Timeout timeout) override;
  StatusOr<std::unique_ptr<Transport>> duplicate(Timeout timeout) override;

  Status send(RankId dst, int32_t tag, std::span<const std::byte> data, Timeout timeout) override;
  Status recv(RankId src, int32_t tag, std::span<std::byte> data, Timeout timeout) override;
  StatusOr<std::vector<std::byte>> recv_message(RankId src, int32_t tag, Timeout timeout) override;

  Status mark_failed(RankId r) override;
  std::vector<RankId> failed_ranks() const override;
  Status fence_status() const override;
  void fence_self(std::string_view why) override;
  std::chrono::steady_clock::time_point last_arrival(RankId r) const override;

  const MessageEngine& engine() const { return *engine_; }

 private:
  ChannelTransport(std::shared_ptr<MessageEngine> engine, std::shared_ptr<Channel> channel);

  template <typename T>
  Status all_reduce_impl(std::span<T> data, ReduceOp op, Timeout timeout);

  std::shared_ptr<MessageEngine> engine_;
  std::shared_ptr<Channel> channel_;
  std::mutex collective_mu_;  // one collective at a time on this channel
};

}  // namespace omni::transport_internal
