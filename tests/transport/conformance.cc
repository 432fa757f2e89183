#include "transport/conformance.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/transport/load_aggregation.h"

namespace omni::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Generous for calls that must succeed (CI machines are shared and slow);
// short for calls that must time out.
constexpr Timeout kLong = 60s;
constexpr Timeout kShort = 200ms;

// A failed check: the rank, the line and what was seen.
#define CONF_EXPECT(t, cond, ...)                                                                        \
  do {                                                                                                   \
    if (!(cond)) {                                                                                       \
      return ::omni::internal_error(::omni::str_cat("rank ", (t).rank(), " (", (t).backend(), "), ",     \
                                                    __FILE__, ":", __LINE__, ": expected " #cond ". ", \
                                                    ##__VA_ARGS__));                                     \
    }                                                                                                    \
  } while (0)

// A call that must succeed.
#define CONF_OK(t, expr)                                                                                       \
  do {                                                                                                         \
    ::omni::Status conf_status_ = (expr);                                                                      \
    if (!conf_status_.ok()) {                                                                                  \
      return conf_status_.with_context(::omni::str_cat("conformance ", __FILE__, ":", __LINE__, ": " #expr)); \
    }                                                                                                          \
  } while (0)

// A call that must fail with status code `want`.
#define CONF_CODE(t, expr, want)                                                                         \
  do {                                                                                                   \
    ::omni::Status conf_status_ = (expr);                                                                \
    CONF_EXPECT(t, conf_status_.code() == (want), #expr " returned ", conf_status_.to_string(),          \
                ", expected ", ::omni::status_code_name(want));                                          \
  } while (0)

// Bytes that depend on (seed, index): a receiver can verify a message of any
// size without a second copy of it.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Bytes [base, base + out.size()) of the pattern of a message of total bytes.
void pattern_slice(std::span<std::byte> out, uint64_t seed, size_t base, size_t total) {
  const size_t words = total / 8;
  size_t pos = base;
  for (; pos % 8 != 0 && pos < base + out.size(); ++pos) {
    const uint64_t v = mix(seed ^ ((pos / 8) * 0x100000001b3ULL));
    out[pos - base] = static_cast<std::byte>(pos / 8 < words ? (v >> (8 * (pos % 8))) & 0xff : mix(seed + pos) & 0xff);
  }
  for (; pos + 8 <= base + out.size() && pos / 8 < words; pos += 8) {
    const uint64_t v = mix(seed ^ ((pos / 8) * 0x100000001b3ULL));
    std::memcpy(out.data() + (pos - base), &v, 8);
  }
  for (; pos < base + out.size(); ++pos) {
    const uint64_t v = mix(seed ^ ((pos / 8) * 0x100000001b3ULL));
    out[pos - base] = static_cast<std::byte>(pos / 8 < words ? (v >> (8 * (pos % 8))) & 0xff : mix(seed + pos) & 0xff);
  }
}

void fill_pattern(std::span<std::byte> out, uint64_t seed) { pattern_slice(out, seed, 0, out.size()); }

// Index of the first byte that differs from fill_pattern(seed), or size().
size_t first_mismatch(std::span<const std::byte> in, uint64_t seed) {
  std::vector<std::byte> expected(std::min<size_t>(in.size(), 1 << 20));
  for (size_t base = 0; base < in.size(); base += expected.size()) {
    const size_t n = std::min(expected.size(), in.size() - base);
    pattern_slice(std::span<std::byte>(expected.data(), n), seed, base, in.size());
    if (std::memcmp(expected.data(), in.data() + base, n) != 0) {
      for (size_t i = 0; i < n; ++i) {
        if (expected[i] != in[base + i]) return base + i;
      }
    }
  }
  return in.size();
}

uint64_t message_seed(RankId src, RankId dst, int32_t tag, int32_t index) {
  return mix((uint64_t(uint32_t(src)) << 48) ^ (uint64_t(uint32_t(dst)) << 32) ^ (uint64_t(uint32_t(tag)) << 8) ^
             uint64_t(uint32_t(index)));
}

// Runs fns on threads of their own and returns the first error.
Status run_threads(std::vector<std::function<Status()>> fns) {
  std::vector<Status> statuses(fns.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < fns.size(); ++i) threads.emplace_back([&, i] { statuses[i] = fns[i](); });
  for (auto& th : threads) th.join();
  for (const Status& s : statuses) {
    if (!s.ok()) return s;
  }
  return ok_status();
}

// --- Collectives -----------------------------------------------------------

Status barrier_repeated(Transport& t) {
  for (int i = 0; i < 50; ++i) CONF_OK(t, t.barrier(kLong));
  return ok_status();
}

// Random lengths (0 included) drawn from a seed every rank shares; values
// depend on the rank so that each op has one right answer.
Status all_reduce_random_sizes(Transport& t) {
  std::mt19937_64 shared_rng(42);
  const ReduceOp ops[] = {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin};
  for (int iter = 0; iter < 30; ++iter) {
    const size_t n = iter == 0 ? 0 : std::uniform_int_distribution<size_t>(1, iter % 5 == 0 ? 200000 : 300)(shared_rng);
    const ReduceOp op = ops[iter % 3];
    const auto value = [&](RankId r, size_t i) -> int64_t {
      return static_cast<int64_t>(mix(uint64_t(iter) * 1000003 + uint64_t(r) * 7919 + i) % 2000001) - 1000000;
    };
    std::vector<int64_t> ints(n);
    std::vector<double> doubles(n);
    for (size_t i = 0; i < n; ++i) {
      ints[i] = value(t.rank(), i);
      doubles[i] = static_cast<double>(value(t.rank(), i)) * 0.25;  // exact in binary: sums are exact too
    }
    CONF_OK(t, t.all_reduce(std::span<int64_t>(ints), op, kLong));
    CONF_OK(t, t.all_reduce(std::span<double>(doubles), op, kLong));
    for (size_t i = 0; i < n; ++i) {
      int64_t expected = value(0, i);
      for (RankId r = 1; r < t.size(); ++r) {
        const int64_t v = value(r, i);
        expected = op == ReduceOp::kSum ? expected + v : op == ReduceOp::kMax ? std::max(expected, v) : std::min(expected, v);
      }
      CONF_EXPECT(t, ints[i] == expected, "iteration ", iter, " op ", reduce_op_name(op), " element ", i, " of ", n,
                  ": got ", ints[i], ", expected ", expected);
      CONF_EXPECT(t, doubles[i] == static_cast<double>(expected) * 0.25, "iteration ", iter, " (double) element ", i,
                  ": got ", doubles[i], ", expected ", static_cast<double>(expected) * 0.25);
    }
  }
  return ok_status();
}

Status all_reduce_int64_overflow(Transport& t) {
  constexpr int64_t kBig = std::numeric_limits<int64_t>::max() / 2 + 1;
  std::vector<int64_t> data = {kBig, 1, -kBig};
  const Status s = t.all_reduce(std::span<int64_t>(data), ReduceOp::kSum, kLong);
  CONF_EXPECT(t, s.code() == StatusCode::kOutOfRange, "got ", s.to_string());
  CONF_EXPECT(t, data[0] == std::numeric_limits<int64_t>::max(), "overflowed element holds ", data[0]);
  CONF_EXPECT(t, data[1] == t.size(), "untouched element holds ", data[1]);
  CONF_EXPECT(t, data[2] == std::numeric_limits<int64_t>::min(), "underflowed element holds ", data[2]);
  // The group is still usable afterwards.
  std::vector<int64_t> one = {1};
  CONF_OK(t, t.all_reduce(std::span<int64_t>(one), ReduceOp::kSum, kLong));
  CONF_EXPECT(t, one[0] == t.size());
  return ok_status();
}

Status all_gather_random_sizes(Transport& t) {
  std::mt19937_64 shared_rng(7);
  for (int iter = 0; iter < 20; ++iter) {
    const size_t n = iter == 0 ? 0 : std::uniform_int_distribution<size_t>(1, iter % 4 == 0 ? 1 << 20 : 100)(shared_rng);
    std::vector<std::byte> mine(n);
    fill_pattern(mine, message_seed(t.rank(), -1, iter, 0));
    std::vector<std::byte> all(n * static_cast<size_t>(t.size()), std::byte{0x5a});
    CONF_OK(t, t.all_gather(mine, all, kLong));
    for (RankId r = 0; r < t.size(); ++r) {
      const std::span<const std::byte> slot(all.data() + static_cast<size_t>(r) * n, n);
      const size_t bad = first_mismatch(slot, message_seed(r, -1, iter, 0));
      CONF_EXPECT(t, bad == n, "iteration ", iter, ": slot of rank ", r, " (", n, " bytes) differs at byte ", bad);
    }
  }
  return ok_status();
}

Status broadcast_from_every_root(Transport& t) {
  std::mt19937_64 shared_rng(11);
  for (int iter = 0; iter < 12; ++iter) {
    const RankId root = iter % t.size();
    const size_t n = iter == 0 ? 0 : std::uniform_int_distribution<size_t>(1, iter % 3 == 0 ? 3 << 20 : 500)(shared_rng);
    std::vector<std::byte> data(n, std::byte{0});
    if (t.rank() == root) fill_pattern(data, message_seed(root, -2, iter, 0));
    CONF_OK(t, t.broadcast(data, root, kLong));
    const size_t bad = first_mismatch(data, message_seed(root, -2, iter, 0));
    CONF_EXPECT(t, bad == n, "iteration ", iter, " root ", root, ": ", n, " bytes differ at byte ", bad);
  }
  return ok_status();
}

// --- Point-to-point ----------------------------------------------------------

// Every rank sends to its right neighbour while it receives from its left one
// (a sender waits for its receiver, so the send runs on a thread of its own).
Status ring_of_sizes(Transport& t) {
  const RankId right = (t.rank() + 1) % t.size();
  const RankId left = (t.rank() + t.size() - 1) % t.size();
  const std::vector<size_t> sizes = {0, 1, 7, 8, 4095, 4096, 65537, (1 << 20) + 3, 9 << 20};
  return run_threads({
      [&]() -> Status {
        for (size_t i = 0; i < sizes.size(); ++i) {
          std::vector<std::byte> msg(sizes[i]);
          fill_pattern(msg, message_seed(t.rank(), right, 3, static_cast<int32_t>(i)));
          CONF_OK(t, t.send(right, 3, msg, kLong));
        }
        return ok_status();
      },
      [&]() -> Status {
        for (size_t i = 0; i < sizes.size(); ++i) {
          std::vector<std::byte> msg;
          if (i % 2 == 0) {
            msg.resize(sizes[i]);
            CONF_OK(t, t.recv(left, 3, msg, kLong));
          } else {
            StatusOr<std::vector<std::byte>> got = t.recv_message(left, 3, kLong);
            CONF_OK(t, got.status());
            msg = std::move(*got);
          }
          CONF_EXPECT(t, msg.size() == sizes[i], "message ", i, " has ", msg.size(), " bytes, expected ", sizes[i]);
          const size_t bad = first_mismatch(msg, message_seed(left, t.rank(), 3, static_cast<int32_t>(i)));
          CONF_EXPECT(t, bad == msg.size(), "message ", i, " (", msg.size(), " bytes) differs at byte ", bad);
        }
        return ok_status();
      },
  });
}

// 256 MB from rank 0 to rank 1 and from rank 2 to rank 3 at the same time.
Status messages_of_256mb(Transport& t) {
  constexpr size_t kBytes = size_t{256} << 20;
  const RankId me = t.rank();
  if (me >= 4) return ok_status();
  if (me % 2 == 0) {
    std::vector<std::byte> msg(kBytes);
    fill_pattern(msg, message_seed(me, me + 1, 9, 0));
    CONF_OK(t, t.send(me + 1, 9, msg, kLong));
  } else {
    std::vector<std::byte> msg(kBytes);
    CONF_OK(t, t.recv(me - 1, 9, msg, kLong));
    const size_t bad = first_mismatch(msg, message_seed(me - 1, me, 9, 0));
    CONF_EXPECT(t, bad == kBytes, "256 MB message differs at byte ", bad);
  }
  return t.barrier(kLong);
}

// Every rank talks to every other rank on 24 tags at once, 3 messages per
// (peer, tag), one sender and one receiver thread per tag. The k-th send of a
// thread goes to rank + k and the k-th receive comes from rank - k, so no
// thread waits on a peer that waits on it. Messages of one (peer, tag) must
// arrive in order.
Status many_concurrent_tags(Transport& t) {
  constexpr int32_t kTags = 24;
  constexpr int32_t kPerPeer = 3;
  const int32_t n = t.size();
  std::vector<std::function<Status()>> fns;
  for (int32_t tag = 0; tag < kTags; ++tag) {
    const int32_t wire_tag = tag * 997 % (kMaxTag + 1);  // spread over the tag space
    const auto size_of = [](RankId src, RankId dst, int32_t tg, int32_t i) {
      return static_cast<size_t>(mix(message_seed(src, dst, tg, i)) % 70000);
    };
    fns.push_back([&, wire_tag, size_of]() -> Status {
      for (int32_t k = 1; k < n; ++k) {
        const RankId dst = (t.rank() + k) % n;
        for (int32_t i = 0; i < kPerPeer; ++i) {
          std::vector<std::byte> msg(size_of(t.rank(), dst, wire_tag, i));
          fill_pattern(msg, message_seed(t.rank(), dst, wire_tag, i));
          CONF_OK(t, t.send(dst, wire_tag, msg, kLong));
        }
      }
      return ok_status();
    });
    fns.push_back([&, wire_tag, size_of]() -> Status {
      for (int32_t k = 1; k < n; ++k) {
        const RankId src = (t.rank() - k + n) % n;
        for (int32_t i = 0; i < kPerPeer; ++i) {
          StatusOr<std::vector<std::byte>> got = t.recv_message(src, wire_tag, kLong);
          CONF_OK(t, got.status());
          const size_t expected = size_of(src, t.rank(), wire_tag, i);
          CONF_EXPECT(t, got->size() == expected, "tag ", wire_tag, " from rank ", src, " message ", i, " has ",
                      got->size(), " bytes, expected ", expected, " (out of order?)");
          const size_t bad = first_mismatch(*got, message_seed(src, t.rank(), wire_tag, i));
          CONF_EXPECT(t, bad == got->size(), "tag ", wire_tag, " from rank ", src, " message ", i, " differs at ", bad);
        }
      }
      return ok_status();
    });
  }
  return run_threads(std::move(fns));
}

// --- Timeouts ----------------------------------------------------------------

Status elapsed_within(Transport& t, Clock::time_point start, Timeout at_least, const char* what) {
  const auto elapsed = Clock::now() - start;
  CONF_EXPECT(t, elapsed >= at_least - 5ms, what, " returned after ",
              std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), " ms, before its timeout");
  CONF_EXPECT(t, elapsed < at_least + 10s, what, " took ",
              std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), " ms");
  return ok_status();
}

// A send and a recv nobody answers time out; the next message on the same
// (peer, tag) is then delivered, not the abandoned one.
Status point_to_point_timeouts(Transport& t) {
  if (t.rank() > 1) {
    // Bystanders take part in the two barriers only.
    CONF_OK(t, t.barrier(kLong));
    return t.barrier(kLong);
  }
  const RankId peer = 1 - t.rank();
  auto start = Clock::now();
  if (t.rank() == 0) {
    std::vector<std::byte> stale(1000, std::byte{1});
    CONF_CODE(t, t.send(peer, 5, stale, kShort), StatusCode::kDeadlineExceeded);
    CONF_OK(t, elapsed_within(t, start, kShort, "send"));
  } else {
    std::vector<std::byte> buf(1000);
    CONF_CODE(t, t.recv(peer, 6, buf, kShort), StatusCode::kDeadlineExceeded);
    CONF_OK(t, elapsed_within(t, start, kShort, "recv"));
  }
  CONF_OK(t, t.barrier(kLong));  // both timed out before anything else happens
  std::vector<std::byte> fresh(1000);
  if (t.rank() == 0) {
    fill_pattern(fresh, 77);
    CONF_OK(t, t.send(peer, 5, fresh, kLong));
    fill_pattern(fresh, 78);
    CONF_OK(t, t.send(peer, 6, fresh, kLong));
  } else {
    CONF_OK(t, t.recv(peer, 5, fresh, kLong));
    CONF_EXPECT(t, first_mismatch(fresh, 77) == fresh.size(), "tag 5 delivered the abandoned message");
    CONF_OK(t, t.recv(peer, 6, fresh, kLong));
    CONF_EXPECT(t, first_mismatch(fresh, 78) == fresh.size(), "tag 6 delivered the wrong message");
  }
  // A size mismatch fails on both sides and consumes the message; the next one works.
  if (t.rank() == 0) {
    std::vector<std::byte> ten(10, std::byte{3});
    CONF_CODE(t, t.send(peer, 8, ten, kLong), StatusCode::kInvalidArgument);
    CONF_OK(t, t.send(peer, 8, ten, kLong));
  } else {
    std::vector<std::byte> twenty(20);
    CONF_CODE(t, t.recv(peer, 8, twenty, kLong), StatusCode::kInvalidArgument);
    std::vector<std::byte> ten(10);
    CONF_OK(t, t.recv(peer, 8, ten, kLong));
    CONF_EXPECT(t, ten[9] == std::byte{3});
  }
  return t.barrier(kLong);
}

// The last rank joins a barrier late: the others time out; once it has joined,
// the group's collectives line up again.
Status collective_timeout_then_recovery(Transport& t) {
  const RankId late = t.size() - 1;
  if (t.rank() != late) {
    const auto start = Clock::now();
    CONF_CODE(t, t.barrier(kShort), StatusCode::kDeadlineExceeded);
    CONF_OK(t, elapsed_within(t, start, kShort, "barrier"));
    std::vector<int64_t> x = {1};
    CONF_CODE(t, t.all_reduce(std::span<int64_t>(x), ReduceOp::kSum, 0ms), StatusCode::kDeadlineExceeded);
  } else {
    std::this_thread::sleep_for(kShort + 300ms);
    // Joins the barrier and the all_reduce the others gave up on; they may
    // complete or not (the others left), but must not hang.
    t.barrier(kShort).ignore();
    std::vector<int64_t> x = {1};
    t.all_reduce(std::span<int64_t>(x), ReduceOp::kSum, kShort).ignore();
  }
  std::vector<int64_t> sum = {t.rank()};
  CONF_OK(t, t.all_reduce(std::span<int64_t>(sum), ReduceOp::kSum, kLong));
  CONF_EXPECT(t, sum[0] == int64_t{t.size()} * (t.size() - 1) / 2, "sum after recovery is ", sum[0]);
  return ok_status();
}

Status invalid_arguments(Transport& t) {
  std::vector<std::byte> buf(4);
  CONF_CODE(t, t.send(t.rank(), 0, buf, kShort), StatusCode::kInvalidArgument);
  CONF_CODE(t, t.send(t.size(), 0, buf, kShort), StatusCode::kInvalidArgument);
  CONF_CODE(t, t.recv(-1, 0, buf, kShort), StatusCode::kInvalidArgument);
  if (t.size() > 1) {
    const RankId peer = (t.rank() + 1) % t.size();
    CONF_CODE(t, t.send(peer, -1, buf, kShort), StatusCode::kInvalidArgument);
    CONF_CODE(t, t.recv(peer, kMaxTag + 1, buf, kShort), StatusCode::kInvalidArgument);
  }
  CONF_CODE(t, t.mark_failed(t.rank()), StatusCode::kInvalidArgument);
  CONF_CODE(t, t.mark_failed(t.size()), StatusCode::kInvalidArgument);
  CONF_CODE(t, t.broadcast(buf, t.size(), kShort), StatusCode::kInvalidArgument);
  std::vector<std::byte> too_small(1);
  CONF_CODE(t, t.all_gather(buf, too_small, kShort), StatusCode::kInvalidArgument);
  CONF_EXPECT(t, t.failed_ranks().empty());
  return t.barrier(kLong);
}

// --- Failed peer -------------------------------------------------------------

// The last rank stops taking part; the survivors time out, mark it failed and
// carry on among themselves. A duplicate made before the failure (where
// nobody marked it) tells the failed rank when the survivors are done.
Status failed_peer(Transport& t) {
  const RankId failed = t.size() - 1;
  StatusOr<std::unique_ptr<Transport>> side = t.duplicate(kLong);
  CONF_OK(t, side.status());
  std::vector<int64_t> all = {1};
  CONF_OK(t, t.all_reduce(std::span<int64_t>(all), ReduceOp::kSum, kLong));
  CONF_EXPECT(t, all[0] == t.size());
  if (t.rank() == failed) {
    std::vector<std::byte> done(1);
    CONF_OK(t, (*side)->recv(0, 1, done, kLong));
    // The collective the survivors gave up on: joining it late must not hang.
    std::vector<int64_t> late = {1};
    t.all_reduce(std::span<int64_t>(late), ReduceOp::kSum, kShort).ignore();
    return ok_status();
  }
  // Times out, or sees UNAVAILABLE when another survivor marks the rank
  // failed first (both are the contract).
  std::vector<int64_t> x = {1};
  const Status gave_up = t.all_reduce(std::span<int64_t>(x), ReduceOp::kSum, kShort);
  CONF_EXPECT(t, gave_up.code() == StatusCode::kDeadlineExceeded || gave_up.code() == StatusCode::kUnavailable,
              "all_reduce without the failed rank returned ", gave_up.to_string());
  CONF_OK(t, t.mark_failed(failed));
  CONF_OK(t, t.mark_failed(failed));  // twice is fine
  CONF_EXPECT(t, t.failed_ranks() == std::vector<RankId>{failed});
  CONF_EXPECT(t, t.is_failed(failed) && !t.is_failed(t.rank()));
  CONF_EXPECT(t, static_cast<int32_t>(t.live_ranks().size()) == t.size() - 1);
  // Collectives among the survivors.
  std::vector<int64_t> sum = {t.rank(), 1};
  CONF_OK(t, t.all_reduce(std::span<int64_t>(sum), ReduceOp::kSum, kLong));
  CONF_EXPECT(t, sum[0] == int64_t{failed} * (failed - 1) / 2 && sum[1] == failed, "survivor sum ", sum[0], ", ",
              sum[1]);
  std::vector<double> mx = {static_cast<double>(t.rank())};
  CONF_OK(t, t.all_reduce(std::span<double>(mx), ReduceOp::kMax, kLong));
  CONF_EXPECT(t, mx[0] == failed - 1, "survivor max ", mx[0]);
  std::vector<std::byte> mine(16, static_cast<std::byte>(t.rank() + 1));
  std::vector<std::byte> gathered(16 * static_cast<size_t>(t.size()), std::byte{0x77});
  CONF_OK(t, t.all_gather(mine, gathered, kLong));
  for (RankId r = 0; r < t.size(); ++r) {
    const std::byte want = r == failed ? std::byte{0} : static_cast<std::byte>(r + 1);
    for (size_t i = 0; i < 16; ++i) {
      CONF_EXPECT(t, gathered[static_cast<size_t>(r) * 16 + i] == want, "all_gather slot of rank ", r, " byte ", i);
    }
  }
  std::vector<std::byte> b(100, std::byte{0});
  if (t.rank() == 0) std::fill(b.begin(), b.end(), std::byte{9});
  CONF_OK(t, t.broadcast(b, 0, kLong));
  CONF_EXPECT(t, b[99] == std::byte{9});
  CONF_CODE(t, t.broadcast(b, failed, kLong), StatusCode::kUnavailable);
  CONF_CODE(t, t.send(failed, 1, b, kLong), StatusCode::kUnavailable);
  CONF_CODE(t, t.recv(failed, 1, b, kLong), StatusCode::kUnavailable);
  CONF_OK(t, t.barrier(kLong));
  // A duplicate inherits the failed set.
  StatusOr<std::unique_ptr<Transport>> dup = t.duplicate(kLong);
  CONF_OK(t, dup.status());
  CONF_EXPECT(t, (*dup)->failed_ranks() == std::vector<RankId>{failed});
  std::vector<int64_t> one = {1};
  CONF_OK(t, (*dup)->all_reduce(std::span<int64_t>(one), ReduceOp::kSum, kLong));
  CONF_EXPECT(t, one[0] == failed);
  CONF_OK(t, t.barrier(kLong));
  if (t.rank() == 0) {
    std::vector<std::byte> done(1);
    CONF_OK(t, (*side)->send(failed, 1, done, kLong));
  }
  return ok_status();
}

// Survivors that disagree on the failed set never get a result.
Status failed_set_disagreement(Transport& t) {
  if (t.size() < 3) return ok_status();
  const RankId failed = t.size() - 1;
  if (t.rank() == failed) return ok_status();
  if (t.rank() != 0) CONF_OK(t, t.mark_failed(failed));  // rank 0 does not
  std::vector<int64_t> x = {1};
  const Status s = t.all_reduce(std::span<int64_t>(x), ReduceOp::kSum, 500ms);
  CONF_EXPECT(t,
              s.code() == StatusCode::kFailedPrecondition || s.code() == StatusCode::kDeadlineExceeded ||
                  s.code() == StatusCode::kUnavailable,
              "a collective with disagreeing failed sets returned ", s.to_string());
  return ok_status();
}

// mark_failed from another thread wakes a collective that waits for that rank.
Status mark_failed_wakes_waiting_collective(Transport& t) {
  const RankId failed = t.size() - 1;
  if (t.rank() == failed) {
    // Joins late, once the others gave up on it, so that no backend keeps a
    // collective pending forever; the outcome does not matter.
    std::this_thread::sleep_for(400ms);
    t.barrier(kShort).ignore();
    return ok_status();
  }
  std::atomic<bool> entered{false};
  Status waited;
  std::thread waiter([&] {
    entered = true;
    waited = t.barrier(kLong);
  });
  while (!entered) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);
  const auto start = Clock::now();
  CONF_OK(t, t.mark_failed(failed));
  waiter.join();
  CONF_EXPECT(t, waited.code() == StatusCode::kUnavailable || waited.code() == StatusCode::kDeadlineExceeded,
              "barrier waiting for a rank marked failed returned ", waited.to_string());
  CONF_EXPECT(t, Clock::now() - start < 20s, "barrier did not wake up when the rank was marked failed");
  return ok_status();
}

// --- Threads: a planner and an engine thread with their own transports ----------

Status duplicate_runs_concurrently(Transport& t) {
  StatusOr<std::unique_ptr<Transport>> dup = t.duplicate(kLong);
  CONF_OK(t, dup.status());
  Transport& other = **dup;
  const RankId right = (t.rank() + 1) % t.size();
  const RankId left = (t.rank() + t.size() - 1) % t.size();
  const auto reducer = [&t](Transport& tr, int64_t scale) -> Status {
    for (int i = 0; i < 40; ++i) {
      std::vector<int64_t> v = {scale * tr.rank(), i};
      CONF_OK(tr, tr.all_reduce(std::span<int64_t>(v), ReduceOp::kSum, kLong));
      CONF_EXPECT(t, v[0] == scale * tr.size() * (tr.size() - 1) / 2 && v[1] == int64_t{i} * tr.size(),
                  "interleaved all_reduce ", i, " got ", v[0], ", ", v[1]);
    }
    return ok_status();
  };
  // The same tag on both transports carries different streams.
  const auto talker = [&, right, left](Transport& tr, uint8_t mark) -> Status {
    if (tr.size() == 1) return ok_status();
    for (int i = 0; i < 20; ++i) {
      std::vector<std::byte> out(100, static_cast<std::byte>(mark));
      std::vector<std::byte> in(100);
      Status sent;
      std::thread sender([&] { sent = tr.send(right, 1, out, kLong); });
      const Status got = tr.recv(left, 1, in, kLong);
      sender.join();
      CONF_OK(tr, sent);
      CONF_OK(tr, got);
      CONF_EXPECT(tr, in[50] == static_cast<std::byte>(mark), "message ", i, " crossed transports");
    }
    return ok_status();
  };
  return run_threads({[&] { return reducer(t, 1); }, [&] { return reducer(other, 3); },
                      [&] { return talker(t, 0xa1); }, [&] { return talker(other, 0xb2); }});
}

// --- Load aggregation (issue 6 item 4) ------------------------------------------

Status load_aggregation(Transport& t) {
  constexpr int32_t kLayers = 5;
  constexpr int32_t kExperts = 17;
  const auto count = [](RankId r, int32_t i) { return static_cast<int64_t>(mix(uint64_t(r) * 131 + uint64_t(i)) % 100000); };
  std::vector<int64_t> counts(kLayers * kExperts);
  std::vector<double> weights(counts.size());
  for (int32_t i = 0; i < kLayers * kExperts; ++i) {
    counts[static_cast<size_t>(i)] = count(t.rank(), i);
    weights[static_cast<size_t>(i)] = 1.0 / (1.0 + static_cast<double>(count(t.rank(), i)));  // inexact on purpose
  }
  StatusOr<LoadMatrix> c = LoadMatrix::from_counts(kLayers, kExperts, counts);
  StatusOr<LoadMatrix> w = LoadMatrix::from_weights(kLayers, kExperts, weights);
  CONF_OK(t, c.status());
  CONF_OK(t, w.status());
  CONF_OK(t, all_reduce_load(t, *c, kLong));
  CONF_OK(t, all_reduce_load(t, *w, kLong));
  CONF_EXPECT(t, c->is_counts() && !w->is_counts());
  for (int32_t i = 0; i < kLayers * kExperts; ++i) {
    int64_t expected = 0;
    for (RankId r = 0; r < t.size(); ++r) expected += count(r, i);
    CONF_EXPECT(t, c->counts()[static_cast<size_t>(i)] == expected, "count ", i, " is ", c->counts()[size_t(i)],
                ", expected ", expected);
  }
  // Every rank holds bitwise the same weights: gather them and compare.
  std::vector<std::byte> all(w->values().size_bytes() * static_cast<size_t>(t.size()));
  CONF_OK(t, t.all_gather(std::as_bytes(w->values()), all, kLong));
  for (RankId r = 0; r < t.size(); ++r) {
    CONF_EXPECT(t, std::memcmp(all.data() + static_cast<size_t>(r) * w->values().size_bytes(), w->values().data(),
                               w->values().size_bytes()) == 0,
                "rank ", r, " holds different summed weights");
  }
  double first = 0;
  for (RankId r = 0; r < t.size(); ++r) first += 1.0 / (1.0 + static_cast<double>(count(r, 0)));
  CONF_EXPECT(t, std::abs(w->values()[0] - first) < 1e-12, "summed weight ", w->values()[0], ", expected ", first);
  // Shapes that differ between ranks fail on every rank and change nothing.
  StatusOr<LoadMatrix> odd = LoadMatrix::zeros(kLayers + (t.rank() == 0 ? 1 : 0), kExperts);
  CONF_OK(t, odd.status());
  const LoadMatrix before = *odd;
  CONF_CODE(t, all_reduce_load(t, *odd, kLong), StatusCode::kInvalidArgument);
  CONF_EXPECT(t, *odd == before);
  // Counts whose sum over ranks exceeds a layer's limit (kMaxLayerLoad) are reported, not wrapped.
  StatusOr<LoadMatrix> huge = LoadMatrix::from_counts(1, 1, {kMaxLayerLoad / 2 + 1});
  CONF_OK(t, huge.status());
  if (t.size() > 1) CONF_CODE(t, all_reduce_load(t, *huge, kLong), StatusCode::kOutOfRange);
  return ok_status();
}

}  // namespace

const std::vector<ConformanceCase>& conformance_cases() {
  static const std::vector<ConformanceCase> cases = {
      {"BarrierRepeated", 1, false, barrier_repeated},
      {"AllReduceRandomSizesAllOps", 1, false, all_reduce_random_sizes},
      {"AllReduceInt64OverflowIsReported", 1, false, all_reduce_int64_overflow},
      {"AllGatherRandomSizes", 1, false, all_gather_random_sizes},
      {"BroadcastFromEveryRoot", 1, false, broadcast_from_every_root},
      {"InvalidArgumentsAreRejected", 1, false, invalid_arguments},
      {"RingOfMessageSizesFrom0BytesTo9MB", 2, false, ring_of_sizes},
      {"ManyConcurrentTagsKeepOrder", 2, false, many_concurrent_tags},
      {"Messages256MB", 4, true, messages_of_256mb},
      {"PointToPointTimeoutsLeaveNoStaleMessage", 2, false, point_to_point_timeouts},
      {"CollectiveTimeoutThenRecovery", 2, false, collective_timeout_then_recovery},
      {"FailedPeerSurvivorsCarryOn", 3, false, failed_peer},
      {"FailedSetDisagreementGivesNoResult", 4, false, failed_set_disagreement},
      {"MarkFailedWakesWaitingCollective", 2, false, mark_failed_wakes_waiting_collective},
      {"DuplicateRunsConcurrently", 1, false, duplicate_runs_concurrently},
      {"LoadAggregationAgreesOnEveryRank", 1, false, load_aggregation},
  };
  return cases;
}

}  // namespace omni::testing
