#include "omniplacement/io/npy.h"

#include <gtest/gtest.h>

#include <random>

#include "io_test_util.h"

namespace omni {
namespace {

using testing::data_path;
using testing::slurp;

NpyArray make(NpyDtype dtype, std::vector<int64_t> shape, std::mt19937_64& rng) {
  NpyArray a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  const auto n = static_cast<size_t>(a.num_elements());
  if (a.is_integer()) {
    std::uniform_int_distribution<int64_t> d(dtype == NpyDtype::kInt32 ? INT32_MIN : INT64_MIN,
                                             dtype == NpyDtype::kInt32 ? INT32_MAX : INT64_MAX);
    for (size_t i = 0; i < n; ++i) a.ints.push_back(d(rng));
  } else {
    std::normal_distribution<double> d(0, 1e6);
    for (size_t i = 0; i < n; ++i) {
      double v = d(rng);
      if (dtype == NpyDtype::kFloat32) v = static_cast<float>(v);  // exactly representable
      a.floats.push_back(v);
    }
  }
  return a;
}

TEST(NpyTest, RoundTripsEveryDtypeVersionAndShape) {
  std::mt19937_64 rng(42);
  const std::vector<std::vector<int64_t>> shapes = {{}, {0}, {1}, {7}, {3, 4}, {2, 3, 5}, {0, 4}, {2, 1, 1, 3}};
  for (NpyDtype dt : {NpyDtype::kInt32, NpyDtype::kInt64, NpyDtype::kFloat32, NpyDtype::kFloat64}) {
    for (int version : {0, 1, 2, 3}) {
      for (const auto& shape : shapes) {
        const NpyArray a = make(dt, shape, rng);
        auto bytes = encode_npy(a, version);
        ASSERT_TRUE(bytes.ok()) << bytes.status();
        EXPECT_EQ(static_cast<int>((*bytes)[6]), version == 0 ? 1 : version);
        // Data starts on a 64-byte boundary, as numpy requires of its writers.
        const size_t data = bytes->size() - static_cast<size_t>(a.num_elements()) * static_cast<size_t>(npy_item_size(dt));
        EXPECT_EQ(data % 64, 0u) << a.describe();
        auto b = parse_npy(*bytes);
        ASSERT_TRUE(b.ok()) << b.status();
        EXPECT_EQ(*b, a) << a.describe() << " version " << version;
      }
    }
  }
}

TEST(NpyTest, ShippedPatternsReencodeByteForByte) {
  for (const char* f : {"patterns/DSV3_baseline_8_devices_58_MoE_Layers.npy",
                        "patterns/DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy"}) {
    const std::string bytes = slurp(data_path(f));
    auto a = parse_npy(bytes, f);
    ASSERT_TRUE(a.ok()) << a.status();
    auto again = encode_npy(*a);
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(*again == bytes) << f;
  }
  auto a = read_npy(data_path("patterns/DSV3_baseline_8_devices_58_MoE_Layers.npy"));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->describe(), "int64 [8, 58, 256]");
}

// Builds a version-1.0 file around a hand-written header dict and data bytes.
std::string with_header(const std::string& dict, size_t data_bytes, int version = 1) {
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(version));
  out.push_back('\0');
  std::string h = dict + "\n";
  out.push_back(static_cast<char>(h.size() & 0xff));
  out.push_back(static_cast<char>(h.size() >> 8));
  if (version > 1) out.append(2, '\0');
  return out + h + std::string(data_bytes, '\0');
}

struct RefusalCase {
  const char* name;
  std::string bytes;
  StatusCode code;
  const char* message_part;
};

TEST(NpyTest, RefusesUnsupportedAndMalformedFilesWithClearMessages) {
  const std::string ok_dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }";
  const std::vector<RefusalCase> cases = {
      {"fortran_order", with_header("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }", 24),
       StatusCode::kInvalidArgument, "Fortran-order"},
      {"big_endian", with_header("{'descr': '>i4', 'fortran_order': False, 'shape': (2, 3), }", 24),
       StatusCode::kInvalidArgument, "big-endian"},
      {"object_array", with_header("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16),
       StatusCode::kInvalidArgument, "object arrays"},
      {"uint8", with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", 2),
       StatusCode::kInvalidArgument, "unsupported .npy dtype '|u1'"},
      {"structured", with_header("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,), }", 8),
       StatusCode::kInvalidArgument, "structured"},
      {"truncated_data", with_header(ok_dict, 23), StatusCode::kDataLoss, "needs 24 bytes, the file has 23"},
      {"trailing_bytes", with_header(ok_dict, 25), StatusCode::kInvalidArgument, "1 unexpected bytes"},
      {"absurd_shape", with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000, 100000), }", 0),
       StatusCode::kResourceExhausted, "absurd .npy shape"},
      {"overflowing_shape",
       with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", 0),
       StatusCode::kResourceExhausted, "absurd"},
      {"too_many_digits", with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,), }", 0),
       StatusCode::kResourceExhausted, "digits"},
      {"too_many_dims", with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 8),
       StatusCode::kResourceExhausted, "more than 8 dimensions"},
      {"negative_dim", with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }", 0),
       StatusCode::kInvalidArgument, "non-negative"},
      {"missing_key", with_header("{'descr': '<f8', 'shape': (1,), }", 8), StatusCode::kInvalidArgument,
       "must have the keys"},
      {"extra_key", with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}", 8),
       StatusCode::kInvalidArgument, "unexpected header key 'x'"},
      {"bad_magic", std::string("NUMPY\x01\x00xxxx", 11), StatusCode::kInvalidArgument, "magic"},
      {"version_4", with_header(ok_dict, 24, 4), StatusCode::kInvalidArgument, "format version 4.0"},
      {"header_past_end", std::string("\x93NUMPY\x01\x00\xff\x00{", 11), StatusCode::kDataLoss, "truncated .npy header"},
      {"empty", std::string(), StatusCode::kInvalidArgument, "not a .npy file"},
  };
  for (const auto& c : cases) {
    auto r = parse_npy(c.bytes, "case.npy");
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), c.code) << c.name << ": " << r.status();
    EXPECT_NE(r.status().message().find(c.message_part), std::string::npos) << c.name << ": " << r.status();
    EXPECT_EQ(r.status().message().rfind("case.npy", 0), 0u) << c.name << ": the message names the file";
  }
}

TEST(NpyTest, EncoderRefusesValuesThatDoNotFitAndMismatchedSizes) {
  NpyArray a;
  a.dtype = NpyDtype::kInt32;
  a.shape = {2};
  a.ints = {1, int64_t{1} << 40};
  EXPECT_EQ(encode_npy(a).status().code(), StatusCode::kOutOfRange);
  a.ints = {1};
  EXPECT_EQ(encode_npy(a).status().code(), StatusCode::kInvalidArgument);
  NpyArray f;
  f.dtype = NpyDtype::kFloat32;
  f.shape = {1};
  f.floats = {1e300};
  EXPECT_EQ(encode_npy(f).status().code(), StatusCode::kOutOfRange);
  EXPECT_FALSE(encode_npy(f, 4).ok());
}

TEST(NpyTest, ReadMissingFileIsNotFound) {
  auto r = read_npy("/nonexistent/x.npy");
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

TEST(NpyTest, WriteThenReadFile) {
  testing::ScratchDir dir;
  NpyArray a;
  a.dtype = NpyDtype::kFloat64;
  a.shape = {2, 2};
  a.floats = {0.1, -2.5, 1e-300, 3};
  ASSERT_TRUE(write_npy(dir.file("a.npy"), a).ok());
  auto b = read_npy(dir.file("a.npy"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, a);
}

}  // namespace
}  // namespace omni
