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
// How the contract of transport.h is met on MPI: MpiTransport is a channel
// of the transports' message engine (src/transport/message_engine.h) over a
// wire of Open MPI point-to-point messages.
//   - Threads: one progress thread per process makes every MPI call of the
//     transports (on a private duplicate of MPI_COMM_WORLD, made once by the
//     first create_world()); callers' threads only wait for it. So no two
//     threads of the transport are ever inside MPI at once, and nothing is
//     ever cancelled inside MPI. MPI is still initialised with
//     MPI_THREAD_MULTIPLE so that the application may use MPI itself.
//   - No communicator is created after the first create_world(): duplicate()
//     and every later create_world() open a channel of the engine (an id
//     every rank derives alike), and collectives run over point-to-point
//     messages among the ranks not marked failed. Nothing depends on which
//     thread reaches MPI first.
//   - Point-to-point messages: a rendezvous (header, claim, data) that the
//     sender's deadline settles; see message_engine.h.
//
// Limits (plain MPI has no peer-failure handling; UcxTransport has):
//   - A process that dies makes mpirun abort the whole job: "failed" here
//     means a rank that stopped taking part (hung, or declared failed by the
//     runtime's heartbeat) while its process is still alive.
//   - If a peer process stops in the middle of a committed transfer, MPI
//     cannot take the send back: after the sender's deadline plus 5 s the
//     call returns DEADLINE_EXCEEDED and the buffer stays lent to MPI; it must
//     then outlive the transport. finalize() with such a send pending may
//     block in MPI_Finalize until the peer resumes.
//
// Threads: as in transport.h. init() and finalize() from the main thread,
// before any transport exists / after every transport is destroyed.
#pragma once

#include <memory>

#include "omniplacement/transport/forwarding_transport.h"

namespace omni {

class MpiTransport final : public ForwardingTransport {
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

  std::string_view backend() const override { return "mpi"; }

 private:
  // channel: a channel of the process's MPI message engine.
  explicit MpiTransport(std::unique_ptr<Transport> channel);
};

}  // namespace omni
