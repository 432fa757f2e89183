#include "omniplacement/capture/activation_recorder.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <thread>
#include <utility>

#include "recorder_test_peer.h"
#include "omniplacement/core/str_cat.h"

namespace omni {
namespace {

constexpr size_t kCacheLine = 64;
constexpr int64_t kIdsPerLine = kCacheLine / sizeof(int64_t);
// Bounds on what create() accepts, so that buffer sizes stay far from overflow.
constexpr int32_t kMaxShards = 256;
constexpr int64_t kMaxCounterElements = int64_t{1} << 28;  // all shards, both buffers (2 GiB)
constexpr int64_t kMaxPairElements = int64_t{1} << 26;     // co-activation triangle, all layers
constexpr int32_t kMaxTopK = 1024;
constexpr int32_t kMaxHistory = 1 << 20;

// Shard states: idle, or claimed by a record() call writing buffer 0 or 1.
constexpr uint32_t kIdle = 0;
constexpr uint32_t writing(uint32_t buffer) { return 1 + buffer; }
// Never claimed by record() and never waited for by take_window(): set by the
// test hook (ActivationRecorderTestPeer) to force the overflow path.
constexpr uint32_t kReservedForTests = 100;

// Per-thread start of the shard search. A thread keeps its hint, so it keeps
// finding the same free shard and that shard's rows stay in its core's cache.
// initial-exec: no lazy TLS allocation even when the library is dlopen'ed
// (the Python module), which would allocate on a thread's first record().
std::atomic<uint32_t> g_next_thread_hint{0};
[[gnu::tls_model("initial-exec")]] thread_local uint32_t t_thread_hint = 0;

uint32_t thread_hint() {
  if (t_thread_hint == 0) t_thread_hint = g_next_thread_hint.fetch_add(1, std::memory_order_relaxed) + 1;
  return t_thread_hint - 1;
}

// Gate weights are non-negative and finite; anything else (NaN, inf, < 0) counts as 0
// so that a window always converts to a valid kWeights LoadMatrix.
inline double clean_weight(float w) {
  return (w >= 0.0f && w <= std::numeric_limits<float>::max()) ? static_cast<double>(w) : 0.0;
}

void spin_pause(int& spins) {
  if (++spins > 64) std::this_thread::yield();  // off the hot path: take_window() only
}

// A zeroed array whose first element starts a cache line, so that rows of
// different shards never share a line (no false sharing between threads).
template <typename T>
class LineAlignedArray {
 public:
  LineAlignedArray() = default;
  LineAlignedArray(const LineAlignedArray&) = delete;  // data_ points into storage_
  LineAlignedArray& operator=(const LineAlignedArray&) = delete;
  LineAlignedArray(LineAlignedArray&&) noexcept = default;  // the heap block moves with its pointer
  LineAlignedArray& operator=(LineAlignedArray&&) noexcept = default;
  explicit LineAlignedArray(int64_t n) : storage_(static_cast<size_t>(n) + kCacheLine / sizeof(T), T{}) {
    void* p = storage_.data();
    size_t space = storage_.size() * sizeof(T);
    data_ = static_cast<T*>(std::align(kCacheLine, static_cast<size_t>(n) * sizeof(T), p, space));
  }
  T* data() const { return data_; }

 private:
  std::vector<T> storage_;
  T* data_ = nullptr;
};

}  // namespace

// Counters of one buffer that are not per id. Written only by the record()
// call that owns the shard, read and reset by take_window() after it has made
// sure no call writes this buffer.
struct BufferStats {
  bool used = false;  // some call claimed the shard on this buffer in this window
  int64_t records = 0;
  int64_t padding = 0;
  int64_t invalid = 0;
  int64_t rejected = 0;
  int32_t invalid_layer = -1;
  int32_t invalid_id = -1;
};

struct alignas(kCacheLine) ActivationRecorder::Shard {
  // kIdle or writing(buffer). Alone on its cache line: other threads only read
  // it when their own shard is busy, and take_window() polls it.
  std::atomic<uint32_t> state{kIdle};
  alignas(kCacheLine) LineAlignedArray<int64_t> counts[2];  // [num_layers, row_stride_] per buffer
  LineAlignedArray<double> weights[2];                      // same shape; empty unless tracked
  BufferStats stats[2];
  uint64_t tokens = 0;  // tokens seen by this shard, for co-activation sampling
};

// Used when every shard is claimed: relaxed atomic additions, exact but slower.
// A call registers in inflight[buffer] so that take_window() can wait for it.
struct ActivationRecorder::Overflow {
  alignas(kCacheLine) std::atomic<int64_t> inflight[2] = {0, 0};
  alignas(kCacheLine) std::unique_ptr<std::atomic<int64_t>[]> counts[2];
  std::unique_ptr<std::atomic<double>[]> weights[2];
  std::atomic<int64_t> records[2] = {0, 0};
  std::atomic<int64_t> padding[2] = {0, 0};
  std::atomic<int64_t> invalid[2] = {0, 0};
  std::atomic<int64_t> rejected[2] = {0, 0};
  std::atomic<int64_t> calls[2] = {0, 0};
  std::atomic<int64_t> invalid_example[2] = {0, 0};  // (layer << 32) | uint32 id
  std::atomic<uint64_t> tokens{0};
};

Status CaptureWindow::check() const {
  if (num_invalid == 0) return ok_status();
  return invalid_argument_error(str_cat("window ", index, " (steps [", step_begin, ", ", step_end, ")): ",
                                        num_invalid, " invalid expert ids (", num_rejected_calls,
                                        " rejected record() calls), e.g. layer ", invalid_layer, " id ",
                                        invalid_id, "; valid: layer in [0, ", load.num_layers(),
                                        "), id in [0, ", load.num_experts(), ") or -1 for padding"));
}

ActivationRecorder::ActivationRecorder(RecorderConfig config) : config_(std::move(config)) {}
ActivationRecorder::~ActivationRecorder() = default;

StatusOr<std::unique_ptr<ActivationRecorder>> ActivationRecorder::create(RecorderConfig config) {
  const bool slots = config.id_space == IdSpace::kGlobalSlot;
  OMNI_RETURN_IF_ERROR(check_matrix_shape(slots ? "activation recorder [layers, global slots]"
                                                : "activation recorder [layers, experts]",
                                          config.num_layers, kMaxLayers, config.num_ids,
                                          slots ? static_cast<int64_t>(kMaxSlotsPerLayer) : kMaxExperts));
  if (!config.ids_per_layer.empty()) {
    if (std::ssize(config.ids_per_layer) != config.num_layers)
      return invalid_argument_error(str_cat("ids_per_layer has ", config.ids_per_layer.size(),
                                            " values; expected num_layers = ", config.num_layers, " (or none)"));
    for (int32_t l = 0; l < config.num_layers; ++l) {
      const int32_t w = config.ids_per_layer[static_cast<size_t>(l)];
      if (w < 1 || w > config.num_ids)
        return invalid_argument_error(
            str_cat("ids_per_layer[", l, "] = ", w, "; valid: [1, num_ids = ", config.num_ids, "]"));
    }
  }
  if (config.num_shards == 0)
    config.num_shards = static_cast<int32_t>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
  if (config.num_shards < 1 || config.num_shards > kMaxShards)
    return invalid_argument_error(
        str_cat("num_shards = ", config.num_shards, "; valid: [1, ", kMaxShards, "] or 0 for the default"));
  const int64_t stride = (int64_t{config.num_ids} + kIdsPerLine - 1) / kIdsPerLine * kIdsPerLine;
  const int64_t per_buffer = stride * config.num_layers;
  if (per_buffer * 2 * config.num_shards > kMaxCounterElements)
    return resource_exhausted_error(str_cat("activation recorder buffers: ", config.num_shards, " shards x 2 x ",
                                            config.num_layers, " layers x ", stride, " ids exceed ",
                                            kMaxCounterElements, " counters; use fewer shards"));
  if (config.history < 1 || config.history > kMaxHistory)
    return invalid_argument_error(str_cat("history = ", config.history, "; valid: [1, ", kMaxHistory, "]"));
  if (!(config.ema_decay >= 0.0 && config.ema_decay < 1.0))
    return invalid_argument_error(str_cat("ema_decay = ", config.ema_decay, "; valid: [0, 1)"));
  if (config.top_k < 0 || config.top_k > kMaxTopK)
    return invalid_argument_error(str_cat("top_k = ", config.top_k, "; valid: [0, ", kMaxTopK, "]"));
  if (config.coactivation_every < 0)
    return invalid_argument_error(
        str_cat("coactivation_every = ", config.coactivation_every, "; valid: 0 (off) or >= 1"));
  if (config.coactivation_every > 0) {
    if (config.top_k < 1)
      return invalid_argument_error("co-activation sampling needs top_k >= 1 (ids per token)");
    const int64_t pairs = CoactivationCounts::pair_count(config.num_ids) * config.num_layers;
    if (pairs > kMaxPairElements)
      return resource_exhausted_error(str_cat("co-activation of ", config.num_layers, " layers x ", config.num_ids,
                                              " ids needs ", pairs, " pair counters; at most ",
                                              kMaxPairElements));
  }

  std::unique_ptr<ActivationRecorder> r(new ActivationRecorder(std::move(config)));
  const RecorderConfig& c = r->config_;
  r->row_stride_ = stride;
  r->widths_ = c.ids_per_layer.empty() ? std::vector<int32_t>(static_cast<size_t>(c.num_layers), c.num_ids)
                                       : c.ids_per_layer;
  r->shards_ = std::make_unique<Shard[]>(static_cast<size_t>(c.num_shards));
  for (int32_t s = 0; s < c.num_shards; ++s) {
    for (int b = 0; b < 2; ++b) {
      r->shards_[static_cast<size_t>(s)].counts[b] = LineAlignedArray<int64_t>(per_buffer);
      if (c.track_gate_weights) r->shards_[static_cast<size_t>(s)].weights[b] = LineAlignedArray<double>(per_buffer);
    }
  }
  r->overflow_ = std::make_unique<Overflow>();
  const size_t elements = static_cast<size_t>(c.num_layers) * static_cast<size_t>(c.num_ids);
  for (int b = 0; b < 2; ++b) {
    r->overflow_->counts[b] = std::make_unique<std::atomic<int64_t>[]>(elements);
    if (c.track_gate_weights) r->overflow_->weights[b] = std::make_unique<std::atomic<double>[]>(elements);
  }
  if (c.coactivation_every > 0) {
    r->pairs_ = std::make_unique<std::atomic<int64_t>[]>(
        static_cast<size_t>(CoactivationCounts::pair_count(c.num_ids) * c.num_layers));
    r->sampled_tokens_ = std::make_unique<std::atomic<int64_t>[]>(static_cast<size_t>(c.num_layers));
  }
  WindowHistoryOptions ho;
  ho.ema_decay = c.ema_decay;
  OMNI_ASSIGN_OR_RETURN(WindowHistory ema, WindowHistory::create(ho));
  {
    MutexLock lock(r->mu_);  // nobody else sees r yet; the lock only satisfies the annotations
    r->ema_ = std::move(ema);
    r->ring_.reserve(static_cast<size_t>(std::min(c.history, 1024)));
  }
  return r;
}

void ActivationRecorder::record(LayerId layer, std::span<const int32_t> topk_ids) noexcept {
  record_impl(layer, topk_ids, nullptr);
}

void ActivationRecorder::record(LayerId layer, std::span<const int32_t> topk_ids,
                                std::span<const float> topk_weights) noexcept {
  if (topk_weights.size() != topk_ids.size()) {
    record_impl(-1, topk_ids, nullptr);  // rejected: counted as invalid, nothing recorded
    return;
  }
  record_impl(layer, topk_ids, config_.track_gate_weights ? topk_weights.data() : nullptr);
}

// The hot path. Memory-ordering argument (also what TSan checks in the tests):
//  * A call claims a shard by CAS kIdle -> writing(b) and then re-reads active_
//    until it is stable, publishing the buffer it will write in `state`. All of
//    these are seq_cst, as are take_window()'s flip of active_ and its reads of
//    `state`; so either the call sees the new buffer, or take_window() sees the
//    call in writing(old) and waits for it.
//  * The release store of kIdle at the end, and the claim CAS (acquire) of the
//    next call, order every plain increment of a shard before the next owner's
//    and before take_window()'s read of it: the counters need no atomics.
void ActivationRecorder::record_impl(LayerId layer, std::span<const int32_t> ids, const float* weights) noexcept {
  const uint32_t n = static_cast<uint32_t>(config_.num_shards);
  const uint32_t start = thread_hint() % n;
  Shard* shard = nullptr;
  uint32_t buffer = 0;
  for (uint32_t k = 0; k < n && shard == nullptr; ++k) {
    Shard& s = shards_[(start + k) % n];
    uint32_t expected = kIdle;
    buffer = active_.load(std::memory_order_seq_cst);
    if (s.state.load(std::memory_order_relaxed) != kIdle ||
        !s.state.compare_exchange_strong(expected, writing(buffer), std::memory_order_seq_cst))
      continue;
    for (uint32_t now = active_.load(std::memory_order_seq_cst); now != buffer;
         now = active_.load(std::memory_order_seq_cst)) {
      buffer = now;
      s.state.store(writing(buffer), std::memory_order_seq_cst);
    }
    shard = &s;
  }

  const bool layer_ok = static_cast<uint32_t>(layer) < static_cast<uint32_t>(config_.num_layers);
  if (shard == nullptr) {
    // Every shard is busy: count into the shared overflow buffer.
    Overflow& o = *overflow_;
    for (;;) {
      buffer = active_.load(std::memory_order_seq_cst);
      o.inflight[buffer].fetch_add(1, std::memory_order_seq_cst);
      if (active_.load(std::memory_order_seq_cst) == buffer) break;
      o.inflight[buffer].fetch_sub(1, std::memory_order_release);
    }
    o.calls[buffer].fetch_add(1, std::memory_order_relaxed);
    if (!layer_ok) {
      o.rejected[buffer].fetch_add(1, std::memory_order_relaxed);
      o.invalid[buffer].fetch_add(static_cast<int64_t>(ids.size()), std::memory_order_relaxed);
      o.invalid_example[buffer].store(static_cast<int64_t>(static_cast<uint64_t>(static_cast<uint32_t>(layer)) << 32 |
                                                           0xffffffffu),
                                      std::memory_order_relaxed);
    } else {
      const uint32_t width = static_cast<uint32_t>(widths_[static_cast<size_t>(layer)]);
      const size_t row = static_cast<size_t>(layer) * static_cast<size_t>(config_.num_ids);
      int64_t padding = 0, invalid = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        const uint32_t id = static_cast<uint32_t>(ids[i]);
        if (id < width) {
          o.counts[buffer][row + id].fetch_add(1, std::memory_order_relaxed);
          if (weights != nullptr) o.weights[buffer][row + id].fetch_add(clean_weight(weights[i]), std::memory_order_relaxed);
        } else if (ids[i] == -1) {
          ++padding;
        } else {
          ++invalid;
          o.invalid_example[buffer].store(static_cast<int64_t>(static_cast<uint64_t>(static_cast<uint32_t>(layer))
                                                               << 32 | id),
                                          std::memory_order_relaxed);
        }
      }
      o.records[buffer].fetch_add(1, std::memory_order_relaxed);
      if (padding) o.padding[buffer].fetch_add(padding, std::memory_order_relaxed);
      if (invalid) o.invalid[buffer].fetch_add(invalid, std::memory_order_relaxed);
      if (pairs_ && ids.size() >= static_cast<size_t>(config_.top_k)) {
        const uint64_t tokens = ids.size() / static_cast<size_t>(config_.top_k);
        sample_pairs(layer, ids, o.tokens.fetch_add(tokens, std::memory_order_relaxed));
      }
    }
    o.inflight[buffer].fetch_sub(1, std::memory_order_release);
    return;
  }

  BufferStats& st = shard->stats[buffer];
  st.used = true;
  if (!layer_ok) {
    ++st.rejected;
    st.invalid += static_cast<int64_t>(ids.size());
    st.invalid_layer = layer;
    st.invalid_id = -1;
  } else {
    const uint32_t width = static_cast<uint32_t>(widths_[static_cast<size_t>(layer)]);
    int64_t* const row = shard->counts[buffer].data() + static_cast<int64_t>(layer) * row_stride_;
    const int32_t* const p = ids.data();
    const size_t count = ids.size();
    int64_t padding = 0;
    int64_t invalid = 0;
    int32_t bad = -1;
    if (weights == nullptr) {
      // One unsigned compare rejects both -1 and ids past the layer's width.
      for (size_t i = 0; i < count; ++i) {
        const uint32_t id = static_cast<uint32_t>(p[i]);
        if (id < width) [[likely]] {
          ++row[id];
        } else if (p[i] == -1) {
          ++padding;
        } else {
          ++invalid;
          bad = p[i];
        }
      }
    } else {
      double* const wrow = shard->weights[buffer].data() + static_cast<int64_t>(layer) * row_stride_;
      for (size_t i = 0; i < count; ++i) {
        const uint32_t id = static_cast<uint32_t>(p[i]);
        if (id < width) [[likely]] {
          ++row[id];
          wrow[id] += clean_weight(weights[i]);
        } else if (p[i] == -1) {
          ++padding;
        } else {
          ++invalid;
          bad = p[i];
        }
      }
    }
    ++st.records;
    st.padding += padding;
    if (invalid) {
      st.invalid += invalid;
      st.invalid_layer = layer;
      st.invalid_id = bad;
    }
    if (pairs_ && count >= static_cast<size_t>(config_.top_k)) {
      const uint64_t first = shard->tokens;
      shard->tokens += count / static_cast<size_t>(config_.top_k);
      sample_pairs(layer, ids, first);
    }
  }
  shard->state.store(kIdle, std::memory_order_release);
}

// Tokens are numbered per shard (or in the overflow buffer); token t is sampled
// when t % coactivation_every == 0. Pair counters are shared relaxed atomics:
// sampling keeps them rare, and take_coactivation() resets them by exchange.
void ActivationRecorder::sample_pairs(LayerId layer, std::span<const int32_t> ids, uint64_t first_token) noexcept {
  const uint64_t every = static_cast<uint64_t>(config_.coactivation_every);
  const size_t top_k = static_cast<size_t>(config_.top_k);
  const size_t num_tokens = ids.size() / top_k;
  const uint32_t width = static_cast<uint32_t>(widths_[static_cast<size_t>(layer)]);
  const int32_t n = config_.num_ids;
  std::atomic<int64_t>* const pairs = pairs_.get() + CoactivationCounts::pair_count(n) * layer;
  int64_t sampled = 0;
  for (uint64_t t = (every - first_token % every) % every; t < num_tokens; t += every) {
    const int32_t* tok = ids.data() + t * top_k;
    ++sampled;
    for (size_t i = 0; i < top_k; ++i) {
      if (static_cast<uint32_t>(tok[i]) >= width) continue;
      for (size_t j = i + 1; j < top_k; ++j) {
        if (static_cast<uint32_t>(tok[j]) >= width || tok[j] == tok[i]) continue;
        const int32_t a = std::min(tok[i], tok[j]);
        const int32_t b = std::max(tok[i], tok[j]);
        pairs[CoactivationCounts::pair_index(n, a, b)].fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  if (sampled) sampled_tokens_[static_cast<size_t>(layer)].fetch_add(sampled, std::memory_order_relaxed);
}

CaptureWindow ActivationRecorder::take_window() {
  MutexLock lock(mu_);
  const uint32_t old = active_.load(std::memory_order_relaxed);  // only this function (under mu_) stores it
  active_.store(1 - old, std::memory_order_seq_cst);

  const int32_t L = config_.num_layers;
  const int32_t E = config_.num_ids;
  const bool weighted = config_.track_gate_weights;
  std::vector<int64_t> counts(static_cast<size_t>(L) * static_cast<size_t>(E), 0);
  std::vector<double> weights(weighted ? counts.size() : 0, 0.0);
  CaptureWindow w;

  for (int32_t s = 0; s < config_.num_shards; ++s) {
    Shard& shard = shards_[static_cast<size_t>(s)];
    int spins = 0;
    // Calls that claimed the shard before seeing the flip may still write `old`.
    while (shard.state.load(std::memory_order_seq_cst) == writing(old)) spin_pause(spins);
    BufferStats& st = shard.stats[old];
    if (!st.used) continue;  // untouched in this window: nothing to sum or clear
    for (int32_t l = 0; l < L; ++l) {
      int64_t* row = shard.counts[old].data() + static_cast<int64_t>(l) * row_stride_;
      int64_t* out = counts.data() + static_cast<int64_t>(l) * E;
      for (int32_t e = 0; e < E; ++e) out[e] += row[e];
      std::fill(row, row + E, int64_t{0});
      if (weighted) {
        double* wrow = shard.weights[old].data() + static_cast<int64_t>(l) * row_stride_;
        double* wout = weights.data() + static_cast<int64_t>(l) * E;
        for (int32_t e = 0; e < E; ++e) wout[e] += wrow[e];
        std::fill(wrow, wrow + E, 0.0);
      }
    }
    w.num_records += st.records;
    w.num_padding += st.padding;
    w.num_invalid += st.invalid;
    w.num_rejected_calls += st.rejected;
    if (st.invalid_layer != -1 || st.invalid_id != -1) {
      w.invalid_layer = st.invalid_layer;
      w.invalid_id = st.invalid_id;
    }
    st = BufferStats{};
  }

  Overflow& o = *overflow_;
  int spins = 0;
  while (o.inflight[old].load(std::memory_order_seq_cst) != 0) spin_pause(spins);
  if (o.calls[old].load(std::memory_order_relaxed) != 0) {
    for (size_t i = 0; i < counts.size(); ++i) {
      counts[i] += o.counts[old][i].load(std::memory_order_relaxed);
      o.counts[old][i].store(0, std::memory_order_relaxed);
      if (weighted) {
        weights[i] += o.weights[old][i].load(std::memory_order_relaxed);
        o.weights[old][i].store(0.0, std::memory_order_relaxed);
      }
    }
    w.num_overflow_records = o.calls[old].exchange(0, std::memory_order_relaxed);
    w.num_records += o.records[old].exchange(0, std::memory_order_relaxed);
    w.num_padding += o.padding[old].exchange(0, std::memory_order_relaxed);
    w.num_rejected_calls += o.rejected[old].exchange(0, std::memory_order_relaxed);
    const int64_t invalid = o.invalid[old].exchange(0, std::memory_order_relaxed);
    if (invalid) {
      const uint64_t ex = static_cast<uint64_t>(o.invalid_example[old].load(std::memory_order_relaxed));
      w.invalid_layer = static_cast<int32_t>(static_cast<uint32_t>(ex >> 32));
      w.invalid_id = static_cast<int32_t>(static_cast<uint32_t>(ex));
      w.num_invalid += invalid;
    }
  }

  w.index = next_window_++;
  w.step_begin = last_step_;
  w.step_end = step_.load(std::memory_order_relaxed);
  last_step_ = w.step_end;
  // Shapes were validated by create(), and counts are sums of non-negative
  // increments, so these conversions cannot fail.
  auto load = LoadMatrix::from_counts(L, E, std::move(counts));
  OMNI_CHECK_MSG(load.ok(), load.status().to_string());
  w.load = std::move(load).value();
  if (weighted) {
    auto gw = LoadMatrix::from_weights(L, E, std::move(weights));
    OMNI_CHECK_MSG(gw.ok(), gw.status().to_string());
    w.gate_weights = std::move(gw).value();
  }

  // The EMA (window_history.h); the first window initialises it (no bias
  // towards zero at start-up). Same shape every time: cannot fail.
  const Status folded = ema_.add(w.load);
  OMNI_CHECK_MSG(folded.ok(), folded.to_string());

  if (std::ssize(ring_) < config_.history) {
    ring_.push_back(w);
  } else {
    ring_[ring_head_] = w;
    ring_head_ = (ring_head_ + 1) % ring_.size();
  }
  return w;
}

std::vector<CaptureWindow> ActivationRecorder::recent_windows() const {
  MutexLock lock(mu_);
  std::vector<CaptureWindow> out;
  out.reserve(ring_.size());
  for (size_t i = 0; i < ring_.size(); ++i) out.push_back(ring_[(ring_head_ + i) % ring_.size()]);
  return out;
}

LoadMatrix ActivationRecorder::recent_sum() const {
  MutexLock lock(mu_);
  auto sum = LoadMatrix::zeros(config_.num_layers, config_.num_ids);
  OMNI_CHECK_MSG(sum.ok(), sum.status().to_string());
  for (const CaptureWindow& w : ring_) {
    const Status s = sum->add(w.load);
    OMNI_CHECK_MSG(s.ok(), s.to_string());  // int64 overflow would need > 9e18 tokens
  }
  return std::move(sum).value();
}

LoadMatrix ActivationRecorder::ema() const {
  std::vector<double> values;
  {
    MutexLock lock(mu_);
    if (!ema_.empty()) {
      const auto v = ema_.ema().values();
      values.assign(v.begin(), v.end());
    }
  }
  if (values.empty()) values.assign(static_cast<size_t>(config_.num_layers) * static_cast<size_t>(config_.num_ids), 0.0);
  // Finite and >= 0: convex combinations of counts.
  auto m = LoadMatrix::from_weights(config_.num_layers, config_.num_ids, std::move(values));
  OMNI_CHECK_MSG(m.ok(), m.status().to_string());
  return std::move(m).value();
}

CoactivationCounts ActivationRecorder::take_coactivation() {
  CoactivationCounts c;
  if (!pairs_) return c;
  MutexLock lock(mu_);
  c.num_layers = config_.num_layers;
  c.num_ids = config_.num_ids;
  c.pairs.resize(static_cast<size_t>(c.pairs_per_layer() * c.num_layers));
  for (size_t i = 0; i < c.pairs.size(); ++i) c.pairs[i] = pairs_[i].exchange(0, std::memory_order_relaxed);
  c.sampled_tokens.resize(static_cast<size_t>(c.num_layers));
  for (size_t l = 0; l < c.sampled_tokens.size(); ++l)
    c.sampled_tokens[l] = sampled_tokens_[l].exchange(0, std::memory_order_relaxed);
  return c;
}

}  // namespace omni

namespace omni {

// Test hook (capture/recorder_test_peer.h).
void ActivationRecorderTestPeer::set_all_shards_busy(ActivationRecorder& r, bool busy) {
  const uint32_t state = busy ? kReservedForTests : kIdle;
  for (int32_t s = 0; s < r.config_.num_shards; ++s) r.shards_[static_cast<size_t>(s)].state.store(state);
}

void ActivationRecorderTestPeer::record_on_shard(ActivationRecorder& r, int32_t shard, LayerId layer,
                                                 std::span<const int32_t> ids) {
  OMNI_CHECK(shard >= 0 && shard < r.config_.num_shards);
  set_all_shards_busy(r, true);
  r.shards_[static_cast<size_t>(shard)].state.store(kIdle);
  r.record(layer, ids);
  set_all_shards_busy(r, false);
}

}  // namespace omni
