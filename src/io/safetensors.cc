#include "omniplacement/io/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "file_util.h"
#include "json_reader.h"
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

// Most dimensions a tensor may have (numpy allows 64; real checkpoints use 1-5).
constexpr size_t kMaxTensorDims = 64;

// SAX handler (nlohmann's interface) that reads the header straight into
// tensor entries: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
// "__metadata__": {"key": "value"}}. No tree is built; nesting beyond what the
// format has, duplicate keys and wrong types are refused with the tensor named.
class HeaderReader {
 public:
  HeaderReader(const std::string& where, std::vector<SafetensorsTensor>* tensors,
               std::map<std::string, std::string>* metadata)
      : where_(where), tensors_(tensors), metadata_(metadata) {}

  const Status& error() const { return error_; }

  bool null() { return scalar("null"); }
  bool boolean(bool) { return scalar("a boolean"); }
  bool number_integer(int64_t v) {
    if (v < 0) return scalar("a negative number");
    return number(static_cast<uint64_t>(v));
  }
  bool number_unsigned(uint64_t v) { return number(v); }
  bool number_float(double, const std::string&) { return scalar("a number that is not an integer"); }
  bool binary(nlohmann::json::binary_t&) { return fail("binary value"); }
  bool string(std::string& v) {
    if (skip_ > 0) return true;
    if (depth_ == 2 && in_metadata_) {
      if (!metadata_->emplace(key_, std::move(v)).second) return fail(str_cat("__metadata__ key '", key_, "' appears twice"));
      return true;
    }
    if (depth_ == 2 && !in_metadata_ && field_ == Field::kDtype) {
      tensors_->back().dtype = std::move(v);
      return true;
    }
    return scalar("a string");
  }
  bool start_object(size_t) {
    if (skip_ > 0) return enter_skip();
    if (depth_ == 0) {
      depth_ = 1;
      return true;
    }
    if (depth_ == 1) {
      depth_ = 2;
      field_ = Field::kOther;
      return true;
    }
    if (depth_ == 2 && !in_metadata_ && field_ == Field::kOther) return enter_skip();
    return scalar("an object");
  }
  bool key(std::string& k) {
    if (skip_ > 0) return true;
    if (depth_ == 1) {
      in_metadata_ = k == "__metadata__";
      if (in_metadata_) {
        if (seen_metadata_) return fail("__metadata__ appears twice");
        seen_metadata_ = true;
      } else {
        SafetensorsTensor t;
        t.name = std::move(k);
        tensors_->push_back(std::move(t));
        seen_ = 0;
      }
      return true;
    }
    // depth 2
    key_ = std::move(k);
    if (in_metadata_) return true;
    field_ = key_ == "dtype" ? Field::kDtype : key_ == "shape" ? Field::kShape : key_ == "data_offsets" ? Field::kOffsets : Field::kOther;
    if (field_ != Field::kOther) {
      const unsigned bit = 1u << static_cast<unsigned>(field_);
      if (seen_ & bit) return fail(str_cat("tensor '", tensors_->back().name, "' has \"", key_, "\" twice"));
      seen_ |= bit;
    }
    return true;
  }
  bool end_object() {
    if (skip_ > 0) return leave_skip();
    if (depth_ == 2 && !in_metadata_ && seen_ != 7u) {
      return fail(str_cat("tensor '", tensors_->back().name,
                          "' needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" ([begin, end])"));
    }
    --depth_;
    return true;
  }
  bool start_array(size_t) {
    if (skip_ > 0) return enter_skip();
    if (depth_ == 2 && !in_metadata_ && (field_ == Field::kShape || field_ == Field::kOffsets)) {
      depth_ = 3;
      return true;
    }
    if (depth_ == 2 && !in_metadata_ && field_ == Field::kOther) return enter_skip();
    return scalar("an array");
  }
  bool end_array() {
    if (skip_ > 0) return leave_skip();
    --depth_;
    if (field_ == Field::kOffsets && offsets_ != 2) {
      return fail(str_cat("tensor '", tensors_->back().name, "' has data_offsets of ", offsets_,
                          " numbers; it needs [begin, end]"));
    }
    offsets_ = 0;
    return true;
  }
  bool parse_error(size_t position, const std::string&, const nlohmann::json::exception& e) {
    error_ = data_loss_error(
        str_cat(where_, ": the header is not valid JSON (byte ", position, "): ", io_internal::printable(e.what())));
    return false;
  }

 private:
  enum class Field { kDtype = 0, kShape = 1, kOffsets = 2, kOther = 3 };

  bool fail(const std::string& what) {
    error_ = data_loss_error(str_cat(where_, ": ", what));
    return false;
  }
  // A value of the wrong type where the format has something else.
  bool scalar(const char* what) {
    if (skip_ > 0) return true;
    if (depth_ == 2 && !in_metadata_ && field_ == Field::kOther) return true;  // an unknown key: ignored
    if (depth_ == 0) return fail(str_cat("the header must be a JSON object, got ", what));
    if (depth_ == 1 && in_metadata_) return fail(str_cat("__metadata__ must be an object of strings, got ", what));
    if (depth_ == 1) return fail(str_cat("tensor '", tensors_->back().name, "' must be an object, got ", what));
    if (in_metadata_) return fail(str_cat("__metadata__ value of '", key_, "' must be a string, got ", what));
    if (depth_ == 2 && field_ == Field::kDtype) {
      return fail(str_cat("tensor '", tensors_->back().name, "': \"dtype\" must be a string, got ", what));
    }
    if (depth_ == 2) {
      return fail(str_cat("tensor '", tensors_->back().name, "': \"", key_, "\" must be an array of integers >= 0, got ",
                          what));
    }
    return fail(str_cat("tensor '", tensors_->back().name, "': \"", key_, "\" must hold integers >= 0, got ", what));
  }
  bool number(uint64_t v) {
    if (skip_ > 0 || (depth_ == 2 && !in_metadata_ && field_ == Field::kOther)) return true;
    if (depth_ != 3) return scalar("a number");
    SafetensorsTensor& t = tensors_->back();
    if (field_ == Field::kShape) {
      if (t.shape.size() >= kMaxTensorDims) {
        return fail(str_cat("tensor '", t.name, "' has more than ", kMaxTensorDims, " dimensions"));
      }
      if (v > static_cast<uint64_t>(INT64_MAX)) return fail(str_cat("tensor '", t.name, "' has a dimension of ", v));
      t.shape.push_back(static_cast<int64_t>(v));
      return true;
    }
    if (offsets_ >= 2) return fail(str_cat("tensor '", t.name, "' has more than two data_offsets"));
    (offsets_++ == 0 ? t.begin : t.end) = v;
    return true;
  }
  bool enter_skip() {
    if (depth_ + ++skip_ > io_internal::kMaxJsonDepth) {
      return fail(str_cat("the header nests deeper than ", io_internal::kMaxJsonDepth, " levels"));
    }
    return true;
  }
  bool leave_skip() {
    --skip_;
    return true;
  }

  const std::string& where_;
  std::vector<SafetensorsTensor>* tensors_;
  std::map<std::string, std::string>* metadata_;
  Status error_;
  int depth_ = 0;    // 1: in the top object, 2: in a tensor entry or __metadata__, 3: in shape or data_offsets
  int skip_ = 0;     // nesting inside a skipped value (an unknown key of a tensor entry)
  bool in_metadata_ = false;
  bool seen_metadata_ = false;
  unsigned seen_ = 0;  // fields of the current tensor entry given so far (bits of Field)
  int offsets_ = 0;
  Field field_ = Field::kOther;
  std::string key_;
};

Status parse_header(const std::string& where, std::string_view json_text, uint64_t data_size,
                    std::vector<SafetensorsTensor>* tensors, std::map<std::string, std::string>* metadata) {
  HeaderReader reader(where, tensors, metadata);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(json_text.begin(), json_text.end(), &reader);
  } catch (const std::exception& e) {
    return data_loss_error(str_cat(where, ": the header is not valid JSON: ", e.what()));
  }
  if (!ok) return reader.error().ok() ? data_loss_error(str_cat(where, ": the header is not valid JSON")) : reader.error();
  for (SafetensorsTensor& t : *tensors) {
    const std::string& name = t.name;
    const size_t elem = safetensors_dtype_size(t.dtype);
    if (elem == 0) {
      return data_loss_error(str_cat(where, ": tensor '", name, "' has unknown dtype '", t.dtype,
                                     "'; known: F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U64 U32 U16 U8 BOOL"));
    }
    uint64_t count = 1;
    for (int64_t dim : t.shape) {
      if (__builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count)) {
        return data_loss_error(str_cat(where, ": tensor '", name, "' has a shape whose size overflows"));
      }
    }
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
  }
  // Names are unique.
  std::vector<const SafetensorsTensor*> by_name(tensors->size());
  for (size_t i = 0; i < tensors->size(); ++i) by_name[i] = &(*tensors)[i];
  std::sort(by_name.begin(), by_name.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  for (size_t i = 1; i < by_name.size(); ++i) {
    if (by_name[i]->name == by_name[i - 1]->name) {
      return data_loss_error(str_cat(where, ": tensor '", by_name[i]->name, "' appears twice in the header"));
    }
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
  // A checkpoint may be far larger than the io module's whole-file limit: only
  // its header is read here, so the file is opened without that limit.
  OMNI_ASSIGN_OR_RETURN(io_internal::InputFile in, io_internal::InputFile::open(path, /*max_bytes=*/INT64_MAX));
  const auto size = static_cast<uint64_t>(in.size());
  char len[8];
  OMNI_ASSIGN_OR_RETURN(size_t got, in.read_at(0, len, 8));
  if (size < 8 || got != 8) {
    return data_loss_error(str_cat(path, ": ", size, " bytes is too short for the 8-byte header length"));
  }
  const uint64_t n = read_le64(reinterpret_cast<const std::byte*>(len));
  if (n > kMaxHeaderBytes || n > size - 8) {
    return data_loss_error(str_cat(path, ": header length ", n, " exceeds the file (", size, " bytes) or the ",
                                   kMaxHeaderBytes, "-byte limit"));
  }
  std::string text(static_cast<size_t>(n), '\0');
  OMNI_ASSIGN_OR_RETURN(got, in.read_at(8, text.data(), text.size()));
  if (got != text.size()) return data_loss_error(str_cat(path, ": truncated header"));
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
  OMNI_ASSIGN_OR_RETURN(io_internal::InputFile in, io_internal::InputFile::open(path_, /*max_bytes=*/INT64_MAX));
  OMNI_ASSIGN_OR_RETURN(size_t got, in.read_at(static_cast<int64_t>(data_offset_ + t.begin),
                                                reinterpret_cast<char*>(out.data()), out.size()));
  if (got != out.size()) {
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
