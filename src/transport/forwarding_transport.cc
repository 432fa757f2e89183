#include "omniplacement/transport/forwarding_transport.h"

#include <utility>

namespace omni {

ForwardingTransport::ForwardingTransport(std::unique_ptr<Transport> inner)
    : owned_(std::move(inner)), inner_(owned_.get()) {}
ForwardingTransport::ForwardingTransport(Transport& inner) : inner_(&inner) {}
ForwardingTransport::~ForwardingTransport() = default;

RankId ForwardingTransport::rank() const { return inner_->rank(); }
int32_t ForwardingTransport::size() const { return inner_->size(); }
Status ForwardingTransport::barrier(Timeout timeout) { return inner_->barrier(timeout); }
Status ForwardingTransport::all_reduce(std::span<int64_t> data, ReduceOp op, Timeout timeout) {
  return inner_->all_reduce(data, op, timeout);
}
Status ForwardingTransport::all_reduce(std::span<double> data, ReduceOp op, Timeout timeout) {
  return inner_->all_reduce(data, op, timeout);
}
Status ForwardingTransport::all_gather(std::span<const std::byte> send, std::span<std::byte> recv, Timeout timeout) {
  return inner_->all_gather(send, recv, timeout);
}
Status ForwardingTransport::broadcast(std::span<std::byte> data, RankId root, Timeout timeout) {
  return inner_->broadcast(data, root, timeout);
}
StatusOr<std::unique_ptr<Transport>> ForwardingTransport::duplicate(Timeout timeout) {
  return inner_->duplicate(timeout);
}
Status ForwardingTransport::send(RankId dst, int32_t tag, std::span<const std::byte> data, Timeout timeout) {
  return inner_->send(dst, tag, data, timeout);
}
Status ForwardingTransport::recv(RankId src, int32_t tag, std::span<std::byte> data, Timeout timeout) {
  return inner_->recv(src, tag, data, timeout);
}
StatusOr<std::vector<std::byte>> ForwardingTransport::recv_message(RankId src, int32_t tag, Timeout timeout) {
  return inner_->recv_message(src, tag, timeout);
}
Status ForwardingTransport::mark_failed(RankId r) { return inner_->mark_failed(r); }
std::vector<RankId> ForwardingTransport::failed_ranks() const { return inner_->failed_ranks(); }
Status ForwardingTransport::fence_status() const { return inner_->fence_status(); }
void ForwardingTransport::fence_self(std::string_view why) { inner_->fence_self(why); }
std::chrono::steady_clock::time_point ForwardingTransport::last_arrival(RankId r) const {
  return inner_->last_arrival(r);
}

}  // namespace omni
