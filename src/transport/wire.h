// Wire: how the bytes of one process reach another, underneath the message
// engine (message_engine.h) that gives MpiTransport and UcxTransport their
// protocol. A wire moves whole messages (a fixed-size frame plus a payload of
// any size) between the ranks of one world, in order per peer, and reports
// completions and lost peers. It knows nothing of tags, channels, collectives
// or timeouts. Internal to the transport module.
//
// Backends: MpiWire (mpi_wire.h, Open MPI point-to-point) and UcxWire
// (ucx_wire.h, UCX tag messages with peer-failure error handling).
//
// Threads: every method but wake() is called by the engine's progress thread
// only; the wire may assume that nothing else in the process uses its handles
// concurrently. wake() may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"

namespace omni::transport_internal {

// Every message starts with a frame of exactly this many bytes (the engine's
// Frame); the wire carries it as opaque bytes.
inline constexpr size_t kFrameBytes = 64;

// Payloads of at most this many bytes are small: the engine sends them with
// their header (no claim round trip), and UcxWire carries them on its control
// lane, apart from larger ones (see Wire::post).
inline constexpr size_t kSmallPayloadBytes = 4096;

// An allocator whose resize() leaves new bytes uninitialised: every buffer
// made with it is written whole before it is read (a wire receives into it,
// the engine copies into it). A receive buffer of several MiB is then not
// zero-filled on the progress thread: on a VM each fresh page costs a fault
// (about 12 us here), and zero-filling an 8 MiB contribution there held every
// heartbeat back for 50-300 ms, past a 100 ms failure timeout.
template <class T>
struct UninitAllocator : std::allocator<T> {
  using value_type = T;
  UninitAllocator() = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  friend bool operator==(const UninitAllocator&, const UninitAllocator&) noexcept { return true; }
};

// The bytes of a message's payload, as a wire delivers them and the engine
// keeps and sends them.
using Payload = std::vector<std::byte, UninitAllocator<std::byte>>;

// What a wire reports from progress(). Called on the progress thread.
class WireSink {
 public:
  virtual ~WireSink() = default;
  // A whole message from src: its frame (kFrameBytes) and its payload.
  virtual void on_message(RankId src, std::span<const std::byte> frame, Payload payload) = 0;
  // The message posted with `token` has left its buffers (OK) or was dropped
  // (UNAVAILABLE: peer lost or dropped). Its buffers are free again.
  virtual void on_sent(uint64_t token, Status status) = 0;
  // The connection to peer broke (its process died, its host went away).
  // Reported once per peer; later posts to it complete with UNAVAILABLE.
  virtual void on_peer_lost(RankId peer, Status why) = 0;
  // A message from src has started to arrive (its size is known; its bytes
  // may still be on their way, and it is delivered by on_message only after
  // the messages from src before it). Evidence that src is alive.
  virtual void on_arrival(RankId src) = 0;
};

class Wire {
 public:
  virtual ~Wire() = default;

  virtual RankId rank() const = 0;
  virtual int32_t size() const = 0;
  // "mpi" or "ucx".
  virtual std::string_view name() const = 0;

  // Sends frame (kFrameBytes) and payload to peer (peer != rank()). Both must
  // stay valid until on_sent(token). Messages posted to one peer with
  // payloads of at most kSmallPayloadBytes arrive in the order they were posted, and
  // so do those with larger payloads; a small message may overtake a large
  // one posted before it (UcxWire sends the two on separate connections so
  // that frames and heartbeats do not wait behind bulk data). The engine
  // relies on neither kind of order across the two: a message's data follows
  // its claim, and collective contributions carry their sequence number.
  virtual void post(RankId peer, uint64_t token, std::span<const std::byte> frame,
                    std::span<const std::byte> payload) = 0;
  // Makes progress and reports what completed to sink. Returns whether
  // anything happened (the caller backs off when nothing did).
  virtual bool progress(WireSink& sink) = 0;
  // Blocks until the wire may have news, wake() was called or max passed.
  virtual void wait(std::chrono::microseconds max) = 0;
  // Gives up on peer: the sends in flight to it complete (on_sent with
  // UNAVAILABLE) if the backend can take them back, and nothing more is
  // exchanged with it. Returns whether in-flight sends were taken back (UCX:
  // yes; MPI cannot cancel a send whose receiver stopped: no).
  virtual bool drop_peer(RankId peer) = 0;
  // Any thread: makes a wait() in progress return.
  virtual void wake() = 0;
};

}  // namespace omni::transport_internal
