// UcxTransport: the ranks of a group are processes connected by UCX, on one
// host or many, and a dead peer is an error, never the end of the job.
//
// Built when the project is configured with -DOMNI_WITH_UCX=ON (the default
// when OMNI_WITH_MPI is on; Debian: libucx-dev); otherwise every factory
// returns UNIMPLEMENTED. This header does not include UCX or MPI headers.
//
//   int main(int argc, char** argv) {
//     // Under `mpirun --enable-recovery -np 4 ./app` (scripts/demo_mpi.sh has the flags).
//     if (!omni::UcxTransport::init(&argc, &argv, std::chrono::seconds(30)).ok()) return 1;
//     {
//       auto t = omni::UcxTransport::create_world(std::chrono::seconds(30));
//       if (!t.ok()) { std::cerr << t.status() << "\n"; return 1; }
//       std::vector<int64_t> v = {(*t)->rank()};
//       (void)(*t)->all_reduce(std::span<int64_t>(v), omni::ReduceOp::kSum, std::chrono::seconds(5));
//     }
//     return omni::UcxTransport::finalize().ok() ? 0 : 1;   // never blocks on a dead or stopped peer
//   }
//
// Launch and bootstrap. A real launcher starts the processes: mpirun (Open
// MPI) with --enable-recovery, so that the death of one process does not make
// mpirun kill the others. init() uses MPI only to exchange the UCX worker
// addresses (MPI_Allgather) while every process is healthy, connects to every
// peer, checks the connections with a barrier over UCX, and finalises MPI at
// once (when it initialised it). From then on MPI plays no part: a peer that
// dies or stops cannot make a survivor block in MPI (Open MPI's MPI_Finalize
// waits for every process; its point-to-point calls never report a dead peer).
//
// Why UCX (measured on this project's machine, Open MPI 4.1.4, UCX 1.13, see
// docs/BENCHMARKS.md): with UCP_ERR_HANDLING_MODE_PEER a SIGKILLed peer's
// endpoint reports an error to every survivor within 3-41 ms and sends to it
// complete with an error, the survivors go on and exit normally, and mpirun
// --enable-recovery returns 0. With Open MPI as the data plane a send to a
// killed peer neither completed nor failed within 5 s and MPI_Finalize then
// hung. The price: UCX 1.13 has peer-failure handling on its network
// transports only, so processes of one host talk over loopback TCP instead
// of shared memory.
//
// How the contract of transport.h is met: UcxTransport is a channel of the
// transports' message engine (src/transport/message_engine.h) over UCX tag
// messages: one progress thread per process makes every UCX call and sleeps
// in epoll when idle; collectives run over point-to-point contributions; a
// rendezvous settled by the sender's deadline makes every timeout clean.
// On top of transport.h:
//   - A peer whose process died: every call involving it returns UNAVAILABLE
//     ("the connection to rank r was lost") on every transport of this
//     process, whether or not it was marked failed yet; nothing waits for
//     it. The FailureDetector declares it failed at once.
//   - A peer that stopped (SIGSTOP, a hung host) looks alive to UCX: the
//     FailureDetector's heartbeats declare it failed, and mark_failed() fences
//     it (transport.h). A transfer to it that was already on the wire is taken
//     back (its connection is closed), so no caller's buffer stays lent.
//   - finalize() hands over what is queued for live peers (at most about 3 s),
//     then closes every connection without waiting for stopped peers.
//
// Threads: as in transport.h. init() and finalize() from the main thread,
// before any transport exists / after every transport is destroyed.
#pragma once

#include <memory>

#include "omniplacement/transport/forwarding_transport.h"

namespace omni {

class UcxTransport final : public ForwardingTransport {
 public:
  // Whether this build has UCX (OMNI_WITH_UCX).
  static bool available();
  // Bootstraps this process into the job (see above): collective over every
  // process the launcher started (MPI_COMM_WORLD). Initialises MPI if nobody
  // did (and then finalises it before returning). Idempotent.
  static Status init(int* argc, char*** argv, Timeout timeout);
  // Stops the progress thread and closes every connection; transports still
  // alive then return FAILED_PRECONDITION. Never blocks on a failed peer.
  static Status finalize();

  // A transport over every process of the job (rank = MPI world rank).
  // Collective: every process calls it, in the same order. Needs init().
  static StatusOr<std::unique_ptr<UcxTransport>> create_world(Timeout timeout);

  ~UcxTransport() override;

  std::string_view backend() const override { return "ucx"; }

 private:
  // channel: a channel of the process's UCX message engine.
  explicit UcxTransport(std::unique_ptr<Transport> channel);
};

}  // namespace omni
