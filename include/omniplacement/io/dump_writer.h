// Activation window dumps: each window of recorded loads as a .npy file plus a
// small JSON sidecar, written by a background thread, and read back.
//
// On disk, for window i (file names from DumpWriterOptions::file_prefix):
//   window_00000012.npy   int64 [num_layers, num_ids] counts (float64 for weights)
//   window_00000012.json  {"format": "omniplacement.activation_window", "version": 1,
//                          "npy": "window_00000012.npy", "num_layers": 58, "num_ids": 256,
//                          "id_space": "expert", "kind": "counts", "window": 12,
//                          "step_begin": 1200, "step_end": 1300, "epoch": 3,
//                          "placement_checksum": "9f3c...16 hex digits", "rank": -1,
//                          "num_invalid": 0}
// Each file is written under a temporary name and renamed, so a reader never
// sees half a file; the sidecar is renamed last, and readers list sidecars.
//
//   auto writer = omni::DumpWriter::start({.dir = "/var/dumps/run7"});
//   // planner thread, after recorder->take_window():
//   omni::DumpMetadata meta{.window = w.index, .step_begin = w.step_begin, .step_end = w.step_end,
//                           .epoch = epoch, .placement_checksum = placement.checksum()};
//   (*writer)->submit(w.load, meta);           // never blocks; false (and counted) when the queue is full
//   ...
//   omni::StatusOr<omni::LoadMatrix> total = omni::read_dump_dir_load("/var/dumps/run7", &placement);
//
// `omniplace eval --load DIR` (and every other --load) accepts such a directory.
//
// Thread safety: submit() and the counters may be called from any thread;
// flush() and close() from any thread but not concurrently with each other.
// The read functions are pure.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"

namespace omni {

// What a dumped window holds and when it was recorded.
struct DumpMetadata {
  // "expert" (columns are logical experts) or "global_slot" (columns are
  // global slots r * slots_per_rank[l] + s of the placement in force).
  std::string id_space = "expert";
  uint64_t window = 0;      // window index (CaptureWindow::index)
  int64_t step_begin = 0;   // engine steps [step_begin, step_end)
  int64_t step_end = 0;
  int64_t epoch = 0;        // placement epoch in force while recording
  uint64_t placement_checksum = 0;  // Placement::checksum() in force; 0 = unknown
  int32_t rank = -1;        // rank that recorded it; -1 = all ranks (aggregated) or unknown
  int64_t num_invalid = 0;  // ids the recorder refused (CaptureWindow::num_invalid)
};

struct DumpWriterOptions {
  std::string dir;             // created if missing
  int32_t queue_capacity = 4;  // windows waiting to be written, >= 1
  // Files are <file_prefix>_<window, 8 digits>.{npy,json}; letters, digits, '_', '-' and '.' only.
  std::string file_prefix = "window";
};

// Writes dumps on its own thread. The queue is bounded: a submit() that finds
// it full drops the window and counts the drop, so a slow disk never stalls
// the caller (which must never stall the engine).
class DumpWriter {
 public:
  // Creates the directory and starts the writer thread.
  static StatusOr<std::unique_ptr<DumpWriter>> start(DumpWriterOptions options);
  // close(): writes what is queued, then stops.
  ~DumpWriter();
  DumpWriter(const DumpWriter&) = delete;
  DumpWriter& operator=(const DumpWriter&) = delete;

  // Queues `load` with `meta`; true if queued, false if the queue was full (or
  // the writer closed), in which case num_dropped() grows. Takes a mutex only
  // for the push (never held during I/O). Any thread.
  bool submit(LoadMatrix load, DumpMetadata meta);
  // Waits until every window queued so far is written (or failed). Returns the
  // first error since the previous flush(), or OK.
  Status flush();
  // Writes what is queued, stops the thread; later submits are dropped. Idempotent.
  Status close();

  int64_t num_written() const { return written_.load(std::memory_order_relaxed); }
  int64_t num_dropped() const { return dropped_.load(std::memory_order_relaxed); }
  int64_t num_failed() const { return failed_.load(std::memory_order_relaxed); }
  const DumpWriterOptions& options() const { return options_; }

 private:
  struct Item {
    LoadMatrix load;
    DumpMetadata meta;
  };
  explicit DumpWriter(DumpWriterOptions options) : options_(std::move(options)) {}
  void run();

  DumpWriterOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;       // worker: work or stop; flush(): idle
  std::deque<Item> queue_;           // guarded by mu_
  bool busy_ = false;                // guarded by mu_: the worker is writing an item
  bool stop_ = false;                // guarded by mu_
  Status first_error_;               // guarded by mu_; reset by flush()
  std::atomic<int64_t> written_{0};
  std::atomic<int64_t> dropped_{0};
  std::atomic<int64_t> failed_{0};
  std::thread thread_;
};

// One window read back.
struct DumpWindow {
  DumpMetadata meta;
  LoadMatrix load;         // [num_layers, num_ids], counts or weights as written
  std::string json_path;   // the sidecar it came from
};

// Writes one window synchronously (what the writer thread does): the .npy,
// then the sidecar, each through a temporary file and a rename. Creates `dir`
// when missing. Any thread (distinct windows or directories).
Status write_dump_window(const std::string& dir, const std::string& file_prefix, const LoadMatrix& load,
                         const DumpMetadata& meta);
// Reads a sidecar and its .npy; checks that they agree (shape, kind).
StatusOr<DumpWindow> read_dump_window(const std::string& json_path);
// Every window of a dump directory (every *.json sidecar), ordered by window
// index, then file name. An empty directory is NOT_FOUND.
StatusOr<std::vector<DumpWindow>> read_dump_dir(const std::string& dir);
// The sum of every window of `dir` as per-expert loads [num_layers, num_experts].
// Expert windows are added as they are. Global-slot windows need `placement`
// (not owned; the one in force when they were recorded: a window whose
// placement_checksum is set and differs is refused) to turn slot counts into
// expert loads. All windows must have the same shape.
StatusOr<LoadMatrix> read_dump_dir_load(const std::string& dir, const Placement* placement = nullptr);

}  // namespace omni
