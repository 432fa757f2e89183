#include "omniplacement/io/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

// Headers larger than this are refused: real checkpoints have headers of a few
// hundred kilobytes; the cap keeps a corrupt length from allocating gigabytes.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

uint64_t read_le64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

Status parse_header(const std::string& where, std::string_view json_text, uint64_t data_size,
                    std::vector<SafetensorsTensor>* tensors, std::map<std::string, std::string>* metadata) {
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return data_loss_error(str_cat(where, ": the header is not a JSON object"));
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return data_loss_error(str_cat(where, ": __metadata__ must be an object of strings"));
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          return data_loss_error(str_cat(where, ": __metadata__ value of '", m.key(), "' is not a string"));
        }
        (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2) {
      return data_loss_error(str_cat(where, ": tensor '", name,
                                     "' needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" ([begin, end])"));
    }
    SafetensorsTensor t;
    t.name = name;
    t.dtype = v["dtype"].get<std::string>();
    const size_t elem = safetensors_dtype_size(t.dtype);
    if (elem == 0) {
      return data_loss_error(str_cat(where, ": tensor '", name, "' has unknown dtype '", t.dtype,
                                     "'; known: F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U64 U32 U16 U8 BOOL"));
    }
    uint64_t count = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        return data_loss_error(str_cat(where, ": tensor '", name, "' has a shape entry that is not an integer >= 0"));
      }
      const auto dim = d.get<int64_t>();
      if (__builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count)) {
        return data_loss_error(str_cat(where, ": tensor '", name, "' has a shape whose size overflows"));
      }
      t.shape.push_back(dim);
    }
    for (int k = 0; k < 2; ++k) {
      if (!v["data_offsets"][k].is_number_unsigned()) {
        return data_loss_error(str_cat(where, ": tensor '", name, "' has data_offsets that are not integers >= 0"));
      }
    }
    t.begin = v["data_offsets"][0].get<uint64_t>();
    t.end = v["data_offsets"][1].get<uint64_t>();
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(elem), &bytes)) {
      return data_loss_error(str_cat(where, ": tensor '", name, "' is too large"));
    }
    if (t.end < t.begin || t.end - t.begin != bytes) {
      return data_loss_error(str_cat(where, ": tensor '", name, "' has data_offsets [", t.begin, ", ", t.end,
                                     "] but its shape and dtype need ", bytes, " bytes"));
    }
    if (t.end > data_size) {
      return data_loss_error(str_cat(where, ": tensor '", name, "' ends at byte ", t.end,
                                     " of the data area, which has only ", data_size, " bytes (truncated file?)"));
    }
    tensors->push_back(std::move(t));
  }
  std::sort(tensors->begin(), tensors->end(), [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < tensors->size(); ++i) {
    const auto& a = (*tensors)[i - 1];
    const auto& b = (*tensors)[i];
    if (b.begin < a.end) {
      return data_loss_error(str_cat(where, ": tensors '", a.name, "' and '", b.name, "' overlap in the data area"));
    }
  }
  return ok_status();
}

}  // namespace

size_t safetensors_dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "F8_E4M3" || d == "F8_E5M2" || d == "I8" || d == "U8" || d == "BOOL") return 1;
  return 0;
}

StatusOr<SafetensorsFile> SafetensorsFile::parse(std::span<const std::byte> bytes) {
  if (bytes.size() < 8) {
    return data_loss_error(str_cat("safetensors: ", bytes.size(), " bytes is too short for the 8-byte header length"));
  }
  const uint64_t n = read_le64(bytes.data());
  if (n > kMaxHeaderBytes || n > bytes.size() - 8) {
    return data_loss_error(str_cat("safetensors: header length ", n, " exceeds the file (", bytes.size(),
                                   " bytes) or the ", kMaxHeaderBytes, "-byte limit"));
  }
  SafetensorsFile f;
  f.data_offset_ = 8 + n;
  f.file_size_ = bytes.size();
  std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), static_cast<size_t>(n));
  OMNI_RETURN_IF_ERROR(parse_header("safetensors", text, bytes.size() - f.data_offset_, &f.tensors_, &f.metadata_));
  return f;
}

StatusOr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found_error(str_cat(path, ": cannot open for reading"));
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) return not_found_error(str_cat(path, ": cannot stat: ", ec.message()));
  std::byte len[8];
  if (size < 8 || !in.read(reinterpret_cast<char*>(len), 8)) {
    return data_loss_error(str_cat(path, ": ", size, " bytes is too short for the 8-byte header length"));
  }
  const uint64_t n = read_le64(len);
  if (n > kMaxHeaderBytes || n > size - 8) {
    return data_loss_error(str_cat(path, ": header length ", n, " exceeds the file (", size, " bytes) or the ",
                                   kMaxHeaderBytes, "-byte limit"));
  }
  std::string text(static_cast<size_t>(n), '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(n))) return data_loss_error(str_cat(path, ": truncated header"));
  SafetensorsFile f;
  f.path_ = path;
  f.data_offset_ = 8 + n;
  f.file_size_ = size;
  OMNI_RETURN_IF_ERROR(parse_header(path, text, size - f.data_offset_, &f.tensors_, &f.metadata_));
  return f;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

Status SafetensorsFile::read(const SafetensorsTensor& t, std::span<std::byte> out) const {
  if (out.size() != t.num_bytes()) {
    return invalid_argument_error(str_cat(path_, ": tensor '", t.name, "' has ", t.num_bytes(),
                                          " bytes; the destination has ", out.size()));
  }
  if (path_.empty()) return failed_precondition_error("safetensors: read() needs a file opened with open()");
  if (data_offset_ + t.end > file_size_) {
    return data_loss_error(str_cat(path_, ": tensor '", t.name, "' lies beyond the end of the file"));
  }
  std::ifstream in(path_, std::ios::binary);
  if (!in) return not_found_error(str_cat(path_, ": cannot open for reading"));
  in.seekg(static_cast<std::streamoff>(data_offset_ + t.begin));
  if (!in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()))) {
    return data_loss_error(str_cat(path_, ": short read of tensor '", t.name, "' (file changed since open?)"));
  }
  return ok_status();
}

Status SafetensorsFile::read_from(std::span<const std::byte> bytes, const SafetensorsTensor& t,
                                  std::span<std::byte> out) const {
  if (out.size() != t.num_bytes()) {
    return invalid_argument_error(str_cat("safetensors: tensor '", t.name, "' has ", t.num_bytes(),
                                          " bytes; the destination has ", out.size()));
  }
  if (bytes.size() != file_size_ || data_offset_ + t.end > bytes.size()) {
    return invalid_argument_error("safetensors: read_from() needs the same bytes that were given to parse()");
  }
  if (!out.empty()) std::memcpy(out.data(), bytes.data() + data_offset_ + t.begin, out.size());
  return ok_status();
}

Status write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const size_t elem = safetensors_dtype_size(t.dtype);
    if (t.name.empty() || t.name == "__metadata__" || header.contains(t.name)) {
      return invalid_argument_error(str_cat(path, ": tensor names must be non-empty and distinct, got '", t.name, "'"));
    }
    if (elem == 0) return invalid_argument_error(str_cat(path, ": tensor '", t.name, "' has unknown dtype '", t.dtype, "'"));
    uint64_t count = 1;
    for (int64_t d : t.shape) {
      if (d < 0) return invalid_argument_error(str_cat(path, ": tensor '", t.name, "' has a negative dimension"));
      count *= static_cast<uint64_t>(d);
    }
    if (count * elem != t.data.size()) {
      return invalid_argument_error(str_cat(path, ": tensor '", t.name, "' shape and dtype need ", count * elem,
                                            " bytes, data has ", t.data.size()));
    }
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  while (text.size() % 8) text.push_back(' ');  // keeps the data area 8-byte aligned
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return not_found_error(str_cat(tmp, ": cannot open for writing"));
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((text.size() >> (8 * i)) & 0xff);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& t : tensors) out.write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(t.data.size()));
    if (!out.flush()) return internal_error(str_cat(tmp, ": write failed"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return internal_error(str_cat("renaming ", tmp, " to ", path, ": ", ec.message()));
  return ok_status();
}

}  // namespace omni
