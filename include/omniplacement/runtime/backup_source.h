// BackupSource: where a lost expert's weights are reloaded from after a
// failure took down every rank that held it (docs/DESIGN.md, "The runtime
// protocol", step 6).
//
// Two sources ship: HostMemoryBackup keeps a host-memory copy of every
// expert's weights (fast; costs layers x experts x expert bytes of host
// memory per process that holds one), and SafetensorsBackup reads them from
// the model checkpoint (no extra memory; disk speed). An expert's weights are
// the opaque bytes a WeightStore slot holds (slot_bytes(l) bytes).
//
//   // From the checkpoint: tensor "layers.3.experts.17" holds expert 17 of layer 3.
//   auto backup = omni::SafetensorsBackup::open("experts.safetensors", /*num_layers=*/12, /*num_experts=*/60);
//   omni::PlacementManagerOptions opt;
//   opt.backup = backup->get();   // borrowed: must outlive the manager
//
//   // Or in host memory, filled once at start-up:
//   auto mem = omni::HostMemoryBackup::create(std::vector<int64_t>(12, 1088), 60);
//   (*mem)->set(3, 17, weights_of_expert_17_layer_3);
//
// write_expert_checkpoint() writes such a checkpoint (tests, the demo).
//
// Thread safety: read_expert() may be called from any number of threads at
// once (every rank's planner thread restores in parallel). HostMemoryBackup::set
// must not run concurrently with reads (fill it before handing it out).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"
#include "omniplacement/io/safetensors.h"

namespace omni {

class BackupSource {
 public:
  virtual ~BackupSource() = default;
  // Copies the weights of expert e of layer l into out (exactly the expert's
  // byte size, else INVALID_ARGUMENT naming both sizes). Any thread.
  virtual Status read_expert(LayerId l, ExpertId e, std::span<std::byte> out) const = 0;
  // "host-memory" or "safetensors:<path>". Any thread.
  virtual std::string describe() const = 0;
};

class HostMemoryBackup final : public BackupSource {
 public:
  // expert_bytes[l] > 0 bytes per expert of layer l; num_experts >= 1. Memory:
  // the sum over layers of num_experts * expert_bytes[l], zero-filled.
  static StatusOr<std::unique_ptr<HostMemoryBackup>> create(std::vector<int64_t> expert_bytes, int32_t num_experts);
  // Stores a copy of expert e's weights (data.size() == expert_bytes[l]).
  Status set(LayerId l, ExpertId e, std::span<const std::byte> data);
  Status read_expert(LayerId l, ExpertId e, std::span<std::byte> out) const override;
  std::string describe() const override { return "host-memory"; }

 private:
  HostMemoryBackup() = default;
  StatusOr<std::span<std::byte>> locate(LayerId l, ExpertId e, size_t size, const char* what) const;
  std::vector<int64_t> expert_bytes_;
  int32_t num_experts_ = 0;
  std::vector<std::vector<std::byte>> layers_;  // [num_experts * expert_bytes[l]]
};

// Name of expert e of layer l in the checkpoints this module reads and writes.
std::string expert_tensor_name(LayerId l, ExpertId e);

class SafetensorsBackup final : public BackupSource {
 public:
  // Opens the checkpoint and checks that every expert of num_layers x
  // num_experts has its tensor (expert_tensor_name()); the byte sizes are
  // checked at each read against the slot size.
  static StatusOr<std::unique_ptr<SafetensorsBackup>> open(const std::string& path, int32_t num_layers,
                                                           int32_t num_experts);
  Status read_expert(LayerId l, ExpertId e, std::span<std::byte> out) const override;
  std::string describe() const override { return "safetensors:" + path_; }

 private:
  SafetensorsBackup() = default;
  std::string path_;
  SafetensorsFile file_;
  int32_t num_layers_ = 0;
  int32_t num_experts_ = 0;
  std::vector<const SafetensorsTensor*> tensors_;  // [layer * num_experts + expert], into file_
};

// Writes a checkpoint of num_layers x num_experts experts, expert (l, e) as a
// 1-D U8 tensor named expert_tensor_name(l, e) with the bytes fill(l, e, out)
// writes into out (expert_bytes[l] bytes).
Status write_expert_checkpoint(const std::string& path, const std::vector<int64_t>& expert_bytes, int32_t num_experts,
                               const std::function<Status(LayerId, ExpertId, std::span<std::byte>)>& fill);

}  // namespace omni
