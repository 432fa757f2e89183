// libFuzzer target: the JSON placement format; a file that parses must encode
// and parse back to the same placement and topology.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_common.h"
#include "omniplacement/io/placement_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto f = omni::parse_placement_json(text, "fuzz.json");
  if (!f.ok()) return 0;
  auto encoded = omni::encode_placement_json(*f);
  OMNI_FUZZ_REQUIRE(encoded.ok());
  auto g = omni::parse_placement_json(*encoded, "again.json");
  OMNI_FUZZ_REQUIRE(g.ok());
  OMNI_FUZZ_REQUIRE(g->placement == f->placement);
  OMNI_FUZZ_REQUIRE(g->topology.has_value() == f->topology.has_value());
  if (f->topology) OMNI_FUZZ_REQUIRE(*g->topology == *f->topology);
  return 0;
}
