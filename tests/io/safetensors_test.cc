#include "omniplacement/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <unistd.h>

namespace omni {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("omni_st_" + std::to_string(::getpid()) + "_" + name)).string();
}

std::vector<std::byte> to_bytes(const std::string& s) {
  std::vector<std::byte> b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// A file assembled by hand (not by our writer): header length, JSON, data.
std::vector<std::byte> hand_made(const std::string& json, size_t data_bytes) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  s += json;
  for (size_t i = 0; i < data_bytes; ++i) s.push_back(static_cast<char>(i));
  return to_bytes(s);
}

TEST(SafetensorsTest, ParsesAHandMadeFile) {
  auto bytes = hand_made(
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
      12);
  auto f = SafetensorsFile::parse(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->tensors()[0].name, "a");  // sorted by offset
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const SafetensorsTensor* b = f->find("b");
  ASSERT_NE(b, nullptr);
  std::vector<std::byte> out(4);
  ASSERT_TRUE(f->read_from(bytes, *b, out).ok());
  EXPECT_EQ(static_cast<int>(out[0]), 8);
  EXPECT_EQ(static_cast<int>(out[3]), 11);
  EXPECT_EQ(f->find("c"), nullptr);
}

TEST(SafetensorsTest, WriteThenReadRoundTrip) {
  std::vector<float> w1(6 * 4);
  for (size_t i = 0; i < w1.size(); ++i) w1[i] = 0.5f * static_cast<float>(i);
  std::vector<int64_t> ids = {7, -3};
  const std::string path = temp_path("roundtrip.safetensors");
  Status s = write_safetensors(
      path,
      {{"layers.0.experts.3.w1", "F32", {6, 4}, std::as_bytes(std::span<const float>(w1))},
       {"ids", "I64", {2}, std::as_bytes(std::span<const int64_t>(ids))}},
      {{"model", "toy"}});
  ASSERT_TRUE(s.ok()) << s;
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->data_offset() % 8, 0u);
  const SafetensorsTensor* t = f->find("layers.0.experts.3.w1");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{6, 4}));
  std::vector<float> back(24);
  ASSERT_TRUE(f->read(*t, std::as_writable_bytes(std::span<float>(back))).ok());
  EXPECT_EQ(back, w1);
  std::vector<std::byte> wrong(3);
  EXPECT_EQ(f->read(*t, wrong).code(), StatusCode::kInvalidArgument);
  std::filesystem::remove(path);
}

struct BadHeader {
  const char* name;
  std::string json;
  size_t data_bytes;
  const char* message_part;
};

class SafetensorsRejects : public ::testing::TestWithParam<BadHeader> {};

TEST_P(SafetensorsRejects, WithMessage) {
  auto f = SafetensorsFile::parse(hand_made(GetParam().json, GetParam().data_bytes));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(f.status().message().find(GetParam().message_part), std::string::npos) << f.status();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsRejects,
    ::testing::Values(
        BadHeader{"NotJson", "{oops", 0, "not valid JSON (byte 2)"},
        BadHeader{"UnknownDtype", R"({"a":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}})", 1, "unknown dtype 'F7'"},
        BadHeader{"SizeMismatch", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "need 12 bytes"},
        BadHeader{"BeyondData", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4, "truncated file"},
        BadHeader{"Overlap",
                  R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                  4, "overlap"},
        BadHeader{"NegativeDim", R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})", 0, "\"shape\" must hold integers >= 0"},
        BadHeader{"HugeShape",
                  R"({"a":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8, "overflow"},
        BadHeader{"MissingFields", R"({"a":{"dtype":"U8"}})", 0, "needs \"dtype\""},
        BadHeader{"MetadataNotString", R"({"__metadata__":{"k":1}})", 0, "must be a string, got a number"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(SafetensorsTest, RejectsBadLengthsAndFiles) {
  std::vector<std::byte> tiny(5);
  EXPECT_EQ(SafetensorsFile::parse(tiny).status().code(), StatusCode::kDataLoss);
  auto bytes = hand_made("{}", 0);
  bytes[0] = std::byte{0xff};  // header length 255 > file
  auto f = SafetensorsFile::parse(bytes);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("exceeds the file"), std::string::npos);
  EXPECT_EQ(SafetensorsFile::open("/nonexistent/x.safetensors").status().code(), StatusCode::kNotFound);
  // A file truncated after writing.
  std::vector<float> w(16, 1.0f);
  const std::string path = temp_path("trunc.safetensors");
  ASSERT_TRUE(write_safetensors(path, {{"w", "F32", {16}, std::as_bytes(std::span<const float>(w))}}).ok());
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
  auto t = SafetensorsFile::open(path);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("truncated"), std::string::npos) << t.status();
  std::filesystem::remove(path);
  // Writer checks.
  EXPECT_FALSE(write_safetensors(path, {{"w", "F32", {3}, std::as_bytes(std::span<const float>(w))}}).ok());
  EXPECT_FALSE(write_safetensors(path, {{"", "F32", {16}, std::as_bytes(std::span<const float>(w))}}).ok());
}

}  // namespace
}  // namespace omni
