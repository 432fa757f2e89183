#include "file_util.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "omniplacement/core/str_cat.h"

namespace omni::io_internal {

StatusOr<std::string> read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return invalid_argument_error(str_cat(path, ": is a directory, not a file"));
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found_error(str_cat(path, ": cannot open for reading (", std::strerror(errno), ")"));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) return internal_error(str_cat(path, ": cannot determine the file size"));
  if (size > kMaxFileBytes) {
    return resource_exhausted_error(str_cat(path, ": file of ", size, " bytes exceeds the limit of ", kMaxFileBytes));
  }
  in.seekg(0, std::ios::beg);
  std::string data(static_cast<size_t>(size), '\0');
  if (size > 0 && !in.read(data.data(), size)) return data_loss_error(str_cat(path, ": short read"));
  return data;
}

Status write_file(const std::string& path, std::string_view contents) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return not_found_error(str_cat(path, ": cannot open for writing (", std::strerror(errno), ")"));
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return internal_error(str_cat(path, ": write failed"));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    return internal_error(str_cat(path, ": cannot rename the temporary file into place (", ec.message(), ")"));
  }
  return ok_status();
}

std::string extension_of(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (char& c : ext) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return ext;
}

bool parse_int64(std::string_view token, int64_t* out) {
  if (token.empty()) return false;
  const char* first = token.data();
  const char* last = token.data() + token.size();
  if (*first == '+') ++first;  // from_chars refuses a leading '+', which CSV writers emit
  if (first == last) return false;
  auto [ptr, ec] = std::from_chars(first, last, *out);
  return ec == std::errc() && ptr == last;
}

bool parse_double(std::string_view token, double* out) {
  if (token.empty()) return false;
  const char* first = token.data();
  const char* last = token.data() + token.size();
  if (*first == '+') ++first;
  if (first == last) return false;
  auto [ptr, ec] = std::from_chars(first, last, *out, std::chars_format::general);
  return ec == std::errc() && ptr == last && std::isfinite(*out);
}

std::string format_double(double v) {
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) return "nan";
  return std::string(buf, ptr);
}

std::string quote_token(std::string_view token) {
  std::string out = "'";
  for (char c : token.substr(0, 40)) out += (c >= 32 && c < 127) ? c : '?';
  if (token.size() > 40) out += "...";
  out += "'";
  return out;
}

}  // namespace omni::io_internal

namespace omni::io_internal {

std::vector<Line> split_lines(std::string_view text) {
  std::vector<Line> lines;
  int64_t number = 1;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back({number++, line});
    start = end + 1;
  }
  return lines;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_csv(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    const size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      fields.push_back(trim(line.substr(start)));
      break;
    }
    fields.push_back(trim(line.substr(start, comma - start)));
    start = comma + 1;
  }
  return fields;
}

bool LoadCells::add(std::string_view token) {
  int64_t i = 0;
  if (parse_int64(token, &i)) {
    ints_.push_back(i);
    values_.push_back(static_cast<double>(i));
    return true;
  }
  double d = 0;
  if (!parse_double(token, &d)) return false;
  all_integers_ = false;
  ints_.push_back(0);
  values_.push_back(d);
  return true;
}

void LoadCells::append_from(const LoadCells& other, size_t first, size_t n) {
  all_integers_ = all_integers_ && other.all_integers_;
  ints_.insert(ints_.end(), other.ints_.begin() + static_cast<std::ptrdiff_t>(first),
               other.ints_.begin() + static_cast<std::ptrdiff_t>(first + n));
  values_.insert(values_.end(), other.values_.begin() + static_cast<std::ptrdiff_t>(first),
                 other.values_.begin() + static_cast<std::ptrdiff_t>(first + n));
}

StatusOr<LoadMatrix> LoadCells::build(int32_t num_layers, int32_t num_experts) const {
  if (all_integers_) return LoadMatrix::from_counts(num_layers, num_experts, ints_);
  return LoadMatrix::from_weights(num_layers, num_experts, values_);
}

}  // namespace omni::io_internal
