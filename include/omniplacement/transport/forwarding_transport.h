// ForwardingTransport: a Transport that hands every call to another one it
// owns. The process transports (MpiTransport, UcxTransport) are channels of
// the transports' message engine (src/transport/message_engine.h) behind a
// public type of their own; this class holds that channel, so each of them
// declares only what differs: its factories and backend().
//
// A subclass may also override a few calls to change what passes through
// (the runtime's tests wrap a transport in a link that corrupts data in
// flight this way) and reach the inner transport with inner().
//
// Threads and errors: exactly those of the inner transport. Every call is
// forwarded unchanged; nothing is added, retried or translated. Ownership:
// the inner transport is either owned (destroyed with this object) or
// borrowed (it must outlive this object), as the constructor says.
#pragma once

#include <memory>

#include "omniplacement/transport/transport.h"

namespace omni {

class ForwardingTransport : public Transport {
 public:
  ~ForwardingTransport() override;

  RankId rank() const override;
  int32_t size() const override;

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

 protected:
  // Owns inner, which must not be null.
  explicit ForwardingTransport(std::unique_ptr<Transport> inner);
  // Borrows inner, which must outlive this object.
  explicit ForwardingTransport(Transport& inner);

  Transport& inner() const { return *inner_; }

 private:
  std::unique_ptr<Transport> owned_;
  Transport* inner_;
};

}  // namespace omni
