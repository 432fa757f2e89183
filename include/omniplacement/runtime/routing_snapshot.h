// RoutingSnapshot: one rank's immutable routing view of the placement in force
// at one epoch, published RCU-style.
//
// A snapshot holds the epoch, the placement, and per layer a LayerRouting: the
// expert map (phy2log / log2phy / logcnt, DeepSeek and vLLM terms) and this
// rank's dispatch tables. Snapshots are never modified: a commit builds a new
// one (sharing the LayerRouting of unchanged layers) and publishes it with one
// pointer swap (SnapshotCell). A reader that loaded a snapshot keeps using it,
// with no lock, for as long as it holds the shared_ptr.
//
//   auto snap = omni::RoutingSnapshot::build(placement, topology, /*rank=*/2, /*epoch=*/0);
//   omni::SnapshotCell cell(*snap);
//   std::shared_ptr<const omni::RoutingSnapshot> s = cell.load();   // any thread
//   s->layer(3).map.replicas_of(7);                                 // global slots of expert 7
//
// Thread safety: snapshots are immutable. SnapshotCell::load() from any
// thread; SnapshotCell::store() from one publishing thread at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "omniplacement/core/expert_map.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/dispatch/dispatch_table.h"

namespace omni {

struct LayerRouting {
  LayerId layer = 0;
  uint64_t epoch = 0;   // the epoch at which this layer's content was published
  LayerExpertMap map;   // routing view of the layer (replicas by ascending slot)
  LayerDispatch dispatch;  // this rank's dispatch tables
};

class RoutingSnapshot {
 public:
  // Snapshot of `placement` for `rank` at `epoch`: every layer built.
  static StatusOr<std::shared_ptr<const RoutingSnapshot>> build(std::shared_ptr<const Placement> placement,
                                                                const Topology& topology, RankId rank,
                                                                uint64_t epoch);
  // Snapshot of `placement` at `epoch` that reuses base's LayerRouting for
  // every layer not in `changed` (their content must be equal in both
  // placements) and builds the layers in `changed`.
  static StatusOr<std::shared_ptr<const RoutingSnapshot>> rebuild(const RoutingSnapshot& base,
                                                                  std::shared_ptr<const Placement> placement,
                                                                  std::span<const LayerId> changed,
                                                                  const Topology& topology, RankId rank,
                                                                  uint64_t epoch);

  // Failover: the snapshot of `placement` — base's placement with the slots
  // of the `failed` ranks emptied — at `epoch`. Only the experts that had a
  // replica on a failed rank get new dispatch tables (LayerDispatch::rebuild);
  // layers where the failed ranks held nothing are shared with base.
  static StatusOr<std::shared_ptr<const RoutingSnapshot>> without_ranks(const RoutingSnapshot& base,
                                                                        std::shared_ptr<const Placement> placement,
                                                                        std::span<const RankId> failed,
                                                                        const Topology& topology, RankId rank,
                                                                        uint64_t epoch);

  uint64_t epoch() const { return epoch_; }
  const Placement& placement() const { return *placement_; }
  const std::shared_ptr<const Placement>& placement_ptr() const { return placement_; }
  // Placement::checksum() of placement(), computed on the first call and
  // cached (any thread; concurrent first calls compute the same value). Not
  // computed when the snapshot is built, so that a failover publishes its
  // routing without hashing the whole placement (about 0.2 ms at DeepSeek-V3
  // size): the first vote or stats reader after it pays that once.
  uint64_t checksum() const;
  int32_t num_layers() const { return static_cast<int32_t>(layers_.size()); }
  const LayerRouting& layer(LayerId l) const { return *layers_[static_cast<size_t>(l)]; }
  const std::shared_ptr<const LayerRouting>& layer_ptr(LayerId l) const { return layers_[static_cast<size_t>(l)]; }

 private:
  uint64_t epoch_ = 0;
  mutable std::atomic<uint64_t> checksum_{0};
  mutable std::atomic<bool> has_checksum_{false};
  std::shared_ptr<const Placement> placement_;
  std::vector<std::shared_ptr<const LayerRouting>> layers_;
};

// The published snapshot of one rank.
//
// Not std::atomic<std::shared_ptr>: libstdc++ 12 implements it with a lock bit
// that load() releases with a relaxed store, so a reader's access and the next
// store() are not ordered (ThreadSanitizer reports the race). This cell does
// the same with the orderings right: a one-word spinlock whose critical section
// is one shared_ptr copy (a reference-count increment) or swap; the snapshot a
// store() replaces is released after the lock, outside the critical section.
class SnapshotCell {
 public:
  explicit SnapshotCell(std::shared_ptr<const RoutingSnapshot> initial) : current_(std::move(initial)) {}
  std::shared_ptr<const RoutingSnapshot> load() const {
    lock();
    std::shared_ptr<const RoutingSnapshot> s = current_;
    unlock();
    return s;
  }
  void store(std::shared_ptr<const RoutingSnapshot> s) {
    lock();
    current_.swap(s);
    unlock();
  }  // s, the previous snapshot, is released here

 private:
  void lock() const {
    for (int spins = 0; busy_.exchange(true, std::memory_order_acquire); ++spins) {
      // The holder may have been preempted (more threads than cores): yield
      // rather than burn its time slice.
      while (busy_.load(std::memory_order_relaxed))
        if (++spins > 64) std::this_thread::yield();
    }
  }
  void unlock() const { busy_.store(false, std::memory_order_release); }

  mutable std::atomic<bool> busy_{false};
  std::shared_ptr<const RoutingSnapshot> current_;  // guarded by busy_
};

}  // namespace omni
