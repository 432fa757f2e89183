// WeightStore: where the expert weights of one rank's slots live, and the
// bounded staging buffers that receive the weights of a future placement.
//
// One store per rank. Layer l has slots_per_rank(l) slots of slot_bytes(l)
// bytes each (an expert's weights as the engine lays them out; opaque bytes
// here). A placement change never writes a slot that serving may read:
// incoming weights go into a staging buffer (acquire_staging, write_staging or
// stage_from_slot), and only at the commit step does the engine thread copy
// staging into the slot (commit_staging). Staging memory is bounded: an
// acquire beyond the limit fails with RESOURCE_EXHAUSTED, and the caller
// stages fewer layers at a time.
//
//   auto store = omni::HostWeightStore::create({/*slot bytes per layer*/ 1088, 1088},
//                                              /*slots_per_rank=*/{6, 6}, /*staging_limit_bytes=*/1 << 20);
//   std::vector<std::byte> w = ...;                          // weights of expert 7, 1088 bytes
//   (void)(*store)->write_slot(0, 2, 0, w);                  // initial load of slot 2, layer 0
//   auto id = (*store)->acquire_staging(0, 3);               // future content of slot 3
//   (void)(*store)->write_staging(*id, 0, w);                // e.g. received from a peer
//   (void)(*store)->commit_staging(*id);                     // at the commit step
//   (*store)->release_staging(*id);
//
// The interface speaks of byte ranges and never hands out a pointer that must
// be host memory, so a CUDA store (slots in device memory, staging in device or
// pinned host memory) implements it the same way; slot_view() says which memory
// a slot is in.
//
// Thread safety: read_slot, stage_from_slot, acquire/write/release_staging and
// the const accessors may be called from any thread (the planner thread stages
// while the engine thread serves). write_slot and commit_staging change slot
// contents and must be called only by the engine thread of the rank while no
// kernel reads that slot (the runtime calls them at the commit step).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"

namespace omni {

// Which memory a slot's bytes live in.
enum class MemoryKind { kHost, kDevice };

// A slot's storage: `data` points to `bytes` bytes in `kind` memory. Valid
// until the store is destroyed; contents change only at write_slot/commit_staging.
struct SlotView {
  void* data = nullptr;
  int64_t bytes = 0;
  MemoryKind kind = MemoryKind::kHost;
};

// Handle of one staging buffer (unique within a store while acquired).
using StagingId = int64_t;

class WeightStore {
 public:
  virtual ~WeightStore() = default;

  virtual int32_t num_layers() const = 0;
  virtual int32_t slots_per_rank(LayerId l) const = 0;
  // Bytes of one slot of layer l (> 0).
  virtual int64_t slot_bytes(LayerId l) const = 0;
  virtual SlotView slot_view(LayerId l, SlotId s) const = 0;

  // Copies bytes [offset, offset + out.size()) of slot (l, s) into host memory
  // `out` (to send them to a peer).
  virtual Status read_slot(LayerId l, SlotId s, int64_t offset, std::span<std::byte> out) const = 0;
  // Writes host bytes into slot (l, s) at offset: initial loading, or restoring
  // a slot nobody routes to. Engine thread only.
  virtual Status write_slot(LayerId l, SlotId s, int64_t offset, std::span<const std::byte> data) = 0;

  // Reserves a staging buffer of slot_bytes(l) bytes for the future content of
  // slot (l, s). RESOURCE_EXHAUSTED when it would exceed staging_limit_bytes().
  virtual StatusOr<StagingId> acquire_staging(LayerId l, SlotId s) = 0;
  // Writes host bytes into staging buffer `id` at offset.
  virtual Status write_staging(StagingId id, int64_t offset, std::span<const std::byte> data) = 0;
  // Copies the whole of slot (src_layer == the buffer's layer, src_slot) of this
  // rank into staging buffer `id` (a move within the rank).
  virtual Status stage_from_slot(StagingId id, SlotId src_slot) = 0;
  // Copies staging buffer `id` into its slot. Engine thread, at the commit step.
  virtual Status commit_staging(StagingId id) = 0;
  // Frees the buffer (committed or not). Unknown ids are ignored.
  virtual void release_staging(StagingId id) = 0;

  virtual int64_t staging_bytes_in_use() const = 0;
  virtual int64_t staging_limit_bytes() const = 0;
  // Total bytes of all slots.
  virtual int64_t slot_bytes_total() const = 0;
};

// Slots and staging in host memory; slots start at multiples of 64 bytes within a layer's block.
class HostWeightStore final : public WeightStore {
 public:
  // slot_bytes[l] > 0 and slots_per_rank[l] >= 1 per layer (same length, >= 1
  // layer); staging_limit_bytes >= 0, 0 for no limit (as the manager's
  // staging_bytes_per_rank). Slots start zero-filled.
  static StatusOr<std::unique_ptr<HostWeightStore>> create(std::vector<int64_t> slot_bytes,
                                                           std::vector<int32_t> slots_per_rank,
                                                           int64_t staging_limit_bytes);

  int32_t num_layers() const override { return static_cast<int32_t>(slot_bytes_.size()); }
  int32_t slots_per_rank(LayerId l) const override;
  int64_t slot_bytes(LayerId l) const override;
  SlotView slot_view(LayerId l, SlotId s) const override;
  // Host bytes of slot (l, s); aborts on out-of-range ids (check them first).
  std::span<const std::byte> slot_data(LayerId l, SlotId s) const;

  Status read_slot(LayerId l, SlotId s, int64_t offset, std::span<std::byte> out) const override;
  Status write_slot(LayerId l, SlotId s, int64_t offset, std::span<const std::byte> data) override;
  StatusOr<StagingId> acquire_staging(LayerId l, SlotId s) override;
  Status write_staging(StagingId id, int64_t offset, std::span<const std::byte> data) override;
  Status stage_from_slot(StagingId id, SlotId src_slot) override;
  Status commit_staging(StagingId id) override;
  void release_staging(StagingId id) override;
  int64_t staging_bytes_in_use() const override;
  int64_t staging_limit_bytes() const override { return staging_limit_; }
  int64_t slot_bytes_total() const override;

 private:
  struct Staging {
    LayerId layer = 0;
    SlotId slot = 0;
    std::vector<std::byte> bytes;
  };
  HostWeightStore() = default;
  Status check_slot(const char* what, LayerId l, SlotId s) const;
  Status check_range(const char* what, LayerId l, SlotId s, int64_t offset, size_t size) const;
  std::byte* slot_ptr(LayerId l, SlotId s) const;

  std::vector<int64_t> slot_bytes_;
  std::vector<int32_t> slots_per_rank_;
  std::vector<int64_t> stride_;  // slot_bytes rounded up to a multiple of 64
  std::vector<std::vector<std::byte>> layers_;  // [slots_per_rank * stride] per layer
  int64_t staging_limit_ = 0;

  mutable std::mutex mu_;  // guards the staging table (planner and engine threads)
  std::unordered_map<StagingId, Staging> staging_;
  StagingId next_id_ = 1;
  int64_t staging_in_use_ = 0;
};

}  // namespace omni
