#include "omniplacement/io/npy.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "file_util.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

const char* npy_descr(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kInt32: return "<i4";
    case NpyDtype::kInt64: return "<i8";
    case NpyDtype::kFloat32: return "<f4";
    case NpyDtype::kFloat64: return "<f8";
  }
  return "?";
}

int npy_item_size(NpyDtype dtype) {
  return dtype == NpyDtype::kInt32 || dtype == NpyDtype::kFloat32 ? 4 : 8;
}

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;
// numpy pads the header so that the first axis can grow in place to this many digits.
constexpr size_t kGrowthAxisMaxDigits = 21;

const char* dtype_name(NpyDtype d) {
  switch (d) {
    case NpyDtype::kInt32: return "int32";
    case NpyDtype::kInt64: return "int64";
    case NpyDtype::kFloat32: return "float32";
    case NpyDtype::kFloat64: return "float64";
  }
  return "?";
}

uint64_t read_le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void append_le(std::string* out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A minimal parser for the Python dict literal of a .npy header:
// {'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }
class HeaderParser {
 public:
  HeaderParser(std::string_view text, std::string_view name) : s_(text), name_(name) {}

  Status parse(std::string* descr, bool* fortran, std::vector<int64_t>* shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    skip_ws();
    if (!eat('{')) return error("header does not start with '{'");
    while (true) {
      skip_ws();
      if (eat('}')) break;
      std::string key;
      OMNI_RETURN_IF_ERROR(parse_string(&key));
      skip_ws();
      if (!eat(':')) return error(str_cat("expected ':' after key '", key, "'"));
      skip_ws();
      if (key == "descr") {
        if (pos_ < s_.size() && s_[pos_] != '\'' && s_[pos_] != '"') {
          return error("descr is not a plain string (structured or record dtypes are not supported)");
        }
        OMNI_RETURN_IF_ERROR(parse_string(descr));
        have_descr = true;
      } else if (key == "fortran_order") {
        if (consume_word("True")) {
          *fortran = true;
        } else if (consume_word("False")) {
          *fortran = false;
        } else {
          return error("fortran_order must be True or False");
        }
        have_fortran = true;
      } else if (key == "shape") {
        OMNI_RETURN_IF_ERROR(parse_shape(shape));
        have_shape = true;
      } else {
        return error(str_cat("unexpected header key '", key, "' (expected descr, fortran_order, shape)"));
      }
      skip_ws();
      if (eat(',')) continue;
      skip_ws();
      if (eat('}')) break;
      return error("expected ',' or '}' in the header dict");
    }
    skip_ws();
    if (pos_ != s_.size()) return error("unexpected text after the header dict");
    if (!have_descr || !have_fortran || !have_shape) {
      return error("header must have the keys descr, fortran_order and shape");
    }
    return ok_status();
  }

 private:
  Status error(const std::string& what) const {
    return invalid_argument_error(str_cat(name_, ": malformed .npy header at offset ", pos_, ": ", what));
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool consume_word(std::string_view w) {
    if (s_.substr(pos_, w.size()) == w) {
      pos_ += w.size();
      return true;
    }
    return false;
  }
  Status parse_string(std::string* out) {
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) return error("expected a quoted string");
    const char q = s_[pos_++];
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\') return error("escape sequences are not supported in header strings");
      ++pos_;
    }
    if (pos_ >= s_.size()) return error("unterminated string");
    *out = std::string(s_.substr(start, pos_ - start));
    ++pos_;
    return ok_status();
  }
  Status parse_shape(std::vector<int64_t>* shape) {
    shape->clear();
    if (!eat('(')) return error("shape must be a tuple");
    while (true) {
      skip_ws();
      if (eat(')')) break;
      const size_t start = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (start == pos_) return error("shape entries must be non-negative integers");
      if (pos_ - start > 18) {
        return resource_exhausted_error(str_cat(name_, ": absurd .npy shape: a dimension has ", pos_ - start, " digits"));
      }
      int64_t v = 0;
      if (!io_internal::parse_int64(s_.substr(start, pos_ - start), &v)) return error("bad shape entry");
      eat('L');  // Python 2 long suffix
      if (shape->size() >= static_cast<size_t>(kMaxNpyDims)) {
        return resource_exhausted_error(str_cat(name_, ": absurd .npy shape: more than ", kMaxNpyDims, " dimensions"));
      }
      shape->push_back(v);
      skip_ws();
      if (eat(',')) continue;
      skip_ws();
      if (eat(')')) break;
      return error("expected ',' or ')' in shape");
    }
    return ok_status();
  }

  std::string_view s_;
  std::string_view name_;
  size_t pos_ = 0;
};

Status dtype_from_descr(const std::string& descr, std::string_view name, NpyDtype* out) {
  if (descr == "<i4") { *out = NpyDtype::kInt32; return ok_status(); }
  if (descr == "<i8") { *out = NpyDtype::kInt64; return ok_status(); }
  if (descr == "<f4") { *out = NpyDtype::kFloat32; return ok_status(); }
  if (descr == "<f8") { *out = NpyDtype::kFloat64; return ok_status(); }
  std::string why;
  if (!descr.empty() && descr[0] == '>') {
    why = "big-endian data is not supported; convert with a.astype(a.dtype.newbyteorder('<'))";
  } else if (descr == "|O" || descr == "O") {
    why = "object arrays (pickled Python objects) are never loaded";
  } else {
    why = "convert with a.astype(np.int64) or a.astype(np.float64)";
  }
  return invalid_argument_error(str_cat(name, ": unsupported .npy dtype '", descr,
                                        "' (supported: '<i4', '<i8', '<f4', '<f8'): ", why));
}

std::string shape_repr(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  s += ")";
  return s;
}

// Product of dims, or -1 when it exceeds kMaxNpyElements.
int64_t checked_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d == 0) return 0;
  }
  for (int64_t d : shape) {
    if (d > kMaxNpyElements || n > kMaxNpyElements / d) return -1;
    n *= d;
  }
  return n;
}

}  // namespace

int64_t NpyArray::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string NpyArray::describe() const {
  std::string s = str_cat(dtype_name(dtype), " [");
  for (size_t i = 0; i < shape.size(); ++i) s += str_cat(i ? ", " : "", shape[i]);
  return s + "]";
}

StatusOr<NpyArray> parse_npy(std::string_view bytes, std::string_view name) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < kMagicLen + 2 || std::memcmp(bytes.data(), kMagic, kMagicLen) != 0) {
    return invalid_argument_error(str_cat(name, ": not a .npy file (missing the \\x93NUMPY magic)"));
  }
  const int major = p[6];
  const int minor = p[7];
  if (major < 1 || major > 3 || minor != 0) {
    return invalid_argument_error(
        str_cat(name, ": unsupported .npy format version ", major, ".", minor, " (supported: 1.0, 2.0, 3.0)"));
  }
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicLen + 2 + len_bytes;
  if (bytes.size() < prefix) return data_loss_error(str_cat(name, ": truncated .npy header"));
  const uint64_t header_len = read_le(p + 8, static_cast<int>(len_bytes));
  if (header_len > bytes.size() - prefix) {
    return data_loss_error(str_cat(name, ": truncated .npy header: it declares ", header_len, " bytes, the file has ",
                                   bytes.size() - prefix, " after the prefix"));
  }
  const std::string_view header = bytes.substr(prefix, static_cast<size_t>(header_len));
  if (major < 3) {
    for (char c : header) {
      if (static_cast<unsigned char>(c) >= 0x80) {
        return invalid_argument_error(str_cat(name, ": non-ASCII byte in a version ", major, ".0 .npy header"));
      }
    }
  }
  std::string descr;
  bool fortran = false;
  NpyArray out;
  OMNI_RETURN_IF_ERROR(HeaderParser(header, name).parse(&descr, &fortran, &out.shape));
  OMNI_RETURN_IF_ERROR(dtype_from_descr(descr, name, &out.dtype));
  if (fortran) {
    return invalid_argument_error(str_cat(name, ": Fortran-order (column-major) .npy arrays are not supported; save ",
                                          "np.ascontiguousarray(a) instead"));
  }
  const int64_t count = checked_count(out.shape);
  if (count < 0) {
    return resource_exhausted_error(str_cat(name, ": absurd .npy shape ", shape_repr(out.shape), ": more than ",
                                            kMaxNpyElements, " elements"));
  }
  const size_t item = static_cast<size_t>(npy_item_size(out.dtype));
  const size_t data_bytes = static_cast<size_t>(count) * item;
  const size_t have = bytes.size() - prefix - static_cast<size_t>(header_len);
  if (have < data_bytes) {
    return data_loss_error(str_cat(name, ": truncated .npy data: shape ", shape_repr(out.shape), " of ", descr,
                                   " needs ", data_bytes, " bytes, the file has ", have));
  }
  if (have > data_bytes) {
    return invalid_argument_error(str_cat(name, ": ", have - data_bytes, " unexpected bytes after the .npy data (shape ",
                                          shape_repr(out.shape), " of ", descr, " needs ", data_bytes, ")"));
  }
  const unsigned char* d = p + prefix + header_len;
  const size_t n = static_cast<size_t>(count);
  switch (out.dtype) {
    case NpyDtype::kInt32:
      out.ints.resize(n);
      for (size_t i = 0; i < n; ++i) {
        out.ints[i] = static_cast<int32_t>(static_cast<uint32_t>(read_le(d + 4 * i, 4)));
      }
      break;
    case NpyDtype::kInt64:
      out.ints.resize(n);
      for (size_t i = 0; i < n; ++i) out.ints[i] = static_cast<int64_t>(read_le(d + 8 * i, 8));
      break;
    case NpyDtype::kFloat32:
      out.floats.resize(n);
      for (size_t i = 0; i < n; ++i) {
        const auto bits = static_cast<uint32_t>(read_le(d + 4 * i, 4));
        float f;
        std::memcpy(&f, &bits, 4);
        out.floats[i] = f;
      }
      break;
    case NpyDtype::kFloat64:
      out.floats.resize(n);
      for (size_t i = 0; i < n; ++i) {
        const uint64_t bits = read_le(d + 8 * i, 8);
        std::memcpy(&out.floats[i], &bits, 8);
      }
      break;
  }
  return out;
}

StatusOr<NpyArray> read_npy(const std::string& path) {
  OMNI_ASSIGN_OR_RETURN(std::string bytes, io_internal::read_file(path));
  return parse_npy(bytes, path);
}

StatusOr<std::string> encode_npy(const NpyArray& a, int version) {
  if (version < 0 || version > 3) return invalid_argument_error(str_cat("npy version must be 0 (auto), 1, 2 or 3, got ", version));
  if (a.shape.size() > static_cast<size_t>(kMaxNpyDims)) {
    return invalid_argument_error(str_cat("npy: ", a.shape.size(), " dimensions exceed the limit of ", kMaxNpyDims));
  }
  const int64_t count = checked_count(a.shape);
  if (count < 0) return invalid_argument_error(str_cat("npy: bad shape ", shape_repr(a.shape)));
  const size_t n = static_cast<size_t>(count);
  const bool integer = a.is_integer();
  if ((integer ? a.ints.size() : a.floats.size()) != n || (integer ? !a.floats.empty() : !a.ints.empty())) {
    return invalid_argument_error(str_cat("npy: shape ", shape_repr(a.shape), " needs ", n, " ",
                                          integer ? "integer" : "float", " elements, the array holds ", a.ints.size(),
                                          " integers and ", a.floats.size(), " floats"));
  }
  std::string dict = str_cat("{'descr': '", npy_descr(a.dtype), "', 'fortran_order': False, 'shape': ",
                             shape_repr(a.shape), ", }");
  if (!a.shape.empty()) {
    const size_t digits = std::to_string(a.shape[0]).size();
    if (digits < kGrowthAxisMaxDigits) dict.append(kGrowthAxisMaxDigits - digits, ' ');
  }
  const size_t hlen = dict.size() + 1;  // + the final '\n'
  if (version == 0) version = (kMagicLen + 2 + 2 + hlen + kAlign) <= 65535 ? 1 : 2;
  const size_t len_bytes = version == 1 ? 2 : 4;
  const size_t pad = kAlign - ((kMagicLen + 2 + len_bytes + hlen) % kAlign);
  const size_t total_header = hlen + pad;
  if (version == 1 && total_header > 65535) {
    return invalid_argument_error(str_cat("npy: header of ", total_header, " bytes does not fit format 1.0"));
  }
  std::string out(kMagic, kMagicLen);
  out.push_back(static_cast<char>(version));
  out.push_back('\0');
  append_le(&out, total_header, static_cast<int>(len_bytes));
  out += dict;
  out.append(pad, ' ');
  out.push_back('\n');
  out.reserve(out.size() + n * static_cast<size_t>(npy_item_size(a.dtype)));
  for (size_t i = 0; i < n; ++i) {
    switch (a.dtype) {
      case NpyDtype::kInt32: {
        const int64_t v = a.ints[i];
        if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
          return out_of_range_error(str_cat("npy: element ", i, " = ", v, " does not fit int32"));
        }
        append_le(&out, static_cast<uint32_t>(static_cast<int32_t>(v)), 4);
        break;
      }
      case NpyDtype::kInt64: append_le(&out, static_cast<uint64_t>(a.ints[i]), 8); break;
      case NpyDtype::kFloat32: {
        const double v = a.floats[i];
        if (std::isfinite(v) && std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
          return out_of_range_error(str_cat("npy: element ", i, " = ", v, " does not fit float32"));
        }
        const auto f = static_cast<float>(v);
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        append_le(&out, bits, 4);
        break;
      }
      case NpyDtype::kFloat64: {
        uint64_t bits;
        std::memcpy(&bits, &a.floats[i], 8);
        append_le(&out, bits, 8);
        break;
      }
    }
  }
  return out;
}

Status write_npy(const std::string& path, const NpyArray& array, int version) {
  auto bytes = encode_npy(array, version);
  if (!bytes.ok()) return bytes.status().with_context(path);
  return io_internal::write_file(path, *bytes);
}

}  // namespace omni
