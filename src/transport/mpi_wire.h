// MpiWire: a Wire (wire.h) over Open MPI point-to-point messages on a private
// duplicate of MPI_COMM_WORLD. Internal to the transport module; built only
// with OMNI_HAVE_MPI.
//
// Every MPI call of the transports is made here, by the engine's progress
// thread: no two threads of the transport ever call MPI at once, and nothing
// is cancelled (MPI_Cancel of receives raced with other threads' MPI calls
// in Open MPI 4.1 and crashed). Incoming messages are found with
// MPI_Improbe/MPI_Mrecv, so no receive is ever posted that might need
// cancelling; a payload too large to travel with its frame follows it in
// chunks (at most 1 GB each, MPI counts are int) received in order.
//
// Limits (plain MPI has no peer-failure handling): a dead peer is never
// reported (on_peer_lost is not called), and a send to a peer that stopped
// taking part never completes: drop_peer() cannot take it back.
#pragma once

#include <memory>

#include "wire.h"

namespace omni::transport_internal {

// MPI must be initialised. Duplicates MPI_COMM_WORLD (collective: every
// process calls it, in the same order as its other communicator calls).
StatusOr<std::unique_ptr<Wire>> make_mpi_wire();

}  // namespace omni::transport_internal
