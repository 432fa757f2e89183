// Private helpers of the io module: whole-file reads and writes, extension
// checks and strict number parsing. Not installed; not part of the public API.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "block_vector.h"
#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/status.h"

namespace omni::io_internal {

// Files larger than this are refused before any allocation (the largest real
// input, a DeepSeek-V3 pattern at EP64, is a few MB).
inline constexpr int64_t kMaxFileBytes = int64_t{1} << 30;

// A file opened for reading only after it proved to be a regular file: a FIFO,
// directory, device or socket is refused with a message naming what it is,
// before any read that could block (the open itself does not block: it uses
// O_NONBLOCK, which a regular file ignores). Move-only; closes on destruction.
// One thread at a time.
class InputFile {
 public:
  // Files larger than `max_bytes` are refused (RESOURCE_EXHAUSTED).
  static StatusOr<InputFile> open(const std::string& path, int64_t max_bytes = kMaxFileBytes);
  InputFile(InputFile&& other) noexcept;
  InputFile& operator=(InputFile&& other) noexcept;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile();

  const std::string& path() const { return path_; }
  // Size in bytes when opened (at most the limit given to open()).
  int64_t size() const { return size_; }
  // Up to `n` bytes into `buf`; 0 at the end of the file.
  StatusOr<size_t> read(char* buf, size_t n);
  // Up to `n` bytes from byte `offset`, without moving the read position.
  StatusOr<size_t> read_at(int64_t offset, char* buf, size_t n);

 private:
  InputFile() = default;
  int fd_ = -1;
  int64_t size_ = 0;
  std::string path_;
};

// The whole file as bytes (a regular file of at most kMaxFileBytes).
// NOT_FOUND when it cannot be opened, INVALID_ARGUMENT for a non-regular file.
StatusOr<std::string> read_file(const std::string& path);
// The first `n` bytes of a regular file (fewer when it is shorter).
StatusOr<std::string> read_file_prefix(const std::string& path, size_t n);
// Writes through a temporary file in the same folder and renames it, so a
// reader never sees a half-written file.
Status write_file(const std::string& path, std::string_view contents);
// Lower-case extension with the dot (".npy"), or "" when there is none.
std::string extension_of(const std::string& path);

// Strict whole-token parses (no sign for unsigned, no spaces, no trailing text).
bool parse_int64(std::string_view token, int64_t* out);
// Decimal or scientific notation, finite only.
bool parse_double(std::string_view token, double* out);
// Shortest text that reads back to exactly the same double.
std::string format_double(double v);
// Token shortened to at most 40 characters, for error messages.
std::string quote_token(std::string_view token);
// `text` with every byte outside printable ASCII replaced by '?', for messages
// that quote a parser's view of the input.
std::string printable(std::string_view text);

}  // namespace omni::io_internal

namespace omni::io_internal {

// Lines of `text` without their '\n' (and a trailing '\r'), numbered from 1.
struct Line {
  int64_t number;
  std::string_view text;
};

// Lines one at a time, from text in memory or streamed from a file in blocks,
// so that a reader holds one line (plus a 64 KiB block) instead of the file and
// a table of every line. A line's text stays valid until the next call to
// next(). One thread at a time.
class LineReader {
 public:
  // Over `text`, which must outlive the reader (nothing is copied).
  explicit LineReader(std::string_view text) : text_(text), in_memory_(true) {}
  // Over the regular file at `path` (InputFile's checks).
  static StatusOr<LineReader> open(const std::string& path);

  // The next line; false at the end of the input or on a read error (then
  // status() says which). A final line without '\n' is still a line; an empty
  // input has no lines.
  bool next(Line* line);
  const Status& status() const { return status_; }

 private:
  explicit LineReader(InputFile file) : file_(std::make_unique<InputFile>(std::move(file))) {}
  bool fill();  // reads one more block into buf_; false at the end or on error

  std::string_view text_;  // in-memory input, or the unread part of buf_
  bool in_memory_ = false;
  std::unique_ptr<InputFile> file_;
  std::string buf_;
  size_t pos_ = 0;  // start of the unread part of buf_
  bool eof_ = false;
  int64_t number_ = 0;
  Status status_;
};
// Comma-separated fields, each with surrounding spaces trimmed (no quoting:
// none of our CSV layouts quote).
std::vector<std::string_view> split_csv(std::string_view line);
// Trims spaces and tabs.
std::string_view trim(std::string_view s);

// Collects numbers that are all integers (counts) or not (weights), then
// builds the LoadMatrix of the right kind. Each cell is stored once, 8 bytes,
// in blocks that never move: as int64 while every cell is an integer, as
// double from the first one that is not (the integers so far are converted).
class LoadCells {
 public:
  // Parses one cell; false when it is not a finite number.
  bool add(std::string_view token);
  size_t size() const { return all_integers_ ? ints_.size() : values_.size(); }
  bool all_integers() const { return all_integers_; }
  // The matrix; the cells are copied into it and freed (this collection is
  // left empty). With `row_order`, row i of the matrix is row row_order[i] of
  // the cells (rows of num_experts cells, in the order they were added).
  StatusOr<LoadMatrix> build(int32_t num_layers, int32_t num_experts,
                             const std::vector<size_t>* row_order = nullptr) &&;

 private:
  void to_doubles();
  bool all_integers_ = true;
  BlockVector<int64_t> ints_;   // while all_integers_
  BlockVector<double> values_;  // once a cell is not an integer
};

}  // namespace omni::io_internal
