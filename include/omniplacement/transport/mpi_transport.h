// MpiTransport: the ranks of a group are MPI processes (Open MPI), on one
// host or many.
//
// Built when the project is configured with -DOMNI_WITH_MPI=ON (scripts/
// common.sh turns it on); otherwise every factory returns UNIMPLEMENTED, so
// code that names MpiTransport compiles either way. This header does not
// include <mpi.h>.
//
//   int main(int argc, char** argv) {
//     if (!omni::MpiTransport::init(&argc, &argv).ok()) return 1;
//     {
//       auto t = omni::MpiTransport::create_world(std::chrono::seconds(30));
//       if (!t.ok()) { std::cerr << t.status() << "\n"; return 1; }
//       std::vector<int64_t> v = {(*t)->rank()};
//       (void)(*t)->all_reduce(std::span<int64_t>(v), omni::ReduceOp::kSum, std::chrono::seconds(5));
//     }  // transports are destroyed before finalize
//     return omni::MpiTransport::finalize().ok() ? 0 : 1;
//   }
//   // mpirun -np 4 ./app
//
// How the contract of transport.h is met on MPI:
//   - Threads: MPI is initialised with MPI_THREAD_MULTIPLE (Debian 12's Open
//     MPI 4.1.4 provides it); init() fails with FAILED_PRECONDITION if the
//     library offers less. Every wait polls non-blocking requests
//     (MPI_Test*), so any number of threads may wait at once.
//   - Each Transport owns private communicators (duplicates of its parent):
//     one for message headers, one for replies, one for withdrawals, one for message
//     data, one for agreeing on failures and one for collectives. Collectives
//     run as MPI_I* non-blocking collectives on copies of the caller's
//     buffers, so that a collective abandoned at its deadline keeps only its
//     own copy, never the caller's memory.
//   - Point-to-point messages use a rendezvous of small control messages:
//     header (size) -> clear-to-send (the receiver has posted every chunk
//     receive, 16 MB chunks) -> data, or a withdrawal when the sender's
//     deadline passed before the clear-to-send arrived. A timeout before the
//     rendezvous completes leaves nothing behind: the next message on the same
//     (peer, tag) is delivered normally. Once both sides are committed the
//     transfer finishes even past the deadline (the receiver waits at most
//     until the sender's own deadline for its decision, then for the bytes at
//     memory or network speed).
//   - Failed ranks: survivors agree on the failed set by exchanging it among
//     themselves (bounded by the timeout; a disagreement is FAILED_PRECONDITION)
//     and then build a communicator of the survivors with
//     MPI_Comm_create_group, which involves only them.
//
// Limits (MPI without fault tolerance extensions, which Debian does not ship):
//   - A process that dies makes mpirun abort the whole job: "failed" here
//     means a rank that stopped taking part (hung, or declared failed by the
//     runtime's heartbeat), whose process is still alive.
//   - A collective that timed out stays pending inside MPI until the missing
//     rank joins it; its buffer copies are kept until then (freed by a later
//     call or leaked at destruction if the rank never joins). Finalizing MPI
//     with such a collective pending is erroneous MPI: a group with a rank
//     that really hung should end with the job, not with MPI_Finalize.
//   - If a peer process stops calling MPI in the middle of a committed
//     transfer (frozen, not dead), Open MPI cannot cancel the posted sends: after
//     the sender's deadline plus a 5 s grace the call returns DEADLINE_EXCEEDED
//     and the message buffer stays registered with MPI; it must then outlive
//     the transport. This cannot happen with a live or a dead peer.
//   - Building the survivors' communicator (MPI_Comm_create_group) is a
//     blocking MPI call. It starts only once every survivor has confirmed the
//     same failed set, so it waits only if a survivor's deadline passes
//     between confirming and joining; that survivor's next collective joins it.
//   - A single collective contribution is at most INT_MAX bytes (MPI counts).
//
// Threads: as in transport.h. init() and finalize() from the main thread,
// before any transport exists / after every transport is destroyed.
#pragma once

#include <memory>
#include <mutex>

#include "omniplacement/transport/transport.h"

namespace omni {

class MpiTransport final : public Transport {
 public:
  // Initialises MPI with MPI_THREAD_MULTIPLE unless it already is (then
  // checks the thread level). argc/argv may be null. Idempotent.
  static Status init(int* argc, char*** argv);
  // MPI_Finalize, if init() initialised MPI and nobody finalised it yet.
  static Status finalize();
  // Whether this build has MPI (OMNI_WITH_MPI).
  static bool available();

  // A transport over every process of MPI_COMM_WORLD (rank = world rank).
  // Collective over MPI_COMM_WORLD. Calls init(nullptr, nullptr) if needed.
  static StatusOr<std::unique_ptr<MpiTransport>> create_world(Timeout timeout);

  ~MpiTransport() override;

  RankId rank() const override;
  int32_t size() const override;
  std::string_view backend() const override { return "mpi"; }

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

  struct Impl;  // defined in mpi_transport.cc (holds the MPI handles)

 private:
  explicit MpiTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::mutex collective_mu_;  // serialises this transport's collectives
};

}  // namespace omni
