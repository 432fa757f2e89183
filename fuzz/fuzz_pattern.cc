// libFuzzer target: omni-infer pattern containers. The first byte picks the
// container (npy, txt, bin); a tensor that parses and converts to a Placement
// must convert back to the same tensor and re-encode to bytes that parse equal.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_common.h"
#include "omniplacement/io/pattern.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const omni::PatternFormat formats[] = {omni::PatternFormat::kNpy, omni::PatternFormat::kText,
                                         omni::PatternFormat::kBinary};
  const omni::PatternFormat format = formats[data[0] % 3];
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto t = omni::parse_pattern(bytes, format, "fuzz");
  if (!t.ok()) return 0;
  auto encoded = omni::encode_pattern(*t, format);
  OMNI_FUZZ_REQUIRE(encoded.ok());
  auto again = omni::parse_pattern(*encoded, format, "again");
  OMNI_FUZZ_REQUIRE(again.ok() && *again == *t);
  auto p = omni::placement_from_pattern(*t, "fuzz");
  if (!p.ok()) return 0;
  auto back = omni::pattern_from_placement(*p, t->npy_dtype);
  OMNI_FUZZ_REQUIRE(back.ok());
  back->text_crlf = t->text_crlf;
  OMNI_FUZZ_REQUIRE(*back == *t);
  return 0;
}
