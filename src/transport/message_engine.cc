// The protocol of message_engine.h in one file (about 900 lines, above the
// project's ~800): the frame kinds, the per-channel state (Channel, kept out of
// the header so that no other file can touch it) and the handlers that change
// that state under the engine's one mutex belong together; split, each half
// would need the other's internals in a shared header. Sections: life cycle,
// channels, outgoing, incoming, point-to-point, collectives, failures.
#include "message_engine.h"

#include <algorithm>
#include <cstring>

#include "omniplacement/core/str_cat.h"

namespace omni::transport_internal {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMagic = 0x314e4d4f;  // "OMN1"

// Frame kinds and what their fields carry (channel is always the channel id).
enum FrameKind : uint16_t {
  kHeader = 1,      // sender -> receiver: seq, size, remaining_ns, tag; payload if flags & kInlineFlag
  kClaim = 2,       // receiver -> sender: seq, tag, arg = 1 accept / 0 reject, size = bytes the receiver expects
  kDecision = 3,    // sender -> receiver: seq, arg = Verdict
  kData = 4,        // sender -> receiver: seq; payload = the message (after an accepting claim)
  kWithdraw = 5,    // sender -> receiver: seq, tag (the sender gave up before any claim)
  kCollective = 6,  // seq = collective number, tag = CollKind, arg = op/root, arg2 = bytes; payload = failed set + data
  kFence = 7,       // payload = the declaring rank's failed set
  kRelayRequest = 8,  // seq = collective number, reserved = the failed rank whose contribution is missing
  kRelayReply = 9,    // the same, flags & kHasFlag: tag/arg/arg2 and payload are that rank's contribution
};
constexpr uint16_t kInlineFlag = 1;
constexpr uint16_t kHasFlag = 2;
constexpr size_t kRecentCollectives = 4;  // kept per channel to answer relay questions
enum Verdict : int32_t { kConfirm = 1, kRejectAck = 2, kWithdrawn = 3 };

Frame make_frame(FrameKind kind, uint64_t channel, uint64_t seq) {
  Frame f;
  f.magic = kMagic;
  f.kind = kind;
  f.channel = channel;
  f.seq = seq;
  return f;
}

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::string describe_set(std::span<const char> failed) {
  std::string s = "{";
  for (size_t r = 0; r < failed.size(); ++r) {
    if (failed[r]) s += str_cat(s.size() > 1 ? ", " : "", r);
  }
  return s + "}";
}

std::string coll_name(CollKind kind) {
  switch (kind) {
    case CollKind::kBarrier: return "barrier";
    case CollKind::kAllReduceInt64: return "all_reduce(int64)";
    case CollKind::kAllReduceDouble: return "all_reduce(double)";
    case CollKind::kAllGather: return "all_gather";
    case CollKind::kBroadcast: return "broadcast";
    case CollKind::kDuplicate: return "duplicate";
  }
  return "collective";
}

std::string describe(const CollMeta& m) {
  return str_cat(coll_name(m.kind), " of ", m.bytes, " bytes (op/root ", m.op_or_root, ")");
}

long long ms(Timeout t) { return std::chrono::duration_cast<std::chrono::milliseconds>(t).count(); }

}  // namespace

// A message announced by its sender, not yet claimed by a receiver.
struct Announced {
  uint64_t seq = 0;
  uint64_t size = 0;
  bool inlined = false;
  Payload payload;  // inlined messages only
  Clock::time_point decided_by;    // when the sender's deadline passes (it answers a claim by then)
};

struct RecvOp {
  enum State { kWaiting, kClaimed, kDone };
  RankId src = -1;
  int32_t tag = 0;
  bool grow = false;
  size_t expected = 0;
  State state = kWaiting;
  Announced msg;  // kClaimed: the message claimed
  Status result;
  Payload payload;
  std::condition_variable cv;
};

struct SendOp {
  enum State { kAwaitClaim, kStreaming, kDone };
  RankId dst = -1;
  int32_t tag = 0;
  uint64_t seq = 0;
  std::span<const std::byte> data;
  bool inlined = false;
  State state = kAwaitClaim;
  Status result;
  std::condition_variable cv;
};

struct CollOp {
  uint64_t seq = 0;
  CollMeta meta;
  std::vector<char> failed;  // this rank's failed set when it entered
  std::vector<char> expect;  // ranks whose contribution is awaited
  std::vector<char> arrived;
  int32_t missing = 0;
  std::vector<std::shared_ptr<const Incoming>> got;
  // Relay: for each failed rank whose contribution is missing, the survivors
  // asked for it that have not answered yet, and why it is missing.
  std::map<RankId, std::set<RankId>> relay;
  std::map<RankId, Status> relay_why;
  bool done = false;
  Status result;
  std::condition_variable cv;
};

struct Channel {
  uint64_t id = 0;
  std::vector<char> failed;
  Status fenced;
  std::vector<uint64_t> next_seq;  // per destination
  using Key = std::pair<RankId, int32_t>;   // (peer, tag)
  using Ref = std::pair<RankId, uint64_t>;  // (peer, sender's seq)
  std::map<Key, std::deque<Announced>> mailbox;
  std::map<Key, std::deque<std::shared_ptr<RecvOp>>> waiting;
  std::map<Ref, std::shared_ptr<RecvOp>> claimed;
  std::map<Ref, std::shared_ptr<SendOp>> sends;      // awaiting a claim
  std::map<Ref, std::shared_ptr<SendOp>> streaming;  // data handed to the wire
  uint64_t coll_next = 0;
  std::shared_ptr<CollOp> active;
  std::map<uint64_t, std::vector<Incoming>> early;  // contributions to collectives not entered yet
  // The contributions of the last completed collectives, for relay questions.
  std::deque<std::pair<uint64_t, std::vector<std::shared_ptr<const Incoming>>>> recent;
  // Relay questions about a rank not yet failed or lost here: (asker, collective, rank).
  struct Deferred {
    RankId asker;
    uint64_t seq;
    RankId r;
  };
  std::vector<Deferred> deferred;
  uint64_t children = 0;
};

std::span<const std::byte> Contributions::bytes(RankId r) const {
  const auto& in = by_rank[static_cast<size_t>(r)];
  if (!in) return {};
  return std::span<const std::byte>(in->payload).subspan(std::min(offset, in->payload.size()));
}

namespace {

template <typename Op>
void finish(Op& op, Status s) {
  op.state = Op::kDone;
  op.result = std::move(s);
  op.cv.notify_all();
}

void finish_coll(CollOp& op, Status s) {
  if (op.done) return;
  op.done = true;
  op.result = std::move(s);
  op.cv.notify_all();
}

}  // namespace

// --- Life cycle ------------------------------------------------------------------

std::shared_ptr<MessageEngine> MessageEngine::start(std::unique_ptr<Wire> wire) {
  std::shared_ptr<MessageEngine> engine(new MessageEngine(std::move(wire)));
  engine->thread_ = std::thread([p = engine.get()] { p->run(); });
  return engine;
}

MessageEngine::MessageEngine(std::unique_ptr<Wire> wire)
    : wire_(std::move(wire)), rank_(wire_->rank()), size_(wire_->size()), backend_(wire_->name()) {
  lost_.assign(static_cast<size_t>(size_), ok_status());
  declared_.assign(static_cast<size_t>(size_), 0);
  last_arrival_ns_ = std::make_unique<std::atomic<int64_t>[]>(static_cast<size_t>(size_));
  for (int32_t r = 0; r < size_; ++r) last_arrival_ns_[static_cast<size_t>(r)].store(0, std::memory_order_relaxed);
}

MessageEngine::~MessageEngine() { shutdown(std::chrono::seconds(2)); }

std::string MessageEngine::who() const { return str_cat("rank ", rank_, " (", backend_, ")"); }

void MessageEngine::shutdown(Timeout timeout) {
  std::call_once(shutdown_once_, [&] {
    std::unique_lock<std::mutex> lock(mu_);
    stopping_ = true;
    const Status why = failed_precondition_error(who() + ": the transport was finalized");
    for (auto& [id, ch] : channels_) fail_all_ops(*ch, why);
    // Hand over what is queued (the last contributions of a collective the
    // peers still wait for), but never wait on a peer that stopped: what is
    // in flight to a rank declared failed is taken back first.
    for (RankId r = 0; r < size_; ++r) {
      if (declared_[static_cast<size_t>(r)]) drop_requests_.push_back(r);
    }
    wire_->wake();
    flushed_cv_.wait_for(lock, timeout, [&] { return outbox_.empty() && in_flight_ == 0; });
    exit_ = true;
    lock.unlock();
    wire_->wake();
    if (thread_.joinable()) thread_.join();
  });
}

MessageEngine::Stats MessageEngine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void MessageEngine::run() {
  for (;;) {
    std::deque<Outgoing> out;
    std::vector<RankId> drops;
    bool exit = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      exit = exit_;
      out.swap(outbox_);
      drops.swap(drop_requests_);
    }
    for (Outgoing& o : out) {
      const uint64_t token = o.token;
      Outgoing& slot = posted_.emplace(token, std::move(o)).first->second;
      const std::span<const std::byte> payload = slot.owned ? std::span<const std::byte>(*slot.owned) : slot.user;
      wire_->post(slot.peer, token, std::as_bytes(std::span<const Frame>(&slot.frame, 1)), payload);
    }
    for (RankId r : drops) wire_->drop_peer(r);
    if (exit) break;
    const bool busy = wire_->progress(*this);
    if (!busy && out.empty() && drops.empty()) wire_->wait(std::chrono::milliseconds(50));
  }
}

// --- Channels --------------------------------------------------------------------

uint64_t MessageEngine::world_channel_id(uint64_t k) { return mix64(0x776f726c64ULL + k); }

uint64_t MessageEngine::child_channel_id(uint64_t parent, uint64_t j) { return mix64(parent ^ mix64(j + 1)); }

StatusOr<std::shared_ptr<Channel>> MessageEngine::open_channel(uint64_t id, std::vector<char> failed) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return failed_precondition_error(who() + ": the transport was finalized");
  if (channels_.count(id) != 0 || retired_.count(id) != 0) {
    return failed_precondition_error(str_cat(who(), ": channel ", id, " is already in use in this process"));
  }
  auto ch = std::make_shared<Channel>();
  ch->id = id;
  ch->failed = std::move(failed);
  ch->fenced = process_fenced_;
  ch->next_seq.assign(static_cast<size_t>(size_), 0);
  channels_[id] = ch;
  auto it = orphans_.find(id);
  if (it != orphans_.end()) {
    std::vector<Incoming> early = std::move(it->second);
    orphans_.erase(it);
    for (Incoming& in : early) handle(*ch, std::move(in));
  }
  return ch;
}

void MessageEngine::close_channel(const std::shared_ptr<Channel>& channel) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_all_ops(*channel, failed_precondition_error(who() + ": the transport was destroyed"));
  channels_.erase(channel->id);
  retired_.insert(channel->id);
}

uint64_t MessageEngine::next_child_id(Channel& channel) {
  std::lock_guard<std::mutex> lock(mu_);
  return child_channel_id(channel.id, channel.children++);
}

std::vector<char> MessageEngine::failed(const Channel& channel) const {
  std::lock_guard<std::mutex> lock(mu_);
  return channel.failed;
}

Status MessageEngine::fence_status(const Channel& channel) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return failed_precondition_error(who() + ": the transport was finalized");
  return channel.fenced;
}

void MessageEngine::fence_process(std::string_view why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!process_fenced_.ok()) return;
  process_fenced_ = failed_precondition_error(str_cat(who(), ": fenced: ", why));
  for (auto& [id, ch] : channels_) {
    if (!ch->fenced.ok()) continue;
    ch->fenced = process_fenced_;
    fail_all_ops(*ch, ch->fenced);
  }
}

Status MessageEngine::usable(const Channel& ch, RankId peer, const char* what) const {
  if (stopping_) return failed_precondition_error(who() + ": the transport was finalized");
  if (!ch.fenced.ok()) return ch.fenced;
  if (peer < 0) return ok_status();
  if (ch.failed[static_cast<size_t>(peer)]) {
    return unavailable_error(str_cat(who(), ": ", what, " rank ", peer, " is marked failed"));
  }
  const Status& lost = lost_[static_cast<size_t>(peer)];
  if (!lost.ok()) return unavailable_error(str_cat(what, " rank ", peer, ": ", lost.message()));
  return ok_status();
}

// --- Outgoing ----------------------------------------------------------------------

void MessageEngine::enqueue(RankId peer, const Frame& frame, std::shared_ptr<const Payload> owned,
                            std::span<const std::byte> user, std::shared_ptr<SendOp> op) {
  if (exit_) return;
  Outgoing o;
  o.peer = peer;
  o.token = next_token_++;
  o.frame = frame;
  o.owned = std::move(owned);
  o.user = user;
  o.op = std::move(op);
  outbox_.push_back(std::move(o));
  ++in_flight_;
  ++stats_.messages_sent;
  wire_->wake();
}

void MessageEngine::on_sent(uint64_t token, Status status) {
  auto it = posted_.find(token);
  if (it == posted_.end()) return;
  std::shared_ptr<SendOp> op = std::move(it->second.op);
  const uint64_t channel = it->second.frame.channel;
  posted_.erase(it);  // frees an owned payload
  std::lock_guard<std::mutex> lock(mu_);
  --in_flight_;
  if (op && op->state == SendOp::kStreaming) {
    auto ch = channels_.find(channel);
    if (ch != channels_.end()) ch->second->streaming.erase({op->dst, op->seq});
    finish(*op, status.ok() ? ok_status()
                            : unavailable_error(str_cat(who(), ": send to rank ", op->dst, " (tag ", op->tag,
                                                        "): the transfer was cut off: ", status.message())));
  }
  if (in_flight_ == 0 && outbox_.empty()) flushed_cv_.notify_all();
}

// --- Incoming ----------------------------------------------------------------------

void MessageEngine::on_message(RankId src, std::span<const std::byte> frame, Payload payload) {
  Incoming in;
  in.src = src;
  std::memcpy(&in.frame, frame.data(), sizeof(Frame));
  in.payload = std::move(payload);
  in.arrived = Clock::now();
  if (in.frame.magic != kMagic || src < 0 || src >= size_) return;  // not ours
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.messages_received;
  auto it = channels_.find(in.frame.channel);
  if (it == channels_.end()) {
    if (retired_.count(in.frame.channel) == 0) orphans_[in.frame.channel].push_back(std::move(in));
    return;
  }
  handle(*it->second, std::move(in));
}

void MessageEngine::handle(Channel& ch, Incoming in) {
  const Frame& f = in.frame;
  const RankId src = in.src;
  if (ch.failed[static_cast<size_t>(src)]) {
    // Declared failed here: nothing it sends counts, not even a fence (a
    // rank that resumed must not fence the survivors). Tell it again, so that
    // a process that resumed learns at once that it is fenced.
    ++stats_.dropped_from_failed;
    if (f.kind == kHeader || f.kind == kCollective) send_fence(ch, src);
    return;
  }
  if (!ch.fenced.ok()) return;
  switch (f.kind) {
    case kHeader: {
      Announced a;
      a.seq = f.seq;
      a.size = f.size;
      a.inlined = (f.flags & kInlineFlag) != 0;
      if (a.inlined) a.payload = std::move(in.payload);
      a.decided_by = in.arrived + std::chrono::nanoseconds(std::max<int64_t>(0, f.remaining_ns));
      ch.mailbox[{src, f.tag}].push_back(std::move(a));
      match(ch, src, f.tag);
      return;
    }
    case kClaim: {
      Frame d = make_frame(kDecision, ch.id, f.seq);
      auto it = ch.sends.find({src, f.seq});
      if (it == ch.sends.end()) {  // withdrawn meanwhile
        d.arg = kWithdrawn;
        enqueue(src, d);
        return;
      }
      std::shared_ptr<SendOp> op = it->second;
      ch.sends.erase(it);
      if (f.arg == 0) {
        d.arg = kRejectAck;
        enqueue(src, d);
        finish(*op, invalid_argument_error(str_cat(who(), ": send to rank ", src, " (tag ", op->tag, ", ",
                                                   op->data.size(), " bytes) was rejected: the receiver expected ",
                                                   f.size, " bytes")));
        return;
      }
      if (op->inlined) {
        d.arg = kConfirm;
        enqueue(src, d);
        finish(*op, ok_status());
        return;
      }
      op->state = SendOp::kStreaming;
      ch.streaming[{src, op->seq}] = op;
      Frame data = make_frame(kData, ch.id, op->seq);
      data.size = op->data.size();
      enqueue(src, data, nullptr, op->data, op);
      return;
    }
    case kDecision: {
      auto it = ch.claimed.find({src, f.seq});
      if (it == ch.claimed.end()) return;  // the receiver gave up on it
      std::shared_ptr<RecvOp> op = it->second;
      ch.claimed.erase(it);
      if (f.arg == kWithdrawn) {
        op->state = RecvOp::kWaiting;
        ch.waiting[{src, op->tag}].push_front(op);
        match(ch, src, op->tag);
        return;
      }
      if (f.arg == kRejectAck) {
        finish(*op, invalid_argument_error(str_cat(who(), ": recv from rank ", src, " (tag ", op->tag, ") expected ",
                                                   op->expected, " bytes, the message has ", op->msg.size,
                                                   " bytes (message discarded)")));
        return;
      }
      op->payload = std::move(op->msg.payload);
      finish(*op, ok_status());
      return;
    }
    case kData: {
      auto it = ch.claimed.find({src, f.seq});
      if (it == ch.claimed.end()) return;
      std::shared_ptr<RecvOp> op = it->second;
      ch.claimed.erase(it);
      if (in.payload.size() != op->msg.size) {
        finish(*op, data_loss_error(str_cat(who(), ": recv from rank ", src, " (tag ", op->tag, "): ",
                                            in.payload.size(), " bytes arrived for a message of ", op->msg.size)));
        return;
      }
      op->payload = std::move(in.payload);
      finish(*op, ok_status());
      return;
    }
    case kWithdraw: {
      auto mb = ch.mailbox.find({src, f.tag});
      if (mb != ch.mailbox.end()) std::erase_if(mb->second, [&](const Announced& a) { return a.seq == f.seq; });
      return;
    }
    case kCollective: on_contribution(ch, std::move(in)); return;
    case kFence: fence(ch, src, in.payload); return;
    case kRelayRequest: on_relay_request(ch, src, f); return;
    case kRelayReply: on_relay_reply(ch, src, std::move(in)); return;
    default: return;
  }
}

void MessageEngine::match(Channel& ch, RankId src, int32_t tag) {
  auto w = ch.waiting.find({src, tag});
  auto m = ch.mailbox.find({src, tag});
  while (w != ch.waiting.end() && !w->second.empty() && m != ch.mailbox.end() && !m->second.empty()) {
    std::shared_ptr<RecvOp> op = w->second.front();
    w->second.pop_front();
    op->msg = std::move(m->second.front());
    m->second.pop_front();
    const bool accept = op->grow || op->msg.size == op->expected;
    op->state = RecvOp::kClaimed;
    ch.claimed[{src, op->msg.seq}] = op;
    Frame c = make_frame(kClaim, ch.id, op->msg.seq);
    c.tag = tag;
    c.arg = accept ? 1 : 0;
    c.size = op->expected;
    enqueue(src, c);
  }
  if (w != ch.waiting.end() && w->second.empty()) ch.waiting.erase(w);
  if (m != ch.mailbox.end() && m->second.empty()) ch.mailbox.erase(m);
}

// --- Point-to-point ----------------------------------------------------------------

Status MessageEngine::send(Channel& ch, RankId dst, int32_t tag, std::span<const std::byte> data, Timeout timeout) {
  const Deadline deadline(timeout);
  auto op = std::make_shared<SendOp>();
  op->dst = dst;
  op->tag = tag;
  op->data = data;
  op->inlined = data.size() <= kInlineBytes;
  std::shared_ptr<const Payload> owned;
  if (op->inlined) owned = std::make_shared<const Payload>(data.begin(), data.end());
  const auto what = [&] { return str_cat(who(), ": send to rank ", dst, " (tag ", tag, ", ", data.size(), " bytes)"); };
  std::unique_lock<std::mutex> lock(mu_);
  OMNI_RETURN_IF_ERROR(usable(ch, dst, "send to"));
  op->seq = ch.next_seq[static_cast<size_t>(dst)]++;
  Frame f = make_frame(kHeader, ch.id, op->seq);
  f.tag = tag;
  f.size = data.size();
  f.remaining_ns = deadline.remaining().count();
  f.flags = op->inlined ? kInlineFlag : 0;
  ch.sends[{dst, op->seq}] = op;
  enqueue(dst, f, std::move(owned));
  const auto done = [&] { return op->state == SendOp::kDone; };
  if (op->cv.wait_until(lock, deadline.at(), done)) return op->result;
  if (op->state == SendOp::kAwaitClaim) {
    // Nothing of data reached the wire: withdraw the header.
    ch.sends.erase({dst, op->seq});
    op->state = SendOp::kDone;
    Frame w = make_frame(kWithdraw, ch.id, op->seq);
    w.tag = tag;
    enqueue(dst, w);
    return deadline_exceeded_error(str_cat(what(), " timed out after ", ms(timeout), " ms: no matching recv"));
  }
  // Committed: the bytes are on their way at wire speed.
  if (op->cv.wait_until(lock, std::max(deadline.at(), Clock::now()) + kCommittedGrace, done)) return op->result;
  drop_requests_.push_back(dst);
  wire_->wake();
  if (op->cv.wait_for(lock, std::chrono::seconds(1), done)) {
    return deadline_exceeded_error(what() + ": the receiver stopped progressing in the middle of the transfer; "
                                            "the connection to it was dropped");
  }
  ch.streaming.erase({dst, op->seq});
  return deadline_exceeded_error(what() + ": the receiver stopped progressing in the middle of the transfer; "
                                          "the wire cannot take the buffer back: it must outlive the transport");
}

Status MessageEngine::receive(Channel& ch, RankId src, int32_t tag, std::span<std::byte> fixed,
                              std::vector<std::byte>* grown, Timeout timeout) {
  const Deadline deadline(timeout);
  auto op = std::make_shared<RecvOp>();
  op->src = src;
  op->tag = tag;
  op->grow = grown != nullptr;
  op->expected = fixed.size();
  const auto what = [&] { return str_cat(who(), ": recv from rank ", src, " (tag ", tag, ")"); };
  std::unique_lock<std::mutex> lock(mu_);
  OMNI_RETURN_IF_ERROR(usable(ch, src, "recv from"));
  ch.waiting[{src, tag}].push_back(op);
  match(ch, src, tag);
  for (;;) {
    if (op->state == RecvOp::kDone) break;
    const Clock::time_point limit = op->state == RecvOp::kClaimed
                                        ? std::max(deadline.at(), op->msg.decided_by) + kCommittedGrace
                                        : deadline.at();
    if (Clock::now() >= limit) {
      if (op->state == RecvOp::kWaiting) {
        auto w = ch.waiting.find({src, tag});
        if (w != ch.waiting.end()) {
          std::erase(w->second, op);
          if (w->second.empty()) ch.waiting.erase(w);
        }
        return deadline_exceeded_error(str_cat(what(), " timed out after ", ms(timeout), " ms: no message"));
      }
      ch.claimed.erase({src, op->msg.seq});
      return deadline_exceeded_error(what() + ": the sender stopped progressing in the middle of the transfer");
    }
    op->cv.wait_until(lock, limit);
  }
  if (!op->result.ok()) return op->result;
  lock.unlock();
  if (grown != nullptr) {
    grown->assign(op->payload.begin(), op->payload.end());
  } else if (!fixed.empty()) {
    std::memcpy(fixed.data(), op->payload.data(), fixed.size());
  }
  return ok_status();
}

// --- Collectives -------------------------------------------------------------------

StatusOr<Contributions> MessageEngine::collective(Channel& ch, const CollMeta& meta,
                                                  std::span<const std::byte> contribution, bool send,
                                                  RankId wait_from, Timeout timeout) {
  const Deadline deadline(timeout);
  const auto R = static_cast<size_t>(size_);
  auto payload = std::make_shared<Payload>(R + contribution.size());  // written whole below
  if (!contribution.empty()) std::memcpy(payload->data() + R, contribution.data(), contribution.size());
  std::unique_lock<std::mutex> lock(mu_);
  OMNI_RETURN_IF_ERROR(usable(ch, -1, coll_name(meta.kind).c_str()));
  auto op = std::make_shared<CollOp>();
  op->seq = ch.coll_next++;
  op->meta = meta;
  op->failed = ch.failed;
  std::memcpy(payload->data(), ch.failed.data(), R);
  op->expect.assign(R, 0);
  op->arrived.assign(R, 0);
  op->got.resize(R);
  for (RankId r = 0; r < size_; ++r) {
    if (r == rank_ || ch.failed[static_cast<size_t>(r)]) continue;
    if (wait_from == kFromAll || wait_from == r) {
      op->expect[static_cast<size_t>(r)] = 1;
      ++op->missing;
    }
  }
  Frame f = make_frame(kCollective, ch.id, op->seq);
  f.tag = static_cast<int32_t>(meta.kind);
  f.arg = meta.op_or_root;
  f.arg2 = meta.bytes;
  f.size = payload->size();
  if (send) {
    std::shared_ptr<const Payload> shared = payload;
    for (RankId r = 0; r < size_; ++r) {
      if (r != rank_ && !ch.failed[static_cast<size_t>(r)]) enqueue(r, f, shared);
    }
  }
  ch.active = op;
  for (auto it = ch.early.begin(); it != ch.early.end() && it->first <= op->seq; it = ch.early.erase(it)) {
    if (it->first != op->seq) continue;
    for (Incoming& in : it->second) on_contribution(ch, std::move(in));
  }
  for (RankId r = 0; r < size_ && !op->done; ++r) {
    if (op->expect[static_cast<size_t>(r)] && !op->arrived[static_cast<size_t>(r)] && !lost_[static_cast<size_t>(r)].ok()) {
      start_relay(ch, r, unavailable_error(str_cat(coll_name(meta.kind), " waits for rank ", r, ": ",
                                                   lost_[static_cast<size_t>(r)].message())));
    }
  }
  if (op->missing == 0) finish_coll(*op, ok_status());
  op->cv.wait_until(lock, deadline.at(), [&] { return op->done; });
  if (ch.active == op) ch.active.reset();
  if (!op->done) {
    std::string missing;
    for (RankId r = 0; r < size_; ++r) {
      if (op->expect[static_cast<size_t>(r)] && !op->arrived[static_cast<size_t>(r)]) {
        missing += str_cat(missing.empty() ? "" : ", ", r);
      }
    }
    return deadline_exceeded_error(str_cat(who(), ": ", coll_name(meta.kind), " timed out after ", ms(timeout),
                                           " ms: no contribution from rank(s) ", missing,
                                           " (every live rank must call it)"));
  }
  if (!op->result.ok()) return op->result;
  ch.recent.emplace_back(op->seq, op->got);
  if (ch.recent.size() > kRecentCollectives) ch.recent.pop_front();
  Contributions c;
  c.offset = R;
  c.by_rank = op->got;
  return c;
}

void MessageEngine::on_contribution(Channel& ch, Incoming in) {
  const Frame& f = in.frame;
  if (!ch.active || f.seq != ch.active->seq) {
    // A later collective: kept until this rank enters it. An earlier one (this
    // rank finished it or gave up on it): dropped.
    if (f.seq >= ch.coll_next) ch.early[f.seq].push_back(std::move(in));
    return;
  }
  CollOp& op = *ch.active;
  const RankId src = in.src;
  const auto s = static_cast<size_t>(src);
  if (op.done || !op.expect[s] || op.arrived[s]) return;
  const auto R = static_cast<size_t>(size_);
  if (in.payload.size() < R || std::memcmp(in.payload.data(), op.failed.data(), R) != 0) {
    const std::span<const char> theirs(reinterpret_cast<const char*>(in.payload.data()), std::min(R, in.payload.size()));
    finish_coll(op, failed_precondition_error(str_cat(who(), ": survivors disagree on the failed set: rank ", src,
                                                      " has ", describe_set(theirs), ", this rank has ",
                                                      describe_set(op.failed),
                                                      "; mark the same ranks failed everywhere")));
    return;
  }
  const CollMeta theirs{static_cast<CollKind>(f.tag), f.arg, f.arg2};
  if (theirs.kind != op.meta.kind || theirs.op_or_root != op.meta.op_or_root || theirs.bytes != op.meta.bytes) {
    finish_coll(op, invalid_argument_error(str_cat(who(), ": rank ", src, " entered ", describe(theirs),
                                                   " where this rank entered ", describe(op.meta),
                                                   "; every rank must make the same collective call")));
    return;
  }
  op.arrived[s] = 1;
  op.got[s] = std::make_shared<const Incoming>(std::move(in));
  op.relay.erase(src);
  if (--op.missing == 0) finish_coll(op, ok_status());
}

// --- Failures ----------------------------------------------------------------------

Status MessageEngine::mark_failed(Channel& ch, RankId r) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ch.failed[static_cast<size_t>(r)]) return ok_status();
  ch.failed[static_cast<size_t>(r)] = 1;
  declared_[static_cast<size_t>(r)] = 1;
  if (lost_[static_cast<size_t>(r)].ok() && !stopping_) send_fence(ch, r);
  fail_peer_ops(ch, r, unavailable_error(str_cat(who(), ": rank ", r, " was marked failed")));
  // Transfers already on the wire to r hold the caller's buffer: take them back.
  for (const auto& [ref, op] : ch.streaming) {
    if (ref.first == r) {
      drop_requests_.push_back(r);
      wire_->wake();
      break;
    }
  }
  return ok_status();
}

void MessageEngine::send_fence(Channel& ch, RankId r) {
  auto failed = std::make_shared<Payload>(ch.failed.size());
  std::memcpy(failed->data(), ch.failed.data(), ch.failed.size());
  Frame f = make_frame(kFence, ch.id, 0);
  f.size = failed->size();
  enqueue(r, f, std::move(failed));
  ++stats_.fences_sent;
}

void MessageEngine::fence(Channel& ch, RankId by, std::span<const std::byte> their_failed) {
  if (!ch.fenced.ok()) return;
  const std::span<const char> theirs(reinterpret_cast<const char*>(their_failed.data()), their_failed.size());
  ch.fenced = failed_precondition_error(str_cat(who(), ": fenced: rank ", by, " declared this rank failed (its failed set ",
                                                describe_set(theirs),
                                                "); a rank is never un-failed, this one must leave the group"));
  fail_all_ops(ch, ch.fenced);
}

void MessageEngine::fail_peer_ops(Channel& ch, RankId r, const Status& why) {
  for (auto it = ch.waiting.begin(); it != ch.waiting.end();) {
    if (it->first.first != r) {
      ++it;
      continue;
    }
    for (auto& op : it->second) finish(*op, why);
    it = ch.waiting.erase(it);
  }
  for (auto it = ch.claimed.begin(); it != ch.claimed.end();) {
    if (it->first.first != r) {
      ++it;
      continue;
    }
    finish(*it->second, why);
    it = ch.claimed.erase(it);
  }
  std::erase_if(ch.mailbox, [&](const auto& kv) { return kv.first.first == r; });
  for (auto it = ch.sends.begin(); it != ch.sends.end();) {
    if (it->first.first != r) {
      ++it;
      continue;
    }
    finish(*it->second, why);
    it = ch.sends.erase(it);
  }
  // A collective waiting for r asks the other survivors for r's contribution
  // (it may have reached some of them before r went); r's contributions
  // that arrived before (early ones included) still count.
  if (ch.active && ch.active->expect[static_cast<size_t>(r)] && !ch.active->arrived[static_cast<size_t>(r)]) {
    start_relay(ch, r, unavailable_error(str_cat(why.message(), " while ", coll_name(ch.active->meta.kind),
                                                 " waited for it; retry among the survivors")));
  }
  drop_relay_peer(ch, r);
  answer_deferred_relays(ch, r);
}

void MessageEngine::start_relay(Channel& ch, RankId r, const Status& why) {
  if (!ch.active) return;
  CollOp& op = *ch.active;
  const auto x = static_cast<size_t>(r);
  if (op.done || !op.expect[x] || op.arrived[x] || op.relay.count(r) != 0) return;
  std::set<RankId> asked;
  for (RankId s = 0; s < size_; ++s) {
    if (s != rank_ && s != r && !ch.failed[static_cast<size_t>(s)] && lost_[static_cast<size_t>(s)].ok()) asked.insert(s);
  }
  if (asked.empty()) {
    finish_coll(op, why);
    return;
  }
  op.relay[r] = asked;
  op.relay_why[r] = why;
  Frame q = make_frame(kRelayRequest, ch.id, op.seq);
  q.reserved = static_cast<uint64_t>(r);
  for (RankId s : asked) enqueue(s, q);
}

void MessageEngine::on_relay_request(Channel& ch, RankId asker, const Frame& f) {
  const uint64_t seq = f.seq;
  const auto r = static_cast<RankId>(f.reserved);
  if (r < 0 || r >= size_) return;
  std::shared_ptr<const Incoming> found;
  if (ch.active && ch.active->seq == seq && ch.active->arrived[static_cast<size_t>(r)]) {
    found = ch.active->got[static_cast<size_t>(r)];
  }
  for (const auto& [k, got] : ch.recent) {
    if (!found && k == seq) found = got[static_cast<size_t>(r)];
  }
  if (!found) {
    auto e = ch.early.find(seq);
    if (e != ch.early.end()) {
      for (const Incoming& in : e->second) {
        if (in.src == r) found = std::make_shared<const Incoming>(in);
      }
    }
  }
  Frame reply = make_frame(kRelayReply, ch.id, seq);
  reply.reserved = static_cast<uint64_t>(r);
  if (found) {
    reply.flags = kHasFlag;
    reply.tag = found->frame.tag;
    reply.arg = found->frame.arg;
    reply.arg2 = found->frame.arg2;
    reply.size = found->payload.size();
    enqueue(asker, reply, std::shared_ptr<const Payload>(found, &found->payload));
    return;
  }
  // "None" only once this rank can never accept r's contribution any more.
  if (ch.failed[static_cast<size_t>(r)] || !lost_[static_cast<size_t>(r)].ok()) {
    enqueue(asker, reply);
    return;
  }
  ch.deferred.push_back({asker, seq, r});
}

void MessageEngine::on_relay_reply(Channel& ch, RankId from, Incoming in) {
  const auto r = static_cast<RankId>(in.frame.reserved);
  if (!ch.active || ch.active->seq != in.frame.seq || r < 0 || r >= size_) return;
  CollOp& op = *ch.active;
  auto it = op.relay.find(r);
  if (op.done || it == op.relay.end()) return;
  if (in.frame.flags & kHasFlag) {
    // r's own contribution, passed on: it counts as if it had arrived from r.
    Incoming theirs;
    theirs.src = r;
    theirs.frame = in.frame;
    theirs.frame.kind = kCollective;
    theirs.frame.flags = 0;
    theirs.frame.reserved = 0;
    theirs.payload = std::move(in.payload);
    theirs.arrived = in.arrived;
    on_contribution(ch, std::move(theirs));
    return;
  }
  it->second.erase(from);
  if (it->second.empty()) finish_coll(op, op.relay_why[r]);
}

void MessageEngine::answer_deferred_relays(Channel& ch, RankId r) {
  std::vector<Channel::Deferred> now;
  std::erase_if(ch.deferred, [&](const Channel::Deferred& d) {
    if (d.r != r) return false;
    now.push_back(d);
    return true;
  });
  for (const Channel::Deferred& d : now) {
    Frame q = make_frame(kRelayRequest, ch.id, d.seq);
    q.reserved = static_cast<uint64_t>(d.r);
    on_relay_request(ch, d.asker, q);
  }
}

void MessageEngine::drop_relay_peer(Channel& ch, RankId gone) {
  std::erase_if(ch.deferred, [&](const Channel::Deferred& d) { return d.asker == gone; });
  if (!ch.active || ch.active->done) return;
  CollOp& op = *ch.active;
  for (auto& [r, asked] : op.relay) {
    if (asked.erase(gone) != 0 && asked.empty() && !op.arrived[static_cast<size_t>(r)]) {
      finish_coll(op, op.relay_why[r]);
      return;
    }
  }
}

void MessageEngine::fail_all_ops(Channel& ch, const Status& why) {
  for (auto& [key, list] : ch.waiting) {
    for (auto& op : list) finish(*op, why);
  }
  ch.waiting.clear();
  for (auto& [ref, op] : ch.claimed) finish(*op, why);
  ch.claimed.clear();
  for (auto& [ref, op] : ch.sends) finish(*op, why);
  ch.sends.clear();
  if (ch.active) finish_coll(*ch.active, why);
}

void MessageEngine::on_arrival(RankId src) {
  if (src < 0 || src >= size_) return;
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::steady_clock::now().time_since_epoch())
                         .count();
  last_arrival_ns_[static_cast<size_t>(src)].store(ns, std::memory_order_relaxed);
}

std::chrono::steady_clock::time_point MessageEngine::last_arrival(RankId peer) const {
  if (peer < 0 || peer >= size_) return std::chrono::steady_clock::time_point::min();
  const int64_t ns = last_arrival_ns_[static_cast<size_t>(peer)].load(std::memory_order_relaxed);
  if (ns == 0) return std::chrono::steady_clock::time_point::min();
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::nanoseconds(ns)));
}

void MessageEngine::on_peer_lost(RankId peer, Status why) {
  std::lock_guard<std::mutex> lock(mu_);
  Status& lost = lost_[static_cast<size_t>(peer)];
  if (!lost.ok()) return;
  lost = unavailable_error(str_cat(who(), ": the connection to rank ", peer, " was lost (", why.message(), ")"));
  for (auto& [id, ch] : channels_) fail_peer_ops(*ch, peer, lost);
}

}  // namespace omni::transport_internal
