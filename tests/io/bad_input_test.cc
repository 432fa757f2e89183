// Crafted bad inputs for every reader of the io module: each gives an error
// that names what was wrong and where, never a crash, a hang or an
// allocation the file cannot justify. Each row of the tables was a bug or a
// case found while hunting for them (docs/formats.md, "Limits").
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "io_test_util.h"
#include "omniplacement/io/activation_dump.h"
#include "omniplacement/io/config.h"
#include "omniplacement/io/dump_writer.h"
#include "omniplacement/io/load_file.h"
#include "omniplacement/io/npy.h"
#include "omniplacement/io/pattern.h"
#include "omniplacement/io/placement_file.h"
#include "omniplacement/io/safetensors.h"
#include "omniplacement/io/trace.h"

namespace omni {
namespace {

using testing::ScratchDir;

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

const std::string kHead = R"({"format": "omniplacement.placement", "version": 1, "num_ranks": 2, "num_experts": 2, )";
const std::string kBody = R"("slots_per_rank": [1], "phy2log": [[0, 1]])";

struct JsonCase {
  std::string name;
  std::string text;
  std::string message;
};

class BadPlacementJson : public ::testing::TestWithParam<JsonCase> {};

TEST_P(BadPlacementJson, IsRefusedWithItsPath) {
  auto r = parse_placement_json(GetParam().text, "bad.json");
  ASSERT_FALSE(r.ok()) << GetParam().name;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(GetParam().message), std::string::npos) << r.status();
  EXPECT_EQ(r.status().message().rfind("bad.json: ", 0), 0u) << r.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadPlacementJson,
    ::testing::Values(
        // 200 KB of nested arrays crashed validate and eval (a recursive dump() in the error path).
        JsonCase{"NestedArraysAtTheTop", repeat("[", 100000) + repeat("]", 100000),
                 "the top level must be a JSON object, got array"},
        JsonCase{"NestedArraysInLogcnt", kHead + kBody + R"(, "logcnt": [[)" + repeat("[", 100000) + repeat("]", 100000) + "]]}",
                 "logcnt[0][0] must be a number, got an array"},
        JsonCase{"NestedInsideAValueOfTheWrongType",
                 kHead + kBody + R"(, "topology": {"host_of_rank": [0, 1], "bandwidths": {"latency_s": )" +
                     repeat("[", 100) + repeat("]", 100) + "}}}",
                 "nesting deeper than 16 levels"},
        JsonCase{"NestedObjects", repeat(R"({"a": )", 50000) + "1" + repeat("}", 50000), "unknown key \"a\""},
        // Duplicate keys: the last value used to win.
        JsonCase{"DuplicateTopLevelKey", kHead + kBody + R"(, "num_ranks": 2})", "key \"num_ranks\" appears twice"},
        JsonCase{"DuplicateNestedKey",
                 kHead + kBody + R"(, "topology": {"host_of_rank": [0, 1], "host_of_rank": [0, 0]}})",
                 "key \"topology.host_of_rank\" appears twice"},
        // Slot ids were narrowed to int32 before any check: 2^32 became slot 0.
        JsonCase{"Log2phySlotBeyondInt32", kHead + kBody + R"(, "log2phy": [[[4294967296], [1]]]})",
                 "log2phy[0][0] (layer 0, expert 0)[0] = 4294967296 is out of range [0, 1]"},
        JsonCase{"Log2phyNegativeSlot", kHead + kBody + R"(, "log2phy": [[[-5], [1]]]})", "= -5 is out of range [0, 1]"},
        JsonCase{"Log2phyPaddingNotMinusOne", kHead + kBody + R"(, "log2phy": [[[0, 7], [1, -1]]]})",
                 "log2phy[0][0] (layer 0, expert 0)[1] = 7: padding after the 1 replicas must be -1"},
        JsonCase{"Log2phyOneLevelShort", kHead + kBody + R"(, "log2phy": [[0, 1]]})",
                 "log2phy[0][0] must be an array, got a number"},
        JsonCase{"LogcntFloat", kHead + kBody + R"(, "logcnt": [[1.0, 1]]})", "logcnt[0][0] (layer 0, expert 0) = 1"},
        JsonCase{"IntegerBeyond2To53", kHead + R"("slots_per_rank": [9007199254740993], "phy2log": [[0, 1]]})",
                 "slots_per_rank[0] = '9007199254740993' is too large"},
        JsonCase{"IntegerBeyond64Bits", kHead + R"("slots_per_rank": [1], "phy2log": [[0, 100000000000000000000000]]})",
                 "phy2log[0][1] = '100000000000000000000000' is too large"},
        JsonCase{"FloatBeyondDouble", kHead + kBody + R"(, "shares": [[1e999, 1]]})", "not valid JSON"},
        JsonCase{"StringInARow", kHead + R"("slots_per_rank": [1], "phy2log": [[0, "1"]]})",
                 "phy2log[0][1] must be a number, got a string"},
        JsonCase{"NullInARow", kHead + R"("slots_per_rank": [1], "phy2log": [[0, null]]})",
                 "phy2log[0][1] must be a number, got null"},
        JsonCase{"ObjectForAnArray", kHead + R"("slots_per_rank": {"a": 1}, "phy2log": [[0, 1]]})",
                 "\"slots_per_rank\" must be an array of 1..16384 integers, got object"},
        JsonCase{"TrailingText", kHead + kBody + "} x", "not valid JSON"},
        JsonCase{"Empty", "", "not valid JSON (byte 1)"},
        JsonCase{"NulByte", kHead + std::string(1, '\0') + kBody + "}", "not valid JSON"},
        JsonCase{"BadUtf8InAKey", kHead + kBody + ", \"\xff\xfe\": 1}", "ill-formed UTF-8 byte; last read: '\"?'"},
        JsonCase{"TooManySlotsPerLayer",
                 R"({"format": "omniplacement.placement", "version": 1, "num_ranks": 16384, "num_experts": 2, )"
                 R"("slots_per_rank": [16384], "phy2log": [[0]]})",
                 "16384 ranks x 16384 slots exceed 16777216 slots per layer"},
        JsonCase{"ManyEmptyRows", kHead + R"("slots_per_rank": [1], "phy2log": [)" + repeat("[], ", 100000) + "[]]}",
                 "\"phy2log\" must be an array of 1 layers (one per slots_per_rank entry), got 100001 elements"}),
    [](const auto& info) { return info.param.name; });

// A file of `bytes` under `name`, read by `read`; the error must contain `message`.
struct FileCase {
  std::string name;
  std::string file;
  std::string bytes;
  std::function<Status(const std::string&)> read;
  std::string message;
};

Status read_load(const std::string& path) { return read_load_file(path).status(); }
Status read_trace(const std::string& path) { return Trace::read_csv(path).status(); }
Status read_placement(const std::string& path) { return read_placement_file(path).status(); }
Status read_yaml(const std::string& path) { return read_config(path).status(); }
Status read_dump(const std::string& path) {
  // 1 layer, 2 ranks x 2 slots: [0 1 | 2 -1].
  static const Placement p = *Placement::contiguous(1, 2, 3, 2);
  return read_activation_dump(path, p).status();
}

std::string npy_bytes(const std::string& descr, const std::string& shape, const std::string& data) {
  std::string d = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + d.size() + 1) % 64) d.push_back(' ');
  d.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(d.size() & 0xff));
  out.push_back(static_cast<char>(d.size() >> 8));
  return out + d + data;
}

std::string le64(int64_t v) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &v, 8);
  return s;
}

std::string le32s(std::initializer_list<int32_t> vs) {
  std::string s;
  for (int32_t v : vs) {
    char b[4];
    std::memcpy(b, &v, 4);
    s.append(b, 4);
  }
  return s;
}

std::string trace_rows(int n, const std::function<std::string(int)>& row) {
  std::string s = ",dataset,iteration,layer_idx,0,1,2,3\n";
  for (int i = 0; i < n; ++i) s += row(i);
  return s;
}

class BadFile : public ::testing::TestWithParam<FileCase> {};

TEST_P(BadFile, IsRefusedWithWhatAndWhere) {
  ScratchDir dir;
  const std::string path = dir.file(GetParam().file);
  testing::spit(path, GetParam().bytes);
  const Status s = GetParam().read(path);
  ASSERT_FALSE(s.ok()) << GetParam().name;
  EXPECT_NE(s.message().find(GetParam().message), std::string::npos) << s;
  EXPECT_NE(s.message().find(GetParam().file), std::string::npos) << "the file is named: " << s;
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadFile,
    ::testing::Values(
        // Loads whose totals overflow used to give inf/NaN metrics and a plan with exit 0.
        FileCase{"FiniteWeightsSummingToInf", "w.csv", "1.7e308,1.7e308,1\n1,2,3\n", read_load,
                 "layer 0: the weights sum to inf, above the largest total load of one layer, kMaxLayerLoad"},
        FileCase{"CountsSummingPastInt64", "c.csv", "9223372036854775807,9223372036854775807\n", read_load,
                 "layer 0: the counts sum to"},
        FileCase{"CountsAboveTheLayerLimit", "c2.csv", "1,1\n9007199254740992,1\n", read_load, "layer 1:"},
        FileCase{"NpyCountsSummingPastInt64", "c.npy",
                 npy_bytes("<i8", "(1, 2)", le64(int64_t{1} << 62) + le64(int64_t{1} << 62)), read_load,
                 "kMaxLayerLoad"},
        FileCase{"TraceCountsSummingPastInt64", "t.csv",
                 trace_rows(1, [](int) { return "0,d,0,0,9223372036854775807,9223372036854775807,0,0\n"; }), read_trace,
                 "window d#0: load matrix: layer 0: the counts sum to"},
        FileCase{"DumpTotalOf9e18", "d.txt", "4611686018427387904\t4611686018427387903\t0\t0\n", read_dump,
                 "kMaxLayerLoad"},
        // A row naming layer 16000 used to resize a table to 16001 rows per window (3 GB for 57 KB).
        FileCase{"TraceFarLayerInEveryWindow", "far.csv",
                 trace_rows(3000, [](int i) { return std::to_string(i) + ",d," + std::to_string(i) + ",16000,1,2,3,4\n"; }),
                 read_trace, "window d#0 has no row for layer 0 (the trace has 16001 layers: 0..16000)"},
        FileCase{"TraceLayerBeyondTheLimit", "l.csv", trace_rows(1, [](int) { return "0,d,0,16384,1,2,3,4\n"; }),
                 read_trace, "l.csv:2: layer 16384 exceeds 16383"},
        FileCase{"TraceTooManyWindows", "many.csv",
                 trace_rows(65537, [](int i) { return std::to_string(i) + ",d," + std::to_string(i) + ",0,1,2,3,4\n"; }),
                 read_trace, "many.csv:65538: more than 65536 windows"},
        FileCase{"TraceLayerTwice", "twice.csv",
                 trace_rows(2, [](int i) { return std::to_string(i) + ",d,0,0,1,2,3,4\n"; }), read_trace,
                 "twice.csv:3: window d#0 has layer 0 twice (first at line 2)"},
        FileCase{"TraceNameTooLong", "name.csv",
                 trace_rows(1, [](int) { return "0," + std::string(300, 'x') + ",0,0,1,2,3,4\n"; }), read_trace,
                 "name.csv:2: a model, domain or dataset name longer than 256 bytes"},
        FileCase{"TraceWrongColumnCount", "cols.csv", trace_rows(1, [](int) { return "0,d,0,0,1,2,3\n"; }), read_trace,
                 "cols.csv:2: 7 fields, the header has 8 (4 keys and 4 experts)"},
        FileCase{"TraceNulInACount", "nul.csv", trace_rows(1, [](int) { return std::string("0,d,0,0,1,2\0,3,4\n", 17); }),
                 read_trace, "nul.csv:2: layer 0, expert 1: '2?' is not a finite number"},
        FileCase{"LoadCsvRaggedRow", "rag.csv", "1,2,3\n1,2\n", read_load, "rag.csv:2: layer 1 has 2 values"},
        FileCase{"LoadCsvEmpty", "empty.csv", "", read_load, "no load rows"},
        FileCase{"DumpWrongColumnCount", "cols.txt", "1\t2\t3\n", read_dump,
                 "layer 0: the dump has 3 slot counts, the placement has 2 ranks x 2 = 4 slots"},
        FileCase{"DumpBlankLineBetweenLayers", "blank.txt", "1\t1\t1\t0\n\n1\t1\t1\t0\n", read_dump,
                 "blank.txt:2: layer 1 has no counts (a blank line between layers)"},
        FileCase{"DumpTooManyLines", "lines.txt", repeat("0\n", 16385), read_dump,
                 "lines.txt:16385: more than 16384 lines"},
        FileCase{"DumpCountInAnEmptySlot", "empty_slot.txt", "1\t1\t1\t5\n", read_dump,
                 "global slot 3 (rank 1) is empty in the placement but has 5 tokens"},
        // npy headers that lie about the data.
        FileCase{"NpyShapeBeyondTheData", "big.npy", npy_bytes("<i4", "(1000000, 1000000, 1000)", std::string(64, '\0')),
                 read_placement, "absurd .npy shape (1000000, 1000000, 1000)"},
        FileCase{"NpyShapeLargerThanItsData", "short.npy", npy_bytes("<i4", "(2, 2, 2)", std::string(12, '\0')),
                 read_placement, "truncated .npy data: shape (2, 2, 2) of <i4 needs 32 bytes, the file has 12"},
        FileCase{"NpyDataBeyondItsShape", "long.npy", npy_bytes("<i4", "(1, 1, 1)", std::string(8, '\1')),
                 read_placement, "4 unexpected bytes after the .npy data"},
        FileCase{"NpyNegativeDimension", "neg.npy", npy_bytes("<i4", "(-1, 1, 1)", ""), read_placement,
                 "shape entries must be non-negative integers"},
        FileCase{"NpyLoadNaN", "nan.npy", npy_bytes("<f8", "(1, 2)", std::string("\0\0\0\0\0\0\xf8\x7f", 8) + le64(0)),
                 read_load, "load must be finite and >= 0, got nan at layer 0, expert 0"},
        // Pattern containers whose header and size disagree.
        FileCase{"BinHeaderLargerThanTheFile", "h.bin", le32s({64, 58, 256}) + std::string(16, '\0'), read_placement,
                 "truncated pattern: header [64, 58, 256] needs 3801100 bytes, the file has 28"},
        FileCase{"BinHugeHeader", "huge.bin", le32s({16384, 16384, 65536}), read_placement,
                 "pattern shape [16384, 16384, 65536] has more than 268435456 elements"},
        FileCase{"BinExtraBytes", "extra.bin", le32s({1, 1, 1, 1}) + "xy", read_placement,
                 "2 unexpected bytes after the 1 pattern values"},
        FileCase{"TxtFewerValuesThanTheHeader", "few.txt", "2 1 3\n1 1 1\n", read_placement,
                 "truncated pattern: header says 6 values, the file has 3"},
        FileCase{"TxtValueNotZeroOrOne", "two.txt", "1 1 2\n1 2\n", read_placement,
                 "two.txt:2: pattern value '2' at [rank 0, layer 0, expert 1] is not 0 or 1"},
        FileCase{"TxtLayerWithoutReplicas", "none.txt", "2 1 2\n0 0 0 0\n", read_placement,
                 "layer 0 has no replica on any rank"},
        // YAML: the nesting check stopped at the first comment.
        FileCase{"YamlNestingAfterAComment", "c.yaml", "# a comment\nplanner: " + repeat("[", 5000) + repeat("]", 5000),
                 read_yaml, "c.yaml:2: more than 16 nested collections"},
        FileCase{"YamlNestingAfterAnApostrophe", "a.yaml",
                 "pattern_path: it's\nplanner: " + repeat("[", 5000) + repeat("]", 5000), read_yaml,
                 "a.yaml:2: more than 16 nested collections"},
        FileCase{"YamlNestingAfterAnEscapedQuote", "q.yaml",
                 "planner: [\"a\\\" #\", " + repeat("[", 5000) + repeat("]", 5001), read_yaml,
                 "q.yaml:1: more than 16 nested collections"},
        FileCase{"YamlWrongType", "t.yaml", "max_moe_layer_num: abc\n", read_yaml,
                 "t.yaml:1: 'max_moe_layer_num' must be an integer, got 'abc'"},
        FileCase{"YamlDuplicateKey", "d.yaml", "planner: eplb\nplanner: omni\n", read_yaml,
                 "d.yaml:2: key 'planner' appears twice"},
        FileCase{"YamlOverTheSizeCap", "big.yaml", "planner: " + std::string(size_t{1} << 20, 'a'), read_yaml,
                 "bytes exceeds 1048576"}),
    [](const auto& info) { return info.param.name; });

TEST(BadInput, NonRegularFilesAreRefusedBeforeAnyRead) {
  ScratchDir dir;
  const std::vector<std::pair<std::string, std::function<Status(const std::string&)>>> readers = {
      {"f.json", read_placement},  {"f.npy", read_placement},  {"f.bin", read_placement}, {"f.txt", read_placement},
      {"g.npy", read_load},        {"g.csv", read_load},       {"h.csv", read_trace},     {"f.yaml", read_yaml},
      {"d.txt", read_dump},
  };
  for (const auto& [name, read] : readers) {
    const std::string fifo = dir.file("fifo_" + name);
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    // Without the check the read blocks forever waiting for a writer.
    const Status s = read(fifo);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << name << ": " << s;
    EXPECT_NE(s.message().find("is a FIFO (named pipe), not a regular file"), std::string::npos) << s;
    const std::string folder = dir.file("dir_" + name);
    std::filesystem::create_directories(folder);
    EXPECT_NE(read(folder).message().find("is a directory, not a regular file"), std::string::npos) << name;
  }
  std::filesystem::create_symlink("/dev/null", dir.file("null.npy"));
  EXPECT_NE(read_placement(dir.file("null.npy")).message().find("is a character device"), std::string::npos);
  const std::string fifo = dir.file("fifo.safetensors");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_NE(SafetensorsFile::open(fifo).status().message().find("FIFO"), std::string::npos);
  EXPECT_EQ(read_placement(dir.file("missing.json")).code(), StatusCode::kNotFound);
}

TEST(BadInput, SafetensorsHeadersAreCheckedWhileRead) {
  struct Case {
    std::string json;
    std::string message;
  };
  const std::vector<Case> cases = {
      {R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
       "tensor 'a' appears twice"},
      {R"({"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "tensor 'a' has \"dtype\" twice"},
      {R"({"a":{"dtype":"U8","shape":[)" + repeat("1,", 64) + R"(1],"data_offsets":[0,1]}})",
       "tensor 'a' has more than 64 dimensions"},
      {R"({"a":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}})", "\"shape\" must hold integers >= 0, got an array"},
      {R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})", "more than two data_offsets"},
      {R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "data_offsets of 1 numbers"},
      {R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":)" + repeat("[", 40) + repeat("]", 40) + "}}",
       "nests deeper than 16 levels"},
      {R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", "got a number that is not an integer"},
      {R"({"__metadata__":{"k":"v","k":"w"}})", "__metadata__ key 'k' appears twice"},
      {R"({"__metadata__":[1]})", "__metadata__ must be an object of strings, got an array"},
      {"[1]", "the header must be a JSON object, got an array"},
  };
  for (const Case& c : cases) {
    std::vector<std::byte> bytes(8 + c.json.size() + 8);
    const uint64_t n = c.json.size();
    for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = std::byte(static_cast<uint8_t>(n >> (8 * i)));
    std::memcpy(bytes.data() + 8, c.json.data(), c.json.size());
    auto f = SafetensorsFile::parse(bytes);
    ASSERT_FALSE(f.ok()) << c.json;
    EXPECT_EQ(f.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(f.status().message().find(c.message), std::string::npos) << f.status();
  }
}

TEST(BadInput, DumpSidecarsRefuseDuplicateKeysAndHugeFiles) {
  ScratchDir dir;
  testing::spit(dir.file("w.json"), R"({"format": "omniplacement.activation_window", "version": 1, "version": 1})");
  auto w = read_dump_window(dir.file("w.json"));
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("key \"version\" appears twice"), std::string::npos) << w.status();
  testing::spit(dir.file("big.json"), "{\"x\": \"" + std::string(size_t{1} << 21, 'a') + "\"}");
  w = read_dump_window(dir.file("big.json"));
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("an activation window sidecar has at most 1048576"), std::string::npos)
      << w.status();
}

}  // namespace
}  // namespace omni
