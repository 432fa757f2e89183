// LocalTransport: the ranks of a group are threads of one process.
//
// A full backend, not a mock: tests, the demo and single-host deployments use
// it, and the conformance suite holds it to the same contract as MpiTransport.
// The ranks share one in-memory hub. A point-to-point message is copied once,
// by the receiver, straight from the sender's buffer while the sender waits,
// so a transfer runs at memcpy speed. Collectives copy each contribution once
// into the hub (so that a rank that times out may return while the others
// still read its contribution) and every rank reduces in rank order, which
// makes double sums bitwise identical on every rank.
//
//   std::vector<omni::Status> statuses = omni::LocalGroup::run(4, [](omni::Transport& t) {
//     return t.barrier(std::chrono::seconds(5));
//   });
//   // statuses[r] is rank r's result; all OK here.
//
//   // Or keep the transports and drive the ranks from threads of your own:
//   auto group = omni::LocalGroup::create(2);
//   omni::Transport& rank0 = group->transport(0);
//
// LocalGroup is the transport-level helper (threads and transports only); a
// cluster of ranks that each run a PlacementManager, weight store and failure
// detector is omni::LocalCluster (runtime/local_cluster.h), built on it.
//
// Threads: see transport.h. Any thread may drive any rank's transport as long
// as each transport's collectives come from one thread at a time.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "omniplacement/transport/transport.h"

namespace omni {

namespace transport_internal {
struct LocalHub;
}  // namespace transport_internal

class LocalTransport final : public Transport {
 public:
  // num_ranks transports sharing one hub; element r is rank r.
  // 1 <= num_ranks <= kMaxRanks.
  static StatusOr<std::vector<std::unique_ptr<LocalTransport>>> create_group(int32_t num_ranks);

  ~LocalTransport() override;

  RankId rank() const override { return rank_; }
  int32_t size() const override;
  std::string_view backend() const override { return "local"; }

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

 private:
  LocalTransport(std::shared_ptr<transport_internal::LocalHub> hub, RankId rank);

  template <typename T>
  Status all_reduce_impl(std::span<T> data, ReduceOp op, Timeout timeout);
  Status receive_into(RankId src, int32_t tag, std::span<std::byte> fixed, std::vector<std::byte>* grown,
                      Timeout timeout);

  std::shared_ptr<transport_internal::LocalHub> hub_;
  RankId rank_;
  // Serialises this rank's collectives and guards next_round_.
  std::mutex collective_mu_;
  uint64_t next_round_ = 0;
};

// A group of LocalTransports and a way to run one function per rank (a fresh
// thread per rank and run).
class LocalGroup {
 public:
  // 1 <= num_ranks <= kMaxRanks.
  static StatusOr<LocalGroup> create(int32_t num_ranks);

  // Runs fn(transport of rank r) on its own thread for every rank r, joins
  // them all and returns the statuses indexed by rank. An exception escaping
  // fn becomes that rank's INTERNAL status. num_ranks outside
  // [1, kMaxRanks] gives one INVALID_ARGUMENT status.
  static std::vector<Status> run(int32_t num_ranks, const std::function<Status(Transport&)>& fn);

  int32_t size() const { return static_cast<int32_t>(transports_.size()); }
  // 0 <= r < size(). The group owns the transport.
  Transport& transport(RankId r);
  // Runs fn on one thread per rank of this group (see the static run()).
  std::vector<Status> run(const std::function<Status(Transport&)>& fn);

 private:
  std::vector<std::unique_ptr<LocalTransport>> transports_;
};

}  // namespace omni
