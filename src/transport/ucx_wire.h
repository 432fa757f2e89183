// UcxWire: a Wire (wire.h) over UCX tag messages (UCP) with peer-failure
// error handling. Internal to the transport module; built only with
// OMNI_HAVE_UCX.
//
// Every endpoint is created with UCP_ERR_HANDLING_MODE_PEER: when a peer's
// process dies, its endpoint reports an error (on_peer_lost) and every send
// to it completes with an error instead of hanging; drop_peer() force-closes
// an endpoint, which completes its outstanding sends (UCS_ERR_CANCELED) so
// that no caller's buffer stays lent to a peer that stopped. UCX 1.13 offers
// peer-failure handling on its network transports only (TCP here, InfiniBand
// RC/DC across hosts), not on shared memory: processes on one host talk over
// loopback TCP.
//
// UCX's own keepalive is turned off (UCX_KEEPALIVE_INTERVAL=inf unless the
// environment sets it): the FailureDetector's heartbeats, with their
// configured timeout, decide when a silent peer is failed.
//
// Messages are tagged with the sender's rank (and a control-lane bit) and
// found with ucp_tag_probe_nb, so the receiver learns their size before it
// allocates; frame and payload travel as one message (an iov of two
// buffers, no copy). Each peer has two endpoints: messages with payloads of
// at most kSmallPayloadBytes (wire.h: protocol frames, heartbeats, small
// collectives) on one, larger ones on the other, so that a heartbeat is not
// held behind a large transfer on the same TCP connection.
// Idle waits block in epoll on the worker's event descriptor (no polling).
#pragma once

#include <memory>
#include <vector>

#include "wire.h"

namespace omni::transport_internal {

// A UCP context and worker, before the endpoints exist: its address is
// exchanged by the bootstrap (ucx_transport.cc), then connect() makes the wire.
class UcxWorker {
 public:
  virtual ~UcxWorker() = default;
  // The worker's address (opaque bytes to hand to every other rank).
  virtual std::vector<std::byte> address() const = 0;
  // Endpoints to every other rank: addresses[r] is rank r's address.
  // Consumes the worker.
  static StatusOr<std::unique_ptr<Wire>> connect(std::unique_ptr<UcxWorker> worker, RankId rank,
                                                 const std::vector<std::vector<std::byte>>& addresses);
};

StatusOr<std::unique_ptr<UcxWorker>> make_ucx_worker();

}  // namespace omni::transport_internal
