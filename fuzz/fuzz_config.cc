// libFuzzer target: the YAML configuration; a config that parses must encode
// and parse back to the same values.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_common.h"
#include "omniplacement/io/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  omni::ConfigOptions lenient;
  lenient.allow_unknown_keys = true;
  auto c = omni::parse_config(text, "fuzz.yaml", lenient);
  if (!c.ok()) return 0;
  omni::Config expected = *c;
  expected.warnings.clear();
  auto again = omni::parse_config(omni::encode_config(*c), "again.yaml");
  OMNI_FUZZ_REQUIRE(again.ok());
  OMNI_FUZZ_REQUIRE(*again == expected);
  return 0;
}
