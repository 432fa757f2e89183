// Safetensors checkpoints: read expert weights from a model checkpoint (the
// backup source of failover restore) and write small checkpoints (tests, demos).
//
// Format: an 8-byte little-endian header length N, N bytes of JSON mapping each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the data area that follows the header), optionally a
// "__metadata__" object of string values, then the data area.
//
//   auto ckpt = omni::SafetensorsFile::open("model.safetensors");
//   if (!ckpt.ok()) return ckpt.status();
//   const omni::SafetensorsTensor* t = ckpt->find("layers.3.experts.17.w1");
//   std::vector<std::byte> buf(t->num_bytes());
//   OMNI_RETURN_IF_ERROR(ckpt->read(*t, buf));
//
// Every header entry is checked: known dtype, non-negative shape whose element
// count times the dtype size equals end - begin without overflow, offsets
// inside the data area, no two tensors overlapping. Reading checks the
// destination size. Nothing is read beyond the file.
//
// Thread safety: a SafetensorsFile is immutable after open(); read() opens the
// file per call, so several threads may read concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "omniplacement/core/status.h"

namespace omni {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;           // "F32", "BF16", "F8_E4M3", "I64", ...
  std::vector<int64_t> shape;  // row-major
  uint64_t begin = 0;          // byte offset in the data area
  uint64_t end = 0;            // one past the last byte
  uint64_t num_bytes() const { return end - begin; }
};

// Bytes per element of a safetensors dtype name, or 0 when unknown.
size_t safetensors_dtype_size(const std::string& dtype);

class SafetensorsFile {
 public:
  // Reads and validates the header of the file at `path` (not the data).
  static StatusOr<SafetensorsFile> open(const std::string& path);
  // Validates a header given the whole file's bytes (used by the fuzzer and
  // for in-memory checkpoints); read_from() then reads from those bytes.
  static StatusOr<SafetensorsFile> parse(std::span<const std::byte> file_bytes);

  // Tensors in ascending order of their data offset.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  // nullptr when absent.
  const SafetensorsTensor* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Byte offset of the data area in the file (8 + header length).
  uint64_t data_offset() const { return data_offset_; }

  // Copies tensor t's bytes from the file given to open() into out, whose size
  // must equal t.num_bytes().
  Status read(const SafetensorsTensor& t, std::span<std::byte> out) const;
  // The same from the bytes given to parse().
  Status read_from(std::span<const std::byte> file_bytes, const SafetensorsTensor& t,
                   std::span<std::byte> out) const;

 private:
  std::string path_;
  uint64_t data_offset_ = 0;
  uint64_t file_size_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: its bytes are copied from `data` (size must equal the
// element count times the dtype size).
struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
};

// Writes a checkpoint atomically (to path + ".tmp", then rename): tensors laid
// out in the given order. Names must be distinct and non-empty.
Status write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace omni
