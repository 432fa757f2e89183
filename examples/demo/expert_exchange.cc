#include "demo/expert_exchange.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <thread>

#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

constexpr int32_t kRequestTag = 1;
constexpr int32_t kResponseTag = 2;

// The head of one request: which slot to apply, with which gate.
struct RequestHead {
  int32_t layer;
  int32_t slot;  // global slot
  float gate;
};

template <typename T>
void put(std::vector<std::byte>& buf, const T& v) {
  const size_t at = buf.size();
  buf.resize(at + sizeof(T));
  std::memcpy(buf.data() + at, &v, sizeof(T));
}

// Whether peer r is (or becomes within `timeout`) marked failed on t. A
// transport that lost the connection to a dead process says UNAVAILABLE
// before the failure detector has marked it; the detector does so moments
// later.
bool marked_failed(Transport& t, RankId r, const Status& s, Timeout timeout) {
  if (t.is_failed(r)) return true;
  if (s.code() != StatusCode::kUnavailable) return false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!t.is_failed(r) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return t.is_failed(r);
}

// Exchanges one message with every other rank: in round d rank q sends to
// q + d and receives from q - d (mod R), sends on a helper thread. Every pair
// meets in the same round, so the exchange cannot deadlock whatever the
// transport's send semantics.
// A peer that is (or becomes, while we wait for it) marked failed on t is
// skipped: its incoming message stays empty (a peer whose process died is
// reported unreachable first, then marked: see marked_failed).
Status exchange(Transport& t, int32_t tag, const std::vector<std::vector<std::byte>>& outgoing,
                std::vector<std::vector<std::byte>>& incoming, Timeout timeout) {
  const int32_t R = t.size();
  const RankId q = t.rank();
  Status send_status;
  std::thread sender([&] {
    for (int32_t d = 1; d < R && send_status.ok(); ++d) {
      const RankId dst = (q + d) % R;
      if (t.is_failed(dst)) continue;
      send_status = t.send(dst, tag, outgoing[static_cast<size_t>(dst)], timeout);
      if (!send_status.ok() && marked_failed(t, dst, send_status, timeout)) send_status = ok_status();
      send_status = send_status.with_context(str_cat("demo: rank ", q, " sending to rank ", dst));
    }
  });
  Status recv_status;
  for (int32_t d = 1; d < R && recv_status.ok(); ++d) {
    const RankId src = (q - d + R) % R;
    incoming[static_cast<size_t>(src)].clear();
    if (t.is_failed(src)) continue;
    auto msg = t.recv_message(src, tag, timeout);
    if (!msg.ok()) {
      if (marked_failed(t, src, msg.status(), timeout)) continue;
      recv_status = msg.status().with_context(str_cat("demo: rank ", q, " receiving from rank ", src));
      break;
    }
    incoming[static_cast<size_t>(src)] = std::move(*msg);
  }
  sender.join();
  OMNI_RETURN_IF_ERROR(recv_status);
  return send_status;
}

}  // namespace

ExpertExchange::ExpertExchange(Transport& transport, const ToyMoE& model, const HostWeightStore& store, int32_t top_k,
                               Timeout timeout)
    : t_(transport),
      model_(model),
      store_(store),
      top_k_(top_k),
      timeout_(timeout),
      hidden_(model.hidden()),
      requests_(static_cast<size_t>(transport.size())),
      responses_(static_cast<size_t>(transport.size())),
      incoming_(static_cast<size_t>(transport.size())),
      answers_(static_cast<size_t>(transport.size())),
      pending_(static_cast<size_t>(transport.size())),
      x_(static_cast<size_t>(model.hidden())),
      y_(static_cast<size_t>(model.hidden())),
      ref_(static_cast<size_t>(model.hidden())) {}

uint64_t ExpertExchange::token_key(int64_t step, LayerId l, int32_t token) const {
  return (static_cast<uint64_t>(step) << 32) ^ (static_cast<uint64_t>(t_.rank()) << 24) ^
         (static_cast<uint64_t>(l) << 16) ^ static_cast<uint64_t>(token);
}

void ExpertExchange::answer(const Placement& now, const std::vector<std::byte>& req, std::vector<std::byte>& resp,
                            ServeCounts& counts) {
  const size_t item_bytes = sizeof(RequestHead) + static_cast<size_t>(hidden_) * sizeof(float);
  const int32_t L = now.num_layers();
  resp.clear();
  for (size_t at = 0; at + item_bytes <= req.size(); at += item_bytes) {
    RequestHead h;
    std::memcpy(&h, req.data() + at, sizeof(h));
    std::memcpy(x_.data(), req.data() + at + sizeof(h), static_cast<size_t>(hidden_) * sizeof(float));
    std::fill(y_.begin(), y_.end(), 0.0f);
    const bool mine = h.layer >= 0 && h.layer < L && h.slot >= 0 && h.slot < now.num_slots(h.layer) &&
                      now.rank_of(h.layer, h.slot) == t_.rank();
    if (mine) {
      ToyMoE::apply(store_.slot_data(h.layer, now.local_slot(h.layer, h.slot)), hidden_, x_, h.gate, y_);
    } else {
      ++counts.misrouted;
      std::fill(y_.begin(), y_.end(), std::numeric_limits<float>::quiet_NaN());
    }
    for (float v : y_) put(resp, v);
  }
}

Status ExpertExchange::serve(int64_t step, const Placement& now, std::span<const ServeItem> items,
                             const std::vector<std::vector<ExpertId>>& ids, std::vector<ServeItem>& lost,
                             ServeCounts& counts) {
  const int32_t R = t_.size();
  const RankId q = t_.rank();
  const size_t answer_bytes = static_cast<size_t>(hidden_) * sizeof(float);
  for (auto& r : requests_) r.clear();
  for (auto& p : pending_) p.clear();
  for (const ServeItem& it : items) {
    const RankId r = now.rank_of(it.layer, it.slot);
    auto& buf = requests_[static_cast<size_t>(r)];
    model_.token_input(token_key(step, it.layer, it.index / top_k_), x_);
    put(buf, RequestHead{it.layer, it.slot, 1.0f / static_cast<float>(1 + it.index % top_k_)});
    for (float v : x_) put(buf, v);
    pending_[static_cast<size_t>(r)].push_back(it);
  }
  // Serve: my own requests locally, the others' after the exchange.
  OMNI_RETURN_IF_ERROR(exchange(t_, kRequestTag, requests_, incoming_, timeout_));
  for (RankId r = 0; r < R; ++r)
    if (r != q) answer(now, incoming_[static_cast<size_t>(r)], responses_[static_cast<size_t>(r)], counts);
  answer(now, requests_[static_cast<size_t>(q)], incoming_[static_cast<size_t>(q)], counts);
  std::swap(responses_[static_cast<size_t>(q)], incoming_[static_cast<size_t>(q)]);
  OMNI_RETURN_IF_ERROR(exchange(t_, kResponseTag, responses_, answers_, timeout_));
  answers_[static_cast<size_t>(q)] = std::move(responses_[static_cast<size_t>(q)]);
  for (RankId r = 0; r < R; ++r) {
    const auto& ans = answers_[static_cast<size_t>(r)];
    const auto& pend = pending_[static_cast<size_t>(r)];
    for (size_t j = 0; j < pend.size(); ++j) {
      if (ans.size() < (j + 1) * answer_bytes && t_.is_failed(r)) {
        lost.push_back(pend[j]);  // the rank died with the request
        continue;
      }
      ++counts.checked;
      if (ans.size() < (j + 1) * answer_bytes) {
        ++counts.wrong;
        continue;
      }
      const LayerId l = pend[j].layer;
      const int32_t i = pend[j].index;
      model_.token_input(token_key(step, l, i / top_k_), x_);
      std::fill(ref_.begin(), ref_.end(), 0.0f);
      model_.reference(l, ids[static_cast<size_t>(l)][static_cast<size_t>(i)], x_,
                       1.0f / static_cast<float>(1 + i % top_k_), ref_);
      if (std::memcmp(ans.data() + j * answer_bytes, ref_.data(), answer_bytes) != 0) ++counts.wrong;
    }
  }
  return ok_status();
}

}  // namespace omni
