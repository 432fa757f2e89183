#include "channel_transport.h"

#include <cstring>

#include "omniplacement/core/str_cat.h"
#include "transport_util.h"

namespace omni::transport_internal {

StatusOr<std::unique_ptr<ChannelTransport>> ChannelTransport::open(std::shared_ptr<MessageEngine> engine, uint64_t id,
                                                                   std::vector<char> failed) {
  OMNI_ASSIGN_OR_RETURN(std::shared_ptr<Channel> channel, engine->open_channel(id, std::move(failed)));
  return std::unique_ptr<ChannelTransport>(new ChannelTransport(std::move(engine), std::move(channel)));
}

ChannelTransport::ChannelTransport(std::shared_ptr<MessageEngine> engine, std::shared_ptr<Channel> channel)
    : engine_(std::move(engine)), channel_(std::move(channel)) {}

ChannelTransport::~ChannelTransport() { engine_->close_channel(channel_); }

// --- Collectives ---------------------------------------------------------------

Status ChannelTransport::barrier(Timeout timeout) {
  std::lock_guard<std::mutex> lock(collective_mu_);
  return engine_->collective(*channel_, {CollKind::kBarrier, 0, 0}, {}, true, MessageEngine::kFromAll, timeout)
      .status();
}

template <typename T>
Status ChannelTransport::all_reduce_impl(std::span<T> data, ReduceOp op, Timeout timeout) {
  constexpr bool kInt = std::is_same_v<T, int64_t>;
  const CollMeta meta{kInt ? CollKind::kAllReduceInt64 : CollKind::kAllReduceDouble, static_cast<int32_t>(op),
                      data.size_bytes()};
  std::lock_guard<std::mutex> lock(collective_mu_);
  OMNI_ASSIGN_OR_RETURN(Contributions c, engine_->collective(*channel_, meta, std::as_bytes(data), true,
                                                             MessageEngine::kFromAll, timeout));
  // In rank order, this rank's own values at its place: every rank computes
  // bitwise the same result.
  const std::vector<T> mine(data.begin(), data.end());
  std::vector<T> theirs(data.size());
  bool first = true;
  for (RankId r = 0; r < size(); ++r) {
    std::span<const T> values;
    if (r == rank()) {
      values = mine;
    } else {
      if (!c.by_rank[static_cast<size_t>(r)]) continue;  // failed rank
      const std::span<const std::byte> bytes = c.bytes(r);
      if (!theirs.empty()) std::memcpy(theirs.data(), bytes.data(), data.size_bytes());
      values = theirs;
    }
    if (first) {
      std::copy(values.begin(), values.end(), data.begin());
      first = false;
    } else {
      reduce_into(data, values, op);
    }
  }
  if constexpr (kInt) {
    if (op == ReduceOp::kSum && any_saturated(std::span<const int64_t>(data))) {
      return out_of_range_error(str_cat(where(*this), ": all_reduce(int64, sum) of ", data.size(),
                                        " elements overflowed int64; overflowed elements are saturated"));
    }
  }
  return ok_status();
}

Status ChannelTransport::all_reduce(std::span<int64_t> data, ReduceOp op, Timeout timeout) {
  return all_reduce_impl(data, op, timeout);
}

Status ChannelTransport::all_reduce(std::span<double> data, ReduceOp op, Timeout timeout) {
  return all_reduce_impl(data, op, timeout);
}

Status ChannelTransport::all_gather(std::span<const std::byte> send, std::span<std::byte> recv, Timeout timeout) {
  const size_t n = send.size();
  if (recv.size() != n * static_cast<size_t>(size())) {
    return invalid_argument_error(str_cat(where(*this), ": all_gather recv has ", recv.size(),
                                          " bytes; it must have size() * send.size() = ", size(), " * ", n));
  }
  std::lock_guard<std::mutex> lock(collective_mu_);
  OMNI_ASSIGN_OR_RETURN(Contributions c, engine_->collective(*channel_, {CollKind::kAllGather, 0, n}, send, true,
                                                             MessageEngine::kFromAll, timeout));
  if (n == 0) return ok_status();
  for (RankId r = 0; r < size(); ++r) {
    std::byte* slot = recv.data() + static_cast<size_t>(r) * n;
    if (r == rank()) {
      std::memcpy(slot, send.data(), n);
    } else if (!c.by_rank[static_cast<size_t>(r)]) {
      std::memset(slot, 0, n);  // failed rank
    } else {
      std::memcpy(slot, c.bytes(r).data(), n);
    }
  }
  return ok_status();
}

Status ChannelTransport::broadcast(std::span<std::byte> data, RankId root, Timeout timeout) {
  OMNI_RETURN_IF_ERROR(check_peer(*this, root, "broadcast root", /*allow_self=*/true));
  const CollMeta meta{CollKind::kBroadcast, root, data.size()};
  std::lock_guard<std::mutex> lock(collective_mu_);
  const bool is_root = root == rank();
  // Every rank contributes (the root its data, the others nothing but their
  // failed set) and waits for every live rank, the root included: so the
  // root learns of a disagreement on the failed set as the others do, and
  // every survivor gets the same outcome (a root that returned at once while
  // the others failed would leave them a collective behind).
  OMNI_ASSIGN_OR_RETURN(Contributions c,
                        engine_->collective(*channel_, meta, is_root ? std::span<const std::byte>(data)
                                                                     : std::span<const std::byte>(),
                                            /*send=*/true, MessageEngine::kFromAll, timeout));
  if (!is_root && !data.empty()) {
    const std::span<const std::byte> bytes = c.bytes(root);
    if (bytes.size() != data.size()) {
      return invalid_argument_error(str_cat(where(*this), ": broadcast from rank ", root, " carried ", bytes.size(),
                                            " bytes, this rank expected ", data.size()));
    }
    std::memcpy(data.data(), bytes.data(), data.size());
  }
  return ok_status();
}

StatusOr<std::unique_ptr<Transport>> ChannelTransport::duplicate(Timeout timeout) {
  std::lock_guard<std::mutex> lock(collective_mu_);
  OMNI_RETURN_IF_ERROR(engine_->fence_status(*channel_));
  // Every rank numbers its duplicates of this channel alike, so the new
  // channel has the same id everywhere; it is opened before the agreement so
  // that no early message for it is lost.
  const uint64_t id = engine_->next_child_id(*channel_);
  OMNI_ASSIGN_OR_RETURN(std::unique_ptr<ChannelTransport> child, open(engine_, id, engine_->failed(*channel_)));
  OMNI_RETURN_IF_ERROR(
      engine_->collective(*channel_, {CollKind::kDuplicate, 0, 0}, {}, true, MessageEngine::kFromAll, timeout)
          .status()
          .with_context("duplicate"));
  return std::unique_ptr<Transport>(std::move(child));
}

// --- Point-to-point ------------------------------------------------------------

Status ChannelTransport::send(RankId dst, int32_t tag, std::span<const std::byte> data, Timeout timeout) {
  OMNI_RETURN_IF_ERROR(check_peer(*this, dst, "send to", /*allow_self=*/false));
  OMNI_RETURN_IF_ERROR(check_tag(*this, tag));
  return engine_->send(*channel_, dst, tag, data, timeout);
}

Status ChannelTransport::recv(RankId src, int32_t tag, std::span<std::byte> data, Timeout timeout) {
  OMNI_RETURN_IF_ERROR(check_peer(*this, src, "recv from", /*allow_self=*/false));
  OMNI_RETURN_IF_ERROR(check_tag(*this, tag));
  return engine_->receive(*channel_, src, tag, data, nullptr, timeout);
}

StatusOr<std::vector<std::byte>> ChannelTransport::recv_message(RankId src, int32_t tag, Timeout timeout) {
  OMNI_RETURN_IF_ERROR(check_peer(*this, src, "recv from", /*allow_self=*/false));
  OMNI_RETURN_IF_ERROR(check_tag(*this, tag));
  std::vector<std::byte> message;
  OMNI_RETURN_IF_ERROR(engine_->receive(*channel_, src, tag, {}, &message, timeout));
  return message;
}

// --- Failures --------------------------------------------------------------------

Status ChannelTransport::mark_failed(RankId r) {
  if (r < 0 || r >= size()) {
    return invalid_argument_error(
        str_cat(where(*this), ": mark_failed rank ", r, " is out of range; valid ranks are 0..", size() - 1));
  }
  if (r == rank()) return invalid_argument_error(str_cat(where(*this), ": mark_failed of this rank itself"));
  return engine_->mark_failed(*channel_, r);
}

std::vector<RankId> ChannelTransport::failed_ranks() const {
  const std::vector<char> failed = engine_->failed(*channel_);
  std::vector<RankId> out;
  for (RankId r = 0; r < size(); ++r) {
    if (failed[static_cast<size_t>(r)]) out.push_back(r);
  }
  return out;
}

Status ChannelTransport::fence_status() const { return engine_->fence_status(*channel_); }

void ChannelTransport::fence_self(std::string_view why) { engine_->fence_process(why); }

std::chrono::steady_clock::time_point ChannelTransport::last_arrival(RankId r) const {
  return engine_->last_arrival(r);
}

}  // namespace omni::transport_internal
