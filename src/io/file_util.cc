#include "file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>
#include <system_error>

#include "omniplacement/core/str_cat.h"

namespace omni::io_internal {

namespace {

const char* file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

}  // namespace

StatusOr<InputFile> InputFile::open(const std::string& path, int64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return not_found_error(str_cat(path, ": no such file"));
    return not_found_error(str_cat(path, ": cannot open for reading (", std::strerror(err), ")"));
  }
  InputFile f;
  f.fd_ = fd;
  f.path_ = path;
  struct stat st;
  if (::fstat(fd, &st) != 0) return internal_error(str_cat(path, ": cannot stat (", std::strerror(errno), ")"));
  if (!S_ISREG(st.st_mode)) {
    return invalid_argument_error(str_cat(path, ": is ", file_type_name(st.st_mode),
                                          ", not a regular file; give the path of a file"));
  }
  if (st.st_size > max_bytes) {
    return resource_exhausted_error(str_cat(path, ": file of ", st.st_size, " bytes exceeds the limit of ",
                                            max_bytes, " bytes"));
  }
  f.size_ = st.st_size;
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return f;
}

InputFile::InputFile(InputFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), size_(other.size_), path_(std::move(other.path_)) {}

InputFile& InputFile::operator=(InputFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
    path_ = std::move(other.path_);
  }
  return *this;
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

StatusOr<size_t> InputFile::read(char* buf, size_t n) {
  while (true) {
    const ssize_t got = ::read(fd_, buf, n);
    if (got >= 0) return static_cast<size_t>(got);
    if (errno != EINTR) return data_loss_error(str_cat(path_, ": read failed (", std::strerror(errno), ")"));
  }
}

StatusOr<size_t> InputFile::read_at(int64_t offset, char* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd_, buf + done, n - done, static_cast<off_t>(offset) + static_cast<off_t>(done));
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      return data_loss_error(str_cat(path_, ": read failed (", std::strerror(errno), ")"));
    }
    done += static_cast<size_t>(got);
  }
  return done;
}

StatusOr<std::string> read_file(const std::string& path) {
  OMNI_ASSIGN_OR_RETURN(InputFile in, InputFile::open(path));
  std::string data(static_cast<size_t>(in.size()), '\0');
  OMNI_ASSIGN_OR_RETURN(size_t got, in.read_at(0, data.data(), data.size()));
  if (got != data.size()) return data_loss_error(str_cat(path, ": short read (the file changed while read?)"));
  return data;
}

StatusOr<std::string> read_file_prefix(const std::string& path, size_t n) {
  OMNI_ASSIGN_OR_RETURN(InputFile in, InputFile::open(path));
  std::string data(std::min(n, static_cast<size_t>(in.size())), '\0');
  OMNI_ASSIGN_OR_RETURN(size_t got, in.read_at(0, data.data(), data.size()));
  data.resize(got);
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

std::string printable(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = (c >= 32 && c < 127) ? c : '?';
  return out;
}

}  // namespace omni::io_internal

namespace omni::io_internal {

StatusOr<LineReader> LineReader::open(const std::string& path) {
  OMNI_ASSIGN_OR_RETURN(InputFile f, InputFile::open(path));
  return LineReader(std::move(f));
}

bool LineReader::fill() {
  constexpr size_t kBlock = size_t{64} << 10;
  if (eof_ || !status_.ok()) return false;
  // Keep the unread part, drop what was consumed, then append one block.
  buf_.erase(0, pos_);
  pos_ = 0;
  const size_t old = buf_.size();
  buf_.resize(old + kBlock);
  auto got = file_->read(buf_.data() + old, kBlock);
  if (!got.ok()) {
    status_ = got.status();
    buf_.resize(old);
    return false;
  }
  buf_.resize(old + *got);
  if (*got == 0) eof_ = true;
  return *got > 0;
}

bool LineReader::next(Line* line) {
  std::string_view text;
  if (in_memory_) {
    if (text_.empty()) return false;
    const size_t end = text_.find('\n');
    text = text_.substr(0, end);
    text_.remove_prefix(end == std::string_view::npos ? text_.size() : end + 1);
  } else {
    size_t end;
    size_t scanned = 0;  // bytes of the unread part already searched for '\n'
    while ((end = buf_.find('\n', pos_ + scanned)) == std::string::npos) {
      scanned = buf_.size() - pos_;
      if (!fill()) break;
    }
    if (!status_.ok()) return false;
    if (end == std::string::npos) {
      if (pos_ == buf_.size()) return false;  // the end, after a final '\n'
      end = buf_.size();
    }
    text = std::string_view(buf_).substr(pos_, end - pos_);
    pos_ = std::min(end + 1, buf_.size());
  }
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  *line = {++number_, text};
  return true;
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
    if (all_integers_) {
      ints_.push_back(i);
    } else {
      values_.push_back(static_cast<double>(i));
    }
    return true;
  }
  double d = 0;
  if (!parse_double(token, &d)) return false;
  to_doubles();
  values_.push_back(d);
  return true;
}

void LoadCells::to_doubles() {
  if (!all_integers_) return;
  all_integers_ = false;
  for (size_t i = 0; i < ints_.size(); ++i) values_.push_back(static_cast<double>(ints_[i]));
  ints_.clear();
}

StatusOr<LoadMatrix> LoadCells::build(int32_t num_layers, int32_t num_experts,
                                     const std::vector<size_t>* row_order) && {
  const size_t E = static_cast<size_t>(std::max(num_experts, 0));
  // Cell i of the matrix: cell source(i) of this collection.
  auto source = [&](size_t i) { return row_order ? (*row_order)[i / E] * E + i % E : i; };
  const size_t n = row_order ? row_order->size() * E : size();
  if (all_integers_) {
    std::vector<int64_t> counts(n);
    for (size_t i = 0; i < n; ++i) counts[i] = ints_[source(i)];
    ints_.clear();
    return LoadMatrix::from_counts(num_layers, num_experts, std::move(counts));
  }
  std::vector<double> weights(n);
  for (size_t i = 0; i < n; ++i) weights[i] = values_[source(i)];
  values_.clear();
  return LoadMatrix::from_weights(num_layers, num_experts, std::move(weights));
}

}  // namespace omni::io_internal
