// Activation window dumps: background writer (bounded queue, drops counted),
// .npy + JSON sidecar round trip, reader errors, summing a dump directory
// (expert and global-slot windows), and the sample dump shipped in data/.
#include "omniplacement/io/dump_writer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "io_test_util.h"
#include "omniplacement/io/npy.h"

namespace omni {
namespace {

using testing::ScratchDir;

LoadMatrix counts(int32_t layers, int32_t ids, int64_t seed) {
  std::vector<int64_t> v(static_cast<size_t>(layers * ids));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>((i * 7 + static_cast<size_t>(seed)) % 11);
  return *LoadMatrix::from_counts(layers, ids, std::move(v));
}

DumpMetadata meta(uint64_t window) {
  DumpMetadata m;
  m.window = window;
  m.step_begin = static_cast<int64_t>(window) * 100;
  m.step_end = m.step_begin + 100;
  m.epoch = 3;
  m.placement_checksum = 0xfedcba9876543210ull;
  m.rank = 2;
  m.num_invalid = static_cast<int64_t>(window);
  return m;
}

TEST(DumpWriter, RoundTripOfCountsWeightsAndMetadata) {
  ScratchDir dir;
  auto writer = DumpWriter::start({.dir = dir.file("dumps")});
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::vector<LoadMatrix> sent;
  for (uint64_t i = 0; i < 3; ++i) {
    LoadMatrix m = counts(4, 6, static_cast<int64_t>(i));
    if (i == 1) {
      ASSERT_TRUE(m.scale(0.5).ok());  // one window of weights
    }
    sent.push_back(m);
    EXPECT_TRUE((*writer)->submit(m, meta(i)));
    ASSERT_TRUE((*writer)->flush().ok());  // one at a time: nothing is dropped
  }
  EXPECT_EQ((*writer)->num_written(), 3);
  EXPECT_EQ((*writer)->num_dropped(), 0);
  ASSERT_TRUE((*writer)->close().ok());
  EXPECT_TRUE(std::filesystem::exists(dir.file("dumps/window_00000001.npy")));

  auto back = read_dump_dir(dir.file("dumps"));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) {
    const DumpWindow& w = (*back)[i];
    EXPECT_EQ(w.load, sent[i]) << i;
    EXPECT_EQ(w.meta.window, i);
    EXPECT_EQ(w.meta.step_begin, static_cast<int64_t>(i) * 100);
    EXPECT_EQ(w.meta.step_end, static_cast<int64_t>(i) * 100 + 100);
    EXPECT_EQ(w.meta.epoch, 3);
    EXPECT_EQ(w.meta.placement_checksum, 0xfedcba9876543210ull);
    EXPECT_EQ(w.meta.rank, 2);
    EXPECT_EQ(w.meta.num_invalid, static_cast<int64_t>(i));
    EXPECT_EQ(w.meta.id_space, "expert");
  }
  // The .npy is plain numpy: int64 [4, 6] for counts.
  auto npy = read_npy(dir.file("dumps/window_00000000.npy"));
  ASSERT_TRUE(npy.ok()) << npy.status();
  EXPECT_EQ(npy->describe(), "int64 [4, 6]");
}

TEST(DumpWriter, FullQueueDropsAndCountsNeverBlocks) {
  ScratchDir dir;
  auto writer = DumpWriter::start({.dir = dir.file("d"), .queue_capacity = 1});
  ASSERT_TRUE(writer.ok()) << writer.status();
  // 58 x 256 windows take far longer to encode and write than to queue, so a
  // queue of one fills up and submit() returns false instead of waiting.
  const LoadMatrix big = counts(58, 256, 1);
  int64_t accepted = 0, refused = 0;
  for (uint64_t i = 0; i < 400; ++i) ((*writer)->submit(big, meta(i)) ? accepted : refused) += 1;
  ASSERT_TRUE((*writer)->flush().ok());
  EXPECT_GT(refused, 0);
  EXPECT_EQ((*writer)->num_dropped(), refused);
  EXPECT_EQ((*writer)->num_written(), accepted);
  auto back = read_dump_dir(dir.file("d"));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(static_cast<int64_t>(back->size()), accepted);
}

TEST(DumpWriter, SubmitAfterCloseIsADrop) {
  ScratchDir dir;
  auto writer = DumpWriter::start({.dir = dir.file("d")});
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->close().ok());
  EXPECT_FALSE((*writer)->submit(counts(1, 2, 0), meta(0)));
  EXPECT_EQ((*writer)->num_dropped(), 1);
  EXPECT_TRUE((*writer)->close().ok());  // idempotent
}

TEST(DumpWriter, WriteFailuresAreCountedAndReported) {
  ScratchDir dir;
  auto writer = DumpWriter::start({.dir = dir.file("d")});
  ASSERT_TRUE(writer.ok());
  DumpMetadata bad = meta(0);
  bad.id_space = "slots";  // not a valid id space: the write fails
  EXPECT_TRUE((*writer)->submit(counts(1, 2, 0), bad));
  const Status s = (*writer)->flush();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("id_space 'slots'"), std::string::npos) << s;
  EXPECT_EQ((*writer)->num_failed(), 1);
  EXPECT_TRUE((*writer)->flush().ok());  // reported once
}

struct BadOptions {
  std::string name;
  DumpWriterOptions options;
  std::string message;
};

class DumpWriterOptionsTable : public ::testing::TestWithParam<BadOptions> {};

TEST_P(DumpWriterOptionsTable, AreRejected) {
  auto w = DumpWriter::start(GetParam().options);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find(GetParam().message), std::string::npos) << w.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, DumpWriterOptionsTable,
    ::testing::Values(BadOptions{"EmptyDir", {.dir = ""}, "dir is empty"},
                      BadOptions{"ZeroQueue", {.dir = "/tmp/x", .queue_capacity = 0}, "queue_capacity = 0"},
                      BadOptions{"PrefixWithSlash", {.dir = "/tmp/x", .file_prefix = "a/b"}, "file_prefix 'a/b'"},
                      BadOptions{"DotPrefix", {.dir = "/tmp/x", .file_prefix = ".."}, "file_prefix '..'"},
                      BadOptions{"DirIsAFile", {.dir = "/dev/null/x"}, "cannot create directory"}),
    [](const auto& info) { return info.param.name; });

// A valid sidecar for a [2, 3] counts window in `npy`, with `key` set to `value` when given.
std::string sidecar(const std::string& npy, const char* key = nullptr, const nlohmann::json& value = nullptr) {
  nlohmann::json j = {{"format", "omniplacement.activation_window"},
                      {"version", 1},
                      {"npy", npy},
                      {"num_layers", 2},
                      {"num_ids", 3},
                      {"id_space", "expert"},
                      {"kind", "counts"},
                      {"window", 0},
                      {"step_begin", 0},
                      {"step_end", 1},
                      {"epoch", 0},
                      {"placement_checksum", "0000000000000000"},
                      {"rank", -1},
                      {"num_invalid", 0}};
  if (key != nullptr) j[key] = value;
  return j.dump();
}

struct ReaderCase {
  std::string name;
  std::string json;
  std::string message;
};

class DumpReaderErrors : public ::testing::TestWithParam<ReaderCase> {};

TEST_P(DumpReaderErrors, NameTheFileAndTheProblem) {
  ScratchDir dir;
  ASSERT_TRUE(write_npy(dir.file("w.npy"), NpyArray{NpyDtype::kInt64, {2, 3}, {1, 2, 3, 4, 5, 6}, {}}).ok());
  testing::spit(dir.file("w.json"), GetParam().json);
  auto w = read_dump_window(dir.file("w.json"));
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find(GetParam().message), std::string::npos) << w.status();
  EXPECT_NE(w.status().message().find("w."), std::string::npos) << w.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, DumpReaderErrors,
    ::testing::Values(
        ReaderCase{"NotJson", "{oops", "not valid JSON (byte 2)"},
        ReaderCase{"WrongFormat", sidecar("w.npy", "format", "other"), "format 'other'"},
        ReaderCase{"FutureVersion", sidecar("w.npy", "version", 2), "version 2"},
        ReaderCase{"MissingNpy", sidecar("gone.npy"), "gone.npy"},
        ReaderCase{"NpyOutsideTheFolder", sidecar("../w.npy"), "must be a file name in the same directory"},
        ReaderCase{"ShapeMismatch", sidecar("w.npy", "num_ids", 4), "says [2, 4]"},
        ReaderCase{"KindMismatch", sidecar("w.npy", "kind", "weights"), "kind 'weights'"},
        ReaderCase{"BadKind", sidecar("w.npy", "kind", "bytes"), "kind 'bytes'"},
        ReaderCase{"BadIdSpace", sidecar("w.npy", "id_space", "slot"), "id_space 'slot'"},
        ReaderCase{"BadChecksum", sidecar("w.npy", "placement_checksum", "12"), "16 lower-case hex"},
        ReaderCase{"NegativeWindow", sidecar("w.npy", "window", -1), "\"window\" = -1 is out of range [0, "},
        ReaderCase{"StringEpoch", sidecar("w.npy", "epoch", "3"), "\"epoch\" must be an integer"}),
    [](const auto& info) { return info.param.name; });

TEST(DumpReader, ValidSidecarFromTheTableReads) {
  // The table's sidecar is valid when nothing is changed (so each error above is the edit's).
  ScratchDir dir;
  ASSERT_TRUE(write_npy(dir.file("w.npy"), NpyArray{NpyDtype::kInt64, {2, 3}, {1, 2, 3, 4, 5, 6}, {}}).ok());
  testing::spit(dir.file("w.json"), sidecar("w.npy"));
  auto w = read_dump_window(dir.file("w.json"));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->load.counts_row(1)[2], 6);
}

TEST(DumpReader, EmptyOrMissingDirectoryIsNotFound) {
  ScratchDir dir;
  std::filesystem::create_directories(dir.file("empty"));
  EXPECT_EQ(read_dump_dir(dir.file("empty")).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(read_dump_dir(dir.file("missing")).status().code(), StatusCode::kNotFound);
}

TEST(DumpDirLoad, SumsExpertWindowsExactly) {
  ScratchDir dir;
  LoadMatrix want = *LoadMatrix::zeros(3, 5);
  for (uint64_t i = 0; i < 4; ++i) {
    const LoadMatrix m = counts(3, 5, static_cast<int64_t>(i));
    ASSERT_TRUE(want.add(m).ok());
    ASSERT_TRUE(write_dump_window(dir.file(""), "window", m, meta(i)).ok());
  }
  auto total = read_dump_dir_load(dir.file(""));
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, want);
}

TEST(DumpDirLoad, GlobalSlotWindowsUseThePlacementInForce) {
  ScratchDir dir;
  // 1 layer, 2 ranks, 3 experts, 2 slots per rank: slots hold experts {0, 1 | 2, empty}.
  const Placement p = *Placement::contiguous(1, 2, 3, 2);
  DumpMetadata m = meta(0);
  m.id_space = "global_slot";
  m.placement_checksum = p.checksum();
  // Slot columns padded to 5 (a recorder sized for the widest layer).
  ASSERT_TRUE(write_dump_window(dir.file(""), "w", *LoadMatrix::from_counts(1, 5, {10, 20, 30, 0, 0}), m).ok());
  auto total = read_dump_dir_load(dir.file(""), &p);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(total->counts_row(0)[0], 10);
  EXPECT_EQ(total->counts_row(0)[1], 20);
  EXPECT_EQ(total->counts_row(0)[2], 30);

  EXPECT_NE(read_dump_dir_load(dir.file("")).status().message().find("need the placement in force"),
            std::string::npos);
  const Placement other = *Placement::contiguous(1, 3, 3, 1);
  EXPECT_NE(read_dump_dir_load(dir.file(""), &other).status().message().find("recorded under placement checksum"),
            std::string::npos);
}

TEST(DumpDirLoad, CountsPastThePlacementsSlotsAreRefused) {
  ScratchDir dir;
  const Placement p = *Placement::contiguous(1, 2, 3, 2);
  DumpMetadata m = meta(0);
  m.id_space = "global_slot";
  m.placement_checksum = 0;  // unknown: not compared
  ASSERT_TRUE(write_dump_window(dir.file(""), "w", *LoadMatrix::from_counts(1, 5, {1, 1, 1, 0, 7}), m).ok());
  const Status s = read_dump_dir_load(dir.file(""), &p).status();
  EXPECT_NE(s.message().find("7 tokens in global slot 4"), std::string::npos) << s;
}

TEST(DumpDirLoad, ShapesMustAgree) {
  ScratchDir dir;
  ASSERT_TRUE(write_dump_window(dir.file(""), "w", counts(2, 3, 0), meta(0)).ok());
  ASSERT_TRUE(write_dump_window(dir.file(""), "w", counts(2, 4, 0), meta(1)).ok());
  const Status s = read_dump_dir_load(dir.file("")).status();
  EXPECT_NE(s.message().find("2 x 4 loads; the windows before it are 2 x 3"), std::string::npos) << s;
}

// data/windows/: two windows written by write_dump_window (see
// data/README.md). Reading them gives the documented loads, and writing them
// again gives the same bytes (the format is stable).
TEST(DumpSample, ShippedWindowsReadAndRewriteByteForByte) {
  const std::string dir = testing::data_path("windows");
  auto windows = read_dump_dir(dir);
  ASSERT_TRUE(windows.ok()) << windows.status();
  ASSERT_EQ(windows->size(), 2u);
  EXPECT_EQ((*windows)[0].load, *LoadMatrix::from_counts(2, 4, {5, 0, 3, 1, 2, 2, 2, 2}));
  EXPECT_EQ((*windows)[1].load, *LoadMatrix::from_counts(2, 4, {1, 1, 0, 6, 0, 4, 0, 4}));
  EXPECT_EQ((*windows)[1].meta.step_begin, 100);
  EXPECT_EQ((*windows)[1].meta.epoch, 1);
  auto total = read_dump_dir_load(dir);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, *LoadMatrix::from_counts(2, 4, {6, 1, 3, 7, 2, 6, 2, 6}));
  ScratchDir out;
  for (const DumpWindow& w : *windows) ASSERT_TRUE(write_dump_window(out.file(""), "window", w.load, w.meta).ok());
  for (const char* f : {"window_00000000.npy", "window_00000000.json", "window_00000001.npy", "window_00000001.json"})
    EXPECT_EQ(testing::slurp(out.file(f)), testing::slurp(dir + "/" + f)) << f;
}

}  // namespace
}  // namespace omni
