// libFuzzer target: the safetensors header parser; every tensor it accepts must
// be readable from the same bytes into a buffer of its size.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_common.h"
#include "omniplacement/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto f = omni::SafetensorsFile::parse(bytes);
  if (!f.ok()) return 0;
  for (const auto& t : f->tensors()) {
    OMNI_FUZZ_REQUIRE(t.end >= t.begin && f->data_offset() + t.end <= size);
    std::vector<std::byte> buf(t.num_bytes());
    OMNI_FUZZ_REQUIRE(f->read_from(bytes, t, buf).ok());
    OMNI_FUZZ_REQUIRE(f->find(t.name) != nullptr);
  }
  return 0;
}
