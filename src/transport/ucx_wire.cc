#include "ucx_wire.h"

#if OMNI_HAVE_UCX

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>

#include "omniplacement/core/str_cat.h"
#include "deadline.h"

namespace omni::transport_internal {

namespace {

// Tags: the sender's rank in the low 32 bits; kTagControl marks the control lane.
constexpr ucp_tag_t kTagRankMask = 0xffffffffULL;
constexpr ucp_tag_t kTagControl = ucp_tag_t{1} << 62;

Status ucx_error(ucs_status_t s, const std::string& what) {
  return unavailable_error(str_cat(what, ": ", ucs_status_string(s)));
}

class UcxWorkerImpl final : public UcxWorker {
 public:
  ~UcxWorkerImpl() override {
    if (worker != nullptr) ucp_worker_destroy(worker);
    if (context != nullptr) ucp_cleanup(context);
  }
  std::vector<std::byte> address() const override {
    ucp_address_t* a = nullptr;
    size_t n = 0;
    if (ucp_worker_get_address(worker, &a, &n) != UCS_OK) return {};
    std::vector<std::byte> out(n);
    std::memcpy(out.data(), a, n);
    ucp_worker_release_address(worker, a);
    return out;
  }
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
};

class UcxWire final : public Wire {
 public:
  UcxWire(std::unique_ptr<UcxWorkerImpl> w, RankId rank, int32_t size)
      : w_(std::move(w)), rank_(rank), size_(size), incoming_(static_cast<size_t>(size) * kLanes) {
    for (RankId r = 0; r < size; ++r) {
      auto p = std::make_unique<Peer>();
      p->wire = this;
      p->rank = r;
      peers_.push_back(std::move(p));
    }
  }

  // How long teardown steps (flushes, force-closes, drains, cancels) progress
  // the worker before giving up on a peer that no longer answers.
  static constexpr std::chrono::milliseconds kTeardownWait{500};

  ~UcxWire() override {
    // Flush what is still queued towards live peers (a short while: a peer
    // that stopped never drains), then force-close every endpoint.
    std::vector<void*> flushes;
    for (auto& p : peers_) {
      for (ucp_ep_h ep : p->ep) {
        if (ep == nullptr) continue;
        ucp_request_param_t param{};
        void* r = ucp_ep_flush_nbx(ep, &param);
        if (r != nullptr && !UCS_PTR_IS_ERR(r)) flushes.push_back(r);
      }
    }
    progress_until(
        [&] {
          return std::all_of(flushes.begin(), flushes.end(), settled);
        },
        kTeardownWait);
    for (auto& p : peers_) close_ep(*p);
    for (void* r : flushes) ucp_request_free(r);
    // Messages that arrived after the engine stopped listening: received and
    // dropped, so that the worker is destroyed with an empty queue.
    for (;;) {
      ucp_tag_recv_info_t info;
      ucp_tag_message_h msg = ucp_tag_probe_nb(w_->worker, 0, 0, 1, &info);
      if (msg == nullptr) break;
      auto sink = std::make_unique_for_overwrite<std::byte[]>(info.length);  // written by UCX
      ucp_request_param_t param{};
      void* r = ucp_tag_msg_recv_nbx(w_->worker, sink.get(), info.length, msg, &param);
      if (r == nullptr || UCS_PTR_IS_ERR(r)) continue;
      const auto done = [r] { return settled(r); };
      if (!progress_until(done, kTeardownWait)) {
        // The sender stopped in the middle of it: cancelled; if UCX still
        // holds the buffer after that, it is leaked rather than freed under it.
        ucp_request_cancel(w_->worker, r);
        if (!progress_until(done, kTeardownWait)) (void)sink.release();
        ucp_request_free(r);
        break;
      }
      ucp_request_free(r);
    }
    // Receives still in progress (a large message from a peer that stopped
    // in the middle of it): cancelled, and progressed until UCX has called
    // back, before their buffers are freed. Freeing them first left UCX
    // writing into freed memory when the worker was destroyed (heap
    // corruption in a rank that resumed after a stall).
    for_each_recv([&](std::unique_ptr<RecvReq>& req) {
      if (!req->done) ucp_request_cancel(w_->worker, req->request);
    });
    const bool all_done = progress_until(
        [&] {
          bool done = true;
          for_each_recv([&](std::unique_ptr<RecvReq>& req) { done = done && req->done; });
          return done;
        },
        kTeardownWait);
    if (!all_done) {
      // UCX still holds some buffers: leak them rather than let it write into freed memory.
      for_each_recv([](std::unique_ptr<RecvReq>& req) {
        if (!req->done) (void)req.release();
      });
    }
    incoming_.clear();
    junk_.clear();
    if (epfd_ >= 0) ::close(epfd_);
    if (wakefd_ >= 0) ::close(wakefd_);
  }

  Status start(const std::vector<std::vector<std::byte>>& addresses) {
    for (RankId r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      for (int lane = 0; lane < kLanes; ++lane) {
        ucp_ep_params_t params{};
        params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                            UCP_EP_PARAM_FIELD_ERR_HANDLER;
        params.address = reinterpret_cast<const ucp_address_t*>(addresses[static_cast<size_t>(r)].data());
        params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
        params.err_handler.cb = &UcxWire::on_ep_error;
        params.err_handler.arg = peers_[static_cast<size_t>(r)].get();
        const ucs_status_t s = ucp_ep_create(w_->worker, &params, &peers_[static_cast<size_t>(r)]->ep[lane]);
        if (s != UCS_OK) return ucx_error(s, str_cat("rank ", rank_, " (ucx): ucp_ep_create to rank ", r));
      }
    }
    int fd = -1;
    const ucs_status_t s = ucp_worker_get_efd(w_->worker, &fd);
    if (s != UCS_OK) return ucx_error(s, "ucp_worker_get_efd");
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd_ < 0 || wakefd_ < 0) return internal_error("UcxWire: epoll_create1/eventfd failed");
    for (int f : {fd, wakefd_}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = f;
      if (epoll_ctl(epfd_, EPOLL_CTL_ADD, f, &ev) != 0) return internal_error("UcxWire: epoll_ctl failed");
    }
    return ok_status();
  }

  RankId rank() const override { return rank_; }
  int32_t size() const override { return size_; }
  std::string_view name() const override { return "ucx"; }

  void post(RankId peer, uint64_t token, std::span<const std::byte> frame,
            std::span<const std::byte> payload) override {
    Peer& p = *peers_[static_cast<size_t>(peer)];
    const int lane = payload.size() <= kSmallPayloadBytes ? kControlLane : kBulkLane;
    if (p.ep[lane] == nullptr) {
      done_.push_back({token, unavailable_error(str_cat("rank ", peer, " is unreachable"))});
      return;
    }
    auto* req = new SendReq;
    req->wire = this;
    req->token = token;
    req->iov[0] = {const_cast<std::byte*>(frame.data()), kFrameBytes};
    req->iov[1] = {const_cast<std::byte*>(payload.data()), payload.size()};
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
    param.cb.send = &UcxWire::on_send_done;
    param.user_data = req;
    param.datatype = ucp_dt_make_iov();
    const size_t count = payload.empty() ? 1 : 2;
    const ucp_tag_t tag = static_cast<ucp_tag_t>(rank_) | (lane == kControlLane ? kTagControl : 0);
    const ucs_status_ptr_t r = ucp_tag_send_nbx(p.ep[lane], req->iov, count, tag, &param);
    if (r == nullptr) {
      done_.push_back({token, ok_status()});
      delete req;
    } else if (UCS_PTR_IS_ERR(r)) {
      done_.push_back({token, ucx_error(UCS_PTR_STATUS(r), str_cat("send to rank ", peer))});
      delete req;
    }
  }

  bool progress(WireSink& sink) override {
    bool any = false;
    for (int k = 0; k < 64 && ucp_worker_progress(w_->worker) != 0; ++k) any = true;
    // New messages (their size known before a buffer is allocated).
    for (int k = 0; k < 64; ++k) {
      ucp_tag_recv_info_t info;
      ucp_tag_message_h msg = ucp_tag_probe_nb(w_->worker, 0, 0, 1, &info);
      if (msg == nullptr) break;
      any = true;
      auto req = std::make_unique<RecvReq>();
      req->src = static_cast<RankId>(info.sender_tag & kTagRankMask);
      req->lane = (info.sender_tag & kTagControl) != 0 ? kControlLane : kBulkLane;
      if (req->src >= 0 && req->src < size_) sink.on_arrival(req->src);
      const bool framed = info.length >= kFrameBytes;
      req->payload.resize(framed ? info.length - kFrameBytes : info.length);
      req->iov[0] = {req->frame.data(), framed ? kFrameBytes : 0};
      req->iov[1] = {req->payload.data(), req->payload.size()};
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
      param.cb.recv = &UcxWire::on_recv_done;
      param.user_data = req.get();
      param.datatype = ucp_dt_make_iov();
      const ucs_status_ptr_t r =
          ucp_tag_msg_recv_nbx(w_->worker, req->iov, req->payload.empty() ? 1 : 2, msg, &param);
      if (r == nullptr) {
        req->done = true;
      } else if (UCS_PTR_IS_ERR(r)) {
        req->done = true;
        req->status = UCS_PTR_STATUS(r);
      } else {
        req->request = r;  // freed by on_recv_done
      }
      req->valid = framed && req->src >= 0 && req->src < size_;
      if (req->valid) {
        incoming_[static_cast<size_t>(req->src) * kLanes + static_cast<size_t>(req->lane)].push_back(std::move(req));
      } else {
        junk_.push_back(std::move(req));  // not ours: received and dropped
      }
    }
    std::erase_if(junk_, [](const std::unique_ptr<RecvReq>& r) { return r->done; });
    for (size_t q = 0; q < incoming_.size(); ++q) {
      const auto src = static_cast<RankId>(q / kLanes);
      auto& queue = incoming_[q];
      while (!queue.empty() && queue.front()->done) {
        std::unique_ptr<RecvReq> req = std::move(queue.front());
        queue.pop_front();
        any = true;
        if (req->status == UCS_OK && peers_[static_cast<size_t>(src)]->ep[req->lane] != nullptr) {
          sink.on_message(src, req->frame, std::move(req->payload));
        }
      }
    }
    // Endpoints whose peer failed: close them (their sends complete with an
    // error), then report.
    while (!lost_.empty()) {
      const RankId r = lost_.front();
      lost_.pop_front();
      Peer& p = *peers_[static_cast<size_t>(r)];
      close_ep(p);
      sink.on_peer_lost(r, ucx_error(p.error, "UCX endpoint error"));
      any = true;
    }
    while (!done_.empty()) {
      auto [token, status] = std::move(done_.front());
      done_.pop_front();
      sink.on_sent(token, std::move(status));
      any = true;
    }
    return any;
  }

  void wait(std::chrono::microseconds max) override {
    if (ucp_worker_arm(w_->worker) == UCS_ERR_BUSY) return;  // events are pending
    epoll_event events[2];
    const auto ms = std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(max).count());
    epoll_wait(epfd_, events, 2, static_cast<int>(ms));
    uint64_t v = 0;
    while (::read(wakefd_, &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v))) {
    }
  }

  bool drop_peer(RankId peer) override {
    close_ep(*peers_[static_cast<size_t>(peer)]);
    return true;
  }

  void wake() override {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wakefd_, &one, sizeof(one));
  }

 private:
  // Two endpoints (two connections) per peer. Messages whose payload is at
  // most kSmallPayloadBytes (frames, headers, claims, heartbeats, small
  // collectives) take the control lane; larger ones the bulk lane. Each lane
  // keeps its order; a small message does not wait behind a large one
  // posted before it (over TCP a connection delivers its bytes in order: a
  // heartbeat posted behind an 8 MiB collective contribution waited up to
  // 240 ms for it with 4 processes on 2 cores, past a 100 ms timeout).
  static constexpr int kBulkLane = 0;
  static constexpr int kControlLane = 1;
  static constexpr int kLanes = 2;
  struct Peer {
    UcxWire* wire = nullptr;
    RankId rank = -1;
    std::array<ucp_ep_h, kLanes> ep{};  // [kBulkLane], [kControlLane]
    bool failed = false;
    ucs_status_t error = UCS_OK;
  };
  struct SendReq {
    UcxWire* wire = nullptr;
    uint64_t token = 0;
    ucp_dt_iov_t iov[2];
  };
  struct RecvReq {
    RankId src = -1;
    int lane = 0;
    bool valid = false;
    bool done = false;
    void* request = nullptr;  // UCX's request while the receive is in progress
    ucs_status_t status = UCS_OK;
    std::array<std::byte, kFrameBytes> frame{};
    Payload payload;  // not zero-filled: UCX writes it whole
    ucp_dt_iov_t iov[2];
  };

  static void on_send_done(void* request, ucs_status_t status, void* user_data) {
    auto* req = static_cast<SendReq*>(user_data);
    req->wire->done_.push_back(
        {req->token, status == UCS_OK ? ok_status() : ucx_error(status, "send")});
    ucp_request_free(request);
    delete req;
  }
  static void on_recv_done(void* request, ucs_status_t status, const ucp_tag_recv_info_t*, void* user_data) {
    auto* req = static_cast<RecvReq*>(user_data);
    req->done = true;
    req->status = status;
    ucp_request_free(request);
  }
  static void on_ep_error(void* arg, ucp_ep_h, ucs_status_t status) {
    auto* p = static_cast<Peer*>(arg);
    if (p->failed) return;
    p->failed = true;
    p->error = status;
    p->wire->lost_.push_back(p->rank);
  }

  // Whether a UCX request has completed (successfully, with an error, or cancelled).
  static bool settled(void* request) { return ucp_request_check_status(request) != UCS_INPROGRESS; }
  // Progresses the worker until done() holds or `limit` passed; returns done().
  template <class Done>
  bool progress_until(Done done, std::chrono::milliseconds limit) {
    const Deadline deadline(limit);
    while (!done() && !deadline.expired()) ucp_worker_progress(w_->worker);
    return done();
  }
  // Calls fn on every receive request the wire holds (incoming_ and junk_).
  template <class Fn>
  void for_each_recv(Fn fn) {
    for (auto& queue : incoming_)
      for (auto& req : queue) fn(req);
    for (auto& req : junk_) fn(req);
  }

  // Force-closes p's endpoints: their outstanding sends complete with
  // UCS_ERR_CANCELED. Waits at most kTeardownWait per endpoint.
  void close_ep(Peer& p) {
    for (ucp_ep_h& ep : p.ep) {
      if (ep == nullptr) continue;
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      param.flags = UCP_EP_CLOSE_FLAG_FORCE;
      void* r = ucp_ep_close_nbx(ep, &param);
      ep = nullptr;
      if (r == nullptr || UCS_PTR_IS_ERR(r)) continue;
      // A force-close completes locally; should it not, the request is handed
      // back to UCX (which finishes it on its own) instead of waiting forever.
      progress_until([r] { return settled(r); }, kTeardownWait);
      ucp_request_free(r);
    }
  }

  std::unique_ptr<UcxWorkerImpl> w_;
  const RankId rank_;
  const int32_t size_;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::vector<std::deque<std::unique_ptr<RecvReq>>> incoming_;  // [source * kLanes + lane], in arrival order
  std::vector<std::unique_ptr<RecvReq>> junk_;
  std::deque<std::pair<uint64_t, Status>> done_;
  std::deque<RankId> lost_;
  int epfd_ = -1;
  int wakefd_ = -1;
};

}  // namespace

StatusOr<std::unique_ptr<UcxWorker>> make_ucx_worker() {
  auto w = std::make_unique<UcxWorkerImpl>();
  ucp_config_t* config = nullptr;
  ucs_status_t s = ucp_config_read(nullptr, nullptr, &config);
  if (s != UCS_OK) return ucx_error(s, "ucp_config_read");
  // UCX's own keepalive would close the connection to a peer that stopped
  // for about a second, on a clock of its own; the FailureDetector's
  // heartbeats decide when a silent peer is failed. (A peer that dies still
  // breaks its connection at once.) UCX_KEEPALIVE_INTERVAL in the
  // environment overrides this.
  if (std::getenv("UCX_KEEPALIVE_INTERVAL") == nullptr) ucp_config_modify(config, "KEEPALIVE_INTERVAL", "inf");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
  s = ucp_init(&params, config, &w->context);
  ucp_config_release(config);
  if (s != UCS_OK) return ucx_error(s, "ucp_init");
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;  // made here, then used by the progress thread only
  s = ucp_worker_create(w->context, &wp, &w->worker);
  if (s != UCS_OK) return ucx_error(s, "ucp_worker_create");
  return std::unique_ptr<UcxWorker>(std::move(w));
}

StatusOr<std::unique_ptr<Wire>> UcxWorker::connect(std::unique_ptr<UcxWorker> worker, RankId rank,
                                                   const std::vector<std::vector<std::byte>>& addresses) {
  auto impl = std::unique_ptr<UcxWorkerImpl>(static_cast<UcxWorkerImpl*>(worker.release()));
  auto wire = std::make_unique<UcxWire>(std::move(impl), rank, static_cast<int32_t>(addresses.size()));
  OMNI_RETURN_IF_ERROR(wire->start(addresses));
  return std::unique_ptr<Wire>(std::move(wire));
}

}  // namespace omni::transport_internal

#else  // !OMNI_HAVE_UCX

namespace omni::transport_internal {

StatusOr<std::unique_ptr<UcxWorker>> make_ucx_worker() {
  return unimplemented_error("UcxTransport: this build has no UCX; configure with -DOMNI_WITH_UCX=ON "
                             "(Debian: libucx-dev)");
}

StatusOr<std::unique_ptr<Wire>> UcxWorker::connect(std::unique_ptr<UcxWorker>, RankId,
                                                   const std::vector<std::vector<std::byte>>&) {
  return unimplemented_error("UcxTransport: this build has no UCX");
}

}  // namespace omni::transport_internal

#endif  // OMNI_HAVE_UCX
