// libFuzzer target: every load parser. The first byte picks one: the plain load
// CSV (which must round-trip through encode_load_csv), the trace CSV (with a
// selector taken from the first line of the input), or an activation dump read
// under a small fixed placement.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "omniplacement/io/activation_dump.h"
#include "omniplacement/io/load_file.h"
#include "omniplacement/io/trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto m = omni::parse_load_csv(text, "fuzz.csv");
      if (!m.ok()) return 0;
      auto again = omni::parse_load_csv(omni::encode_load_csv(*m), "again.csv");
      OMNI_FUZZ_REQUIRE(again.ok() && *again == *m);
      break;
    }
    case 1: {
      const size_t nl = text.find('\n');
      auto selector = omni::TraceSelector::parse(text.substr(0, nl == std::string_view::npos ? text.size() : nl));
      auto t = omni::Trace::parse_csv(nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1), "fuzz");
      if (!t.ok()) return 0;
      OMNI_FUZZ_REQUIRE(!t->windows().empty());
      if (selector.ok()) (void)t->select(*selector);
      auto series = t->windows(std::vector<std::string>{t->windows().front().group});
      (void)series;
      break;
    }
    default: {
      auto counts = omni::parse_activation_dump(text, "fuzz.txt");
      if (!counts.ok()) return 0;
      auto again = omni::parse_activation_dump(omni::encode_activation_dump(*counts));
      OMNI_FUZZ_REQUIRE(again.ok() && *again == *counts);
      // Two layers, 2 ranks, 3 experts, 2 slots per rank: [0 1 | 2 -1].
      static const omni::Placement placement = *omni::Placement::contiguous(2, 2, 3, 2);
      auto load = omni::loads_from_slot_counts(*counts, placement);
      if (load.ok()) OMNI_FUZZ_REQUIRE(load->num_layers() == 2 && load->num_experts() == 3);
      break;
    }
  }
  return 0;
}
