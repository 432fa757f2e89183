// Every reader's peak heap stays within a small multiple of its file
// (docs/formats.md, "Limits"): kMemoryFactor x the file size + kMemorySlack.
//
// Peak heap is counted exactly: this executable replaces the global operator
// new/delete (every C++ allocation, including nlohmann's and yaml-cpp's, goes
// through them) and records the high-water mark of live bytes during one read.
// The files are a few MB each and of the densest text each format allows (one
// digit per number, one separator), which is the worst case for bytes of
// memory per byte of file; a realistic file of the same format is checked too.
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>
#include <random>
#include <string>

#include "io_test_util.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/activation_dump.h"
#include "omniplacement/io/config.h"
#include "omniplacement/io/load_file.h"
#include "omniplacement/io/npy.h"
#include "omniplacement/io/pattern.h"
#include "omniplacement/io/placement_file.h"
#include "omniplacement/io/safetensors.h"
#include "omniplacement/io/trace.h"

namespace {

std::atomic<int64_t> g_live{0};
std::atomic<int64_t> g_peak{0};

void* counted(void* p) {
  if (!p) throw std::bad_alloc();
  const int64_t now = g_live.fetch_add(static_cast<int64_t>(malloc_usable_size(p))) +
                      static_cast<int64_t>(malloc_usable_size(p));
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void uncounted(void* p) {
  if (!p) return;
  g_live.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)));
  std::free(p);
}

}  // namespace

void* operator new(size_t n) { return counted(std::malloc(n ? n : 1)); }
void* operator new[](size_t n) { return counted(std::malloc(n ? n : 1)); }
void* operator new(size_t n, std::align_val_t a) {
  const size_t al = static_cast<size_t>(a);
  return counted(std::aligned_alloc(al, (n + al - 1) / al * al));
}
void* operator new[](size_t n, std::align_val_t a) { return operator new(n, a); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  void* p = std::malloc(n ? n : 1);
  return p ? counted(p) : nullptr;
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  const size_t al = static_cast<size_t>(a);
  void* p = std::aligned_alloc(al, (n + al - 1) / al * al);
  return p ? counted(p) : nullptr;
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t& t) noexcept { return operator new(n, a, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { uncounted(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { uncounted(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { uncounted(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { uncounted(p); }
void operator delete(void* p) noexcept { uncounted(p); }
void operator delete[](void* p) noexcept { uncounted(p); }
void operator delete(void* p, size_t) noexcept { uncounted(p); }
void operator delete[](void* p, size_t) noexcept { uncounted(p); }
void operator delete(void* p, std::align_val_t) noexcept { uncounted(p); }
void operator delete[](void* p, std::align_val_t) noexcept { uncounted(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { uncounted(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { uncounted(p); }

namespace omni {
namespace {

// The bound every reader meets (also stated in docs/formats.md). A LoadMatrix
// of counts keeps each count as int64 and as double (16 bytes), which is
// already 8x a file of one-digit counts ("0,"): the readers of such files may
// add little beyond their result.
constexpr double kMemoryFactor = 10.0;
constexpr int64_t kMemorySlack = int64_t{4} << 20;

// Peak live heap bytes while `read` runs (its result included until it returns).
int64_t peak_of(const std::function<void()>& read) {
  const int64_t base = g_live.load();
  g_peak.store(base);
  read();
  return g_peak.load() - base;
}

int64_t file_size(const std::string& path) { return static_cast<int64_t>(std::filesystem::file_size(path)); }

void expect_bounded(const std::string& what, const std::string& path, int64_t peak,
                    int64_t min_size = int64_t{1} << 20) {
  const int64_t size = file_size(path);
  const double bound = kMemoryFactor * static_cast<double>(size) + static_cast<double>(kMemorySlack);
  std::printf("  %-44s file %9lld B  peak heap %10lld B  = %5.2f x file\n", what.c_str(),
              static_cast<long long>(size), static_cast<long long>(peak),
              static_cast<double>(peak) / static_cast<double>(size));
  EXPECT_GE(size, min_size) << what << ": the test file should be a few MB";
  EXPECT_LE(static_cast<double>(peak), bound) << what << ": peak " << peak << " B for a file of " << size << " B";
}

std::string digits_row(size_t n, char sep, std::mt19937_64* rng, int max_value) {
  std::string s;
  s.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    if (i) s.push_back(sep);
    s += std::to_string(max_value ? static_cast<int>((*rng)() % static_cast<uint64_t>(max_value + 1)) : 0);
  }
  return s;
}

class MemoryBound : public ::testing::Test {
 protected:
  testing::ScratchDir dir_;
  std::mt19937_64 rng_{3};
};

TEST_F(MemoryBound, TraceCsv) {
  // Densest: 256 experts of one digit, 20 windows x 300 layers.
  {
    const std::string path = dir_.file("dense.csv");
    std::string text = ",dataset,iteration,layer_idx";
    for (int e = 0; e < 256; ++e) text += str_cat(",", e);
    text += "\n";
    int64_t row = 0;
    for (int it = 0; it < 20; ++it)
      for (int l = 0; l < 300; ++l) text += str_cat(row++, ",d,", it, ",", l, ",", digits_row(256, ',', &rng_, 0), "\n");
    testing::spit(path, text);
    int64_t windows = 0;
    const int64_t peak = peak_of([&] {
      auto t = Trace::read_csv(path);
      ASSERT_TRUE(t.ok()) << t.status();
      windows = static_cast<int64_t>(t->windows().size());
    });
    EXPECT_EQ(windows, 20);
    expect_bounded("trace CSV, one-digit counts", path, peak);
  }
  // Realistic: counts of up to 5 digits, 60 experts (the Qwen trace's shape).
  {
    const std::string path = dir_.file("real.csv");
    std::string text = ",dataset,iteration,layer_idx";
    for (int e = 0; e < 60; ++e) text += str_cat(",", e);
    text += "\n";
    int64_t row = 0;
    for (int it = 0; it < 200; ++it)
      for (int l = 0; l < 24; ++l) text += str_cat(row++, ",d,", it, ",", l, ",", digits_row(60, ',', &rng_, 99999), "\n");
    testing::spit(path, text);
    const int64_t peak = peak_of([&] { ASSERT_TRUE(Trace::read_csv(path).ok()); });
    expect_bounded("trace CSV, five-digit counts", path, peak);
  }
}

TEST_F(MemoryBound, LoadCsvAndNpy) {
  const std::string csv = dir_.file("load.csv");
  std::string text;
  for (int l = 0; l < 2000; ++l) text += digits_row(1000, ',', &rng_, 0) + "\n";
  testing::spit(csv, text);
  int64_t peak = peak_of([&] { ASSERT_TRUE(read_load_file(csv).ok()); });
  expect_bounded("load CSV, one-digit counts", csv, peak);

  const std::string npy = dir_.file("load.npy");
  auto m = LoadMatrix::zeros(1000, 256);
  ASSERT_TRUE(write_load_file(npy, *m).ok());
  peak = peak_of([&] { ASSERT_TRUE(read_load_file(npy).ok()); });
  expect_bounded("load .npy, int64", npy, peak);
}

TEST_F(MemoryBound, ActivationDump) {
  // 500 layers of 4096 one-digit slot counts, read under a matching placement.
  const std::string path = dir_.file("dump.txt");
  std::string text;
  for (int l = 0; l < 500; ++l) text += digits_row(4096, '\t', &rng_, 0) + "\n";
  testing::spit(path, text);
  auto placement = Placement::contiguous(500, 64, 256, 64);
  ASSERT_TRUE(placement.ok()) << placement.status();
  const int64_t peak = peak_of([&] {
    auto load = read_activation_dump(path, *placement);
    ASSERT_TRUE(load.ok()) << load.status();
  });
  expect_bounded("activation dump, one-digit counts", path, peak);
}

TEST_F(MemoryBound, PlacementJson) {
  // Densest: one expert in every slot, "[0,0,...]" (a valid placement).
  {
    const std::string path = dir_.file("dense.json");
    const int L = 100, R = 64, S = 200;
    std::string text = str_cat(R"({"format":"omniplacement.placement","version":1,"num_ranks":)", R,
                               R"(,"num_experts":1,"slots_per_rank":[)");
    for (int l = 0; l < L; ++l) text += str_cat(l ? "," : "", S);
    text += R"(],"phy2log":[)";
    for (int l = 0; l < L; ++l) text += str_cat(l ? ",[" : "[", digits_row(static_cast<size_t>(R) * S, ',', &rng_, 0), "]");
    text += "]}";
    testing::spit(path, text);
    const int64_t peak = peak_of([&] {
      auto f = read_placement_file(path);
      ASSERT_TRUE(f.ok()) << f.status();
    });
    expect_bounded("placement JSON, one-digit phy2log", path, peak);
  }
  // As written by encode_placement_json with log2phy and logcnt (DeepSeek-V3 shape, EP64).
  {
    const std::string path = dir_.file("ds.json");
    auto p = Placement::contiguous(58, 256, 2048, 16);
    ASSERT_TRUE(p.ok()) << p.status();
    PlacementFile f;
    f.placement = *p;
    PlacementJsonOptions opt;
    opt.expert_maps = true;
    auto text = encode_placement_json(f, opt);
    ASSERT_TRUE(text.ok());
    testing::spit(path, *text);
    const int64_t peak = peak_of([&] { ASSERT_TRUE(read_placement_file(path).ok()); });
    expect_bounded("placement JSON with log2phy and logcnt", path, peak);
  }
}

TEST_F(MemoryBound, Patterns) {
  auto p = Placement::contiguous(58, 64, 256, 5);
  ASSERT_TRUE(p.ok());
  for (const char* name : {"pattern.txt", "pattern.bin", "pattern.npy"}) {
    const std::string path = dir_.file(name);
    ASSERT_TRUE(write_pattern(path, *p).ok());
    const int64_t peak = peak_of([&] { ASSERT_TRUE(read_placement_file(path).ok()); });
    expect_bounded(str_cat("pattern ", name), path, peak);
  }
}

TEST_F(MemoryBound, YamlConfig) {
  // A configuration at the 1 MiB cap: comment lines around a long string value.
  const std::string path = dir_.file("config.yaml");
  std::string text;
  while (text.size() < (size_t{1} << 18)) text += "# a comment line of a configuration file\n";
  text += "planner: \"" + std::string(size_t{1} << 19, 'a') + "\"\n";
  while (text.size() < (size_t{1} << 20) - 16) text += "# more\n";
  testing::spit(path, text);
  const int64_t peak = peak_of([&] {
    auto c = read_config(path);
    ASSERT_TRUE(c.ok()) << c.status();
  });
  expect_bounded("YAML config at the 1 MiB cap", path, peak, int64_t{1} << 19);
}

TEST_F(MemoryBound, SafetensorsHeader) {
  // 20000 small tensors: the header is a few MB of JSON; the data area is tiny.
  std::vector<std::byte> one(4);
  std::vector<SafetensorsEntry> entries;
  std::vector<std::string> names;
  for (int i = 0; i < 20000; ++i) names.push_back(str_cat("model.layers.", i / 100, ".mlp.experts.", i % 100, ".w"));
  for (const auto& n : names) entries.push_back({n, "F32", {1, 1, 1, 1}, one});
  const std::string path = dir_.file("many.safetensors");
  ASSERT_TRUE(write_safetensors(path, entries).ok());
  const int64_t peak = peak_of([&] {
    auto f = SafetensorsFile::open(path);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->tensors().size(), 20000u);
  });
  expect_bounded("safetensors header, 20000 tensors", path, peak);
}

}  // namespace
}  // namespace omni
