// ActivationRecorder: counts the experts (or global slots) that every MoE layer
// activates, on the engine's hot path, and hands the counts out in windows.
//
// The engine calls record(layer, topk_ids) inside every MoE layer of every
// forward pass, from one or several threads at once. A planner thread calls
// take_window() now and then; it returns the counts recorded since the previous
// call as a LoadMatrix [num_layers, num_ids] and starts a new window without
// stopping the recorders. Every id recorded lands in exactly one window: the
// sum of all windows equals what was recorded, also under concurrency.
//
//   omni::RecorderConfig config;
//   config.num_layers = 58;
//   config.num_ids = 256;                       // logical experts of DeepSeek-V3
//   auto recorder = omni::ActivationRecorder::create(config);
//   if (!recorder.ok()) return recorder.status();
//   // engine thread, in MoE layer l, for a batch of 256 tokens x top-8:
//   std::vector<int32_t> topk_ids(256 * 8);     // filled by the router; -1 = padding
//   (*recorder)->record(l, topk_ids);
//   // planner thread:
//   omni::CaptureWindow w = (*recorder)->take_window();
//   if (!w.check().ok()) log(w.check());        // ids out of range, rejected calls
//   plan(w.load);                               // exact int64 counts
//   omni::LoadMatrix smooth = (*recorder)->ema();
//
// How record() stays cheap (no lock, no heap allocation, no system call):
// the recorder owns num_shards private count arrays, each double-buffered.
// A call claims a free shard with one compare-and-swap on the shard's own
// cache line (starting from a per-thread hint, so a thread keeps the same
// shard and its counts stay in that core's cache), adds its ids with plain
// increments, and releases the shard. It never waits: when every shard is
// claimed by other threads it counts into a shared overflow buffer with relaxed
// atomic additions instead. take_window() flips the active buffer, waits (off
// the hot path) until no call still writes the old one, sums and clears it.
//
// Thread safety: record() and note_step() may be called from any number of
// threads concurrently. take_window(), take_coactivation(), recent_windows()
// and ema() may be called from any thread; they serialise among themselves
// (one mutex, never taken by record()).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "omniplacement/capture/coactivation.h"
#include "omniplacement/capture/window_history.h"
#include "omniplacement/core/ids.h"
#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/thread_annotations.h"

namespace omni {

// What the int32 ids given to record() mean.
enum class IdSpace {
  kLogicalExpert,  // 0 <= id < num_experts of the layer
  kGlobalSlot,     // 0 <= id < num_ranks * slots_per_rank[l] (vLLM's physical expert id)
};

struct RecorderConfig {
  int32_t num_layers = 0;  // MoE layers, 0 < num_layers <= kMaxLayers
  // Width of every layer's row: experts (kLogicalExpert, <= kMaxExperts) or the
  // largest number of global slots of any layer (kGlobalSlot, <= kMaxSlotsPerLayer).
  int32_t num_ids = 0;
  IdSpace id_space = IdSpace::kLogicalExpert;
  // Optional per-layer valid width (layer-wise uneven slot counts): empty, or
  // num_layers values in [1, num_ids]. An id >= ids_per_layer[l] is invalid.
  std::vector<int32_t> ids_per_layer;
  // Private count arrays; 0 = min(hardware threads, 8). More concurrent
  // recording threads than shards still count exactly (overflow buffer), only slower.
  int32_t num_shards = 0;
  // Also sum the gate weights given to the weighted record() overload.
  bool track_gate_weights = false;
  // Windows kept by recent_windows() (the ring), >= 1.
  int32_t history = 16;
  // ema = decay * ema + (1 - decay) * window for each window after the first
  // (the first window initialises it). 0 <= decay < 1; 0 keeps the last window
  // only. The default is the PlacementManager's and the YAML key's (0).
  double ema_decay = 0.0;
  // Co-activation sampling, off when 0: every coactivation_every-th token (per
  // shard) has each pair of distinct valid experts it chose counted. Needs
  // top_k > 0 (ids per token) and num_ids * (num_ids - 1) / 2 * num_layers <= 2^26.
  int32_t coactivation_every = 0;
  int32_t top_k = 0;
};

// Counts recorded between two take_window() calls.
struct CaptureWindow {
  uint64_t index = 0;  // 0 for the first window taken, then 1, 2, ...
  // Step range [step_begin, step_end) as given by note_step(): the step noted at
  // the previous take_window() (0 at first) and the step noted at this one.
  int64_t step_begin = 0;
  int64_t step_end = 0;
  LoadMatrix load;          // kCounts [num_layers, num_ids]: valid ids recorded
  LoadMatrix gate_weights;  // kWeights, same shape: summed gate weights (0x0 unless tracked)
  int64_t num_records = 0;  // record() calls that counted (not rejected)
  int64_t num_padding = 0;  // ids of -1 skipped
  // Ids outside [0, ids_per_layer[l]) other than -1, plus every id of a rejected
  // call (layer out of range, or weights of the wrong length).
  int64_t num_invalid = 0;
  int64_t num_rejected_calls = 0;
  // One offending (layer, id) when num_invalid > 0: the last one seen by some
  // shard; id is -1 for a rejected call.
  int32_t invalid_layer = -1;
  int32_t invalid_id = -1;
  int64_t num_overflow_records = 0;  // calls that found every shard busy

  // OK, or INVALID_ARGUMENT naming the count of invalid ids, an example and the valid range.
  Status check() const;
};

class ActivationRecorder {
 public:
  // Validates config and allocates every buffer (the only allocation; record()
  // never allocates).
  static StatusOr<std::unique_ptr<ActivationRecorder>> create(RecorderConfig config);
  ~ActivationRecorder();
  ActivationRecorder(const ActivationRecorder&) = delete;
  ActivationRecorder& operator=(const ActivationRecorder&) = delete;

  // Counts topk_ids (num_tokens * top_k int32 ids, token-major) for layer.
  // -1 is padding and skipped; other out-of-range ids go to num_invalid.
  // A layer outside [0, num_layers) rejects the call. Any thread; never blocks,
  // allocates or makes a system call. The span is only read during the call.
  void record(LayerId layer, std::span<const int32_t> topk_ids) noexcept;
  // Same, also summing topk_weights[i] (the gate score of topk_ids[i], same
  // length as topk_ids) into the window's gate_weights when track_gate_weights;
  // a length mismatch rejects the call. Non-finite weights count as 0.
  void record(LayerId layer, std::span<const int32_t> topk_ids, std::span<const float> topk_weights) noexcept;

  // The engine's current step, stamped on windows (step_begin/step_end). Any thread.
  void note_step(int64_t step) noexcept { step_.store(step, std::memory_order_relaxed); }

  // Returns everything recorded since the previous call (or since create) and
  // starts a new window; recorders keep running. Also appends the window to the
  // ring and folds it into the EMA. Waits only for record() calls that are in
  // progress on the buffer being closed (microseconds). Any thread.
  CaptureWindow take_window();

  // Up to `history` last windows taken, oldest first (copies). Any thread.
  std::vector<CaptureWindow> recent_windows() const;
  // Element-wise sum of the windows in the ring (kCounts; zeros when none).
  LoadMatrix recent_sum() const;
  // Exponential moving average of the windows taken (kWeights; zeros before
  // the first take_window()). Any thread.
  LoadMatrix ema() const;

  // Co-activation pair counts sampled since the previous call; resets them
  // (exactly: each sampled pair lands in one result). Empty (0 layers) when
  // sampling is off. Any thread.
  CoactivationCounts take_coactivation();

  const RecorderConfig& config() const { return config_; }
  int32_t num_shards() const { return config_.num_shards; }

 private:
  friend struct ActivationRecorderTestPeer;  // tests: forces the overflow path
  struct Shard;
  struct Overflow;
  explicit ActivationRecorder(RecorderConfig config);
  void record_impl(LayerId layer, std::span<const int32_t> ids, const float* weights) noexcept;
  void sample_pairs(LayerId layer, std::span<const int32_t> ids, uint64_t first_token) noexcept;

  RecorderConfig config_;
  int64_t row_stride_ = 0;  // num_ids rounded up to a whole number of cache lines
  std::vector<int32_t> widths_;
  std::unique_ptr<Shard[]> shards_;
  std::unique_ptr<Overflow> overflow_;
  std::unique_ptr<std::atomic<int64_t>[]> pairs_;  // co-activation, upper triangle per layer
  std::unique_ptr<std::atomic<int64_t>[]> sampled_tokens_;  // per layer
  std::atomic<uint32_t> active_{0};  // buffer (0 or 1) that record() writes
  std::atomic<int64_t> step_{0};

  mutable Mutex mu_;  // take_window & friends; never taken by record()
  uint64_t next_window_ OMNI_GUARDED_BY(mu_) = 0;
  int64_t last_step_ OMNI_GUARDED_BY(mu_) = 0;
  std::vector<CaptureWindow> ring_ OMNI_GUARDED_BY(mu_);  // circular, ring_head_ is the oldest when full
  size_t ring_head_ OMNI_GUARDED_BY(mu_) = 0;
  WindowHistory ema_ OMNI_GUARDED_BY(mu_);  // the EMA of the windows taken (its own ring holds only the newest)
};

}  // namespace omni
