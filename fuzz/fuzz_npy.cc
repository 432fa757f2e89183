// libFuzzer target: parse_npy on arbitrary bytes; whatever parses must encode
// and parse back to the same array.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_common.h"
#include "omniplacement/io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto a = omni::parse_npy(bytes, "fuzz.npy");
  if (!a.ok()) return 0;
  auto encoded = omni::encode_npy(*a);
  OMNI_FUZZ_REQUIRE(encoded.ok());
  auto b = omni::parse_npy(*encoded, "again.npy");
  OMNI_FUZZ_REQUIRE(b.ok());
  // NaN payloads compare unequal; compare the encodings instead.
  OMNI_FUZZ_REQUIRE(*omni::encode_npy(*b) == *encoded);
  return 0;
}
