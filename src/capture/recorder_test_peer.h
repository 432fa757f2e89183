// Test-only access to ActivationRecorder internals (not installed; capture's
// tests and bench_capture.cc include it by bare name, src/capture/ being on
// their include path). Lets a test force record() onto the overflow path
// deterministically by reserving every shard, also while other threads record
// and take windows.
#pragma once

#include "omniplacement/capture/activation_recorder.h"

namespace omni {

struct ActivationRecorderTestPeer {
  // busy: every shard is reserved, so record() must use the overflow buffer;
  // take_window() skips reserved shards. busy = false makes them idle again.
  // Call it only while no record() runs on the recorder.
  static void set_all_shards_busy(ActivationRecorder& r, bool busy);
  // record(layer, ids) counted on shard `shard` (0 <= shard < num_shards): the
  // other shards are reserved during the call. Single-threaded use only.
  static void record_on_shard(ActivationRecorder& r, int32_t shard, LayerId layer, std::span<const int32_t> ids);
};

}  // namespace omni
