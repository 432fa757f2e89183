#include "mpi_wire.h"

#if OMNI_HAVE_MPI

#include <mpi.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "omniplacement/core/str_cat.h"

namespace omni::transport_internal {

namespace {

// A message is one MPI message on kFrameTag: an 8-byte count of separate
// payload bytes (0: the payload follows the frame in the same message), the
// frame, then the inline payload. Separate payloads follow on kChunkTag.
constexpr int kFrameTag = 1;
constexpr int kChunkTag = 2;
constexpr size_t kPackLimit = size_t{64} << 10;  // payloads up to this travel with their frame
constexpr size_t kChunkBytes = size_t{1} << 30;
constexpr size_t kPrefix = sizeof(uint64_t) + kFrameBytes;

Status mpi_status(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return ok_status();
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  return internal_error(str_cat(call, " failed: ", std::string(text, static_cast<size_t>(length))));
}

class MpiWire final : public Wire {
 public:
  MpiWire(MPI_Comm comm, RankId rank, int32_t size)
      : comm_(comm), rank_(rank), size_(size), incoming_(static_cast<size_t>(size)), dropped_(static_cast<size_t>(size), 0) {}

  ~MpiWire() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    // Sends still pending (a peer that stopped) cannot be taken back: their
    // requests are left to MPI_Finalize, the communicator with them.
    if (!finalized && sends_.empty()) MPI_Comm_free(&comm_);
  }

  RankId rank() const override { return rank_; }
  int32_t size() const override { return size_; }
  std::string_view name() const override { return "mpi"; }

  void post(RankId peer, uint64_t token, std::span<const std::byte> frame,
            std::span<const std::byte> payload) override {
    if (dropped_[static_cast<size_t>(peer)]) {
      done_.push_back({token, unavailable_error(str_cat("rank ", peer, " was dropped"))});
      return;
    }
    Send s;
    s.token = token;
    const bool packed = payload.size() <= kPackLimit;
    s.head.resize(kPrefix + (packed ? payload.size() : 0));
    const uint64_t separate = packed ? 0 : payload.size();
    std::memcpy(s.head.data(), &separate, sizeof(separate));
    std::memcpy(s.head.data() + sizeof(separate), frame.data(), kFrameBytes);
    if (packed && !payload.empty()) std::memcpy(s.head.data() + kPrefix, payload.data(), payload.size());
    s.requests.push_back(MPI_REQUEST_NULL);
    int rc = MPI_Isend(s.head.data(), static_cast<int>(s.head.size()), MPI_BYTE, peer, kFrameTag, comm_,
                       &s.requests.back());
    for (size_t offset = 0; rc == MPI_SUCCESS && !packed && offset < payload.size(); offset += kChunkBytes) {
      const size_t n = std::min(kChunkBytes, payload.size() - offset);
      s.requests.push_back(MPI_REQUEST_NULL);
      rc = MPI_Isend(payload.data() + offset, static_cast<int>(n), MPI_BYTE, peer, kChunkTag, comm_,
                     &s.requests.back());
    }
    if (rc != MPI_SUCCESS) {
      done_.push_back({token, mpi_status(rc, "MPI_Isend")});
      // Requests already started stay with the send list so that their buffers outlive them.
    }
    sends_.push_back(std::move(s));
  }

  bool progress(WireSink& sink) override {
    bool any = false;
    // Sends that completed.
    for (auto it = sends_.begin(); it != sends_.end();) {
      int flag = 0;
      MPI_Testall(static_cast<int>(it->requests.size()), it->requests.data(), &flag, MPI_STATUSES_IGNORE);
      if (!flag) {
        ++it;
        continue;
      }
      done_.push_back({it->token, ok_status()});
      it = sends_.erase(it);
    }
    // New messages: at most a batch per call, so that sends keep flowing.
    for (int k = 0; k < 64; ++k) {
      int flag = 0;
      MPI_Message msg = MPI_MESSAGE_NULL;
      MPI_Status st;
      if (MPI_Improbe(MPI_ANY_SOURCE, kFrameTag, comm_, &flag, &msg, &st) != MPI_SUCCESS || !flag) break;
      int count = 0;
      MPI_Get_count(&st, MPI_BYTE, &count);
      In in;
      in.head.resize(static_cast<size_t>(count));
      MPI_Mrecv(in.head.data(), count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
      const RankId src = st.MPI_SOURCE;
      any = true;
      if (src >= 0 && src < size_) sink.on_arrival(src);
      if (in.head.size() < kPrefix) continue;  // not ours
      uint64_t separate = 0;
      std::memcpy(&separate, in.head.data(), sizeof(separate));
      if (separate == 0) {
        in.payload.assign(in.head.begin() + static_cast<std::ptrdiff_t>(kPrefix), in.head.end());
      } else {
        in.payload.resize(separate);
        for (size_t offset = 0; offset < separate; offset += kChunkBytes) {
          const size_t n = std::min<size_t>(kChunkBytes, separate - offset);
          in.chunks.push_back(MPI_REQUEST_NULL);
          MPI_Irecv(in.payload.data() + offset, static_cast<int>(n), MPI_BYTE, src, kChunkTag, comm_,
                    &in.chunks.back());
        }
      }
      in.head.resize(kPrefix);
      incoming_[static_cast<size_t>(src)].push_back(std::move(in));
    }
    // Deliver complete messages in order per source.
    for (RankId src = 0; src < size_; ++src) {
      auto& queue = incoming_[static_cast<size_t>(src)];
      while (!queue.empty()) {
        In& in = queue.front();
        if (!in.chunks.empty()) {
          int flag = 0;
          MPI_Testall(static_cast<int>(in.chunks.size()), in.chunks.data(), &flag, MPI_STATUSES_IGNORE);
          if (!flag) break;
          in.chunks.clear();
        }
        In ready = std::move(in);
        queue.pop_front();
        any = true;
        if (!dropped_[static_cast<size_t>(src)]) {
          sink.on_message(src, std::span<const std::byte>(ready.head).subspan(sizeof(uint64_t), kFrameBytes),
                          std::move(ready.payload));
        }
      }
    }
    while (!done_.empty()) {
      auto [token, status] = std::move(done_.front());
      done_.pop_front();
      sink.on_sent(token, std::move(status));
      any = true;
    }
    if (any) idle_ = 0;
    return any;
  }

  void wait(std::chrono::microseconds max) override {
    // MPI has no wake-up file descriptor: poll. A few yields first (a peer on
    // the same core may answer at once), then short sleeps, longer the longer
    // it is idle. Sleeping rather than yielding matters on a loaded machine: a
    // thread that yields to a busy process waits out its time slice, one that
    // wakes from a sleep is scheduled at once.
    ++idle_;
    if (idle_ < 16) {
      std::this_thread::yield();
      return;
    }
    const auto nap = std::min<std::chrono::microseconds>(
        max, std::chrono::microseconds(idle_ < 1000 ? 20 : idle_ < 20000 ? 100 : 500));
    std::unique_lock<std::mutex> lock(wake_mu_);
    wake_cv_.wait_for(lock, nap, [&] { return woken_; });
    woken_ = false;
  }

  bool drop_peer(RankId peer) override {
    dropped_[static_cast<size_t>(peer)] = 1;
    return false;
  }

  void wake() override {
    {
      std::lock_guard<std::mutex> lock(wake_mu_);
      woken_ = true;
    }
    wake_cv_.notify_one();
    idle_ = 0;
  }

 private:
  struct Send {
    uint64_t token = 0;
    std::vector<std::byte> head;
    std::vector<MPI_Request> requests;
  };
  struct In {
    std::vector<std::byte> head;
    Payload payload;  // not zero-filled: MPI writes it whole
    std::vector<MPI_Request> chunks;
  };

  MPI_Comm comm_;
  const RankId rank_;
  const int32_t size_;
  std::deque<Send> sends_;
  std::vector<std::deque<In>> incoming_;  // per source, in arrival order
  std::vector<char> dropped_;
  std::deque<std::pair<uint64_t, Status>> done_;
  std::atomic<int64_t> idle_{0};
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  bool woken_ = false;  // guarded by wake_mu_
};

}  // namespace

StatusOr<std::unique_ptr<Wire>> make_mpi_wire() {
  MPI_Comm comm = MPI_COMM_NULL;
  OMNI_RETURN_IF_ERROR(mpi_status(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup(MPI_COMM_WORLD)"));
  OMNI_RETURN_IF_ERROR(mpi_status(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler"));
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  return std::unique_ptr<Wire>(new MpiWire(comm, rank, size));
}

}  // namespace omni::transport_internal

#endif  // OMNI_HAVE_MPI
