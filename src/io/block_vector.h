// BlockVector: append-only storage in blocks that never move (private to the
// io module). Readers that do not know in advance how many values a file
// holds collect them here: growing never copies and never leaves more than one
// partly filled block, so memory stays at the values' own size instead of the
// up to 3x a doubling std::vector reaches while it reallocates.
#pragma once

#include <bit>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace omni::io_internal {

// Blocks of 4 elements, doubling up to 8192, then 8192 each. One thread at a time.
template <typename T>
class BlockVector {
 public:
  BlockVector() = default;
  BlockVector(BlockVector&&) noexcept = default;
  BlockVector& operator=(BlockVector&&) noexcept = default;
  BlockVector(const BlockVector& other) {
    for (size_t i = 0; i < other.size_; ++i) push_back(other[i]);
  }
  BlockVector& operator=(const BlockVector& other) {
    if (this != &other) {
      BlockVector copy(other);
      *this = std::move(copy);
    }
    return *this;
  }
  size_t size() const { return size_; }
  void push_back(T v) {
    if (size_ == capacity_) grow();
    const auto [k, j] = locate(size_);
    blocks_[k][j] = v;
    ++size_;
  }
  T operator[](size_t i) const {
    const auto [k, j] = locate(i);
    return blocks_[k][j];
  }
  void clear() {
    blocks_.clear();
    size_ = capacity_ = 0;
  }

 private:
  static constexpr size_t kFirst = 4;
  static constexpr int kGeometric = 12;  // blocks 0..11 hold 4, 8, ..., 8192 elements
  static constexpr size_t kLast = kFirst << (kGeometric - 1);
  static constexpr size_t kGeometricTotal = kFirst * ((size_t{1} << kGeometric) - 1);

  static size_t block_size(size_t k) { return k < kGeometric ? kFirst << k : kLast; }
  // (block, index in the block) of element i.
  static std::pair<size_t, size_t> locate(size_t i) {
    if (i < kGeometricTotal) {
      const size_t k = static_cast<size_t>(std::bit_width(i / kFirst + 1)) - 1;
      return {k, i - kFirst * ((size_t{1} << k) - 1)};
    }
    const size_t j = i - kGeometricTotal;
    return {kGeometric + j / kLast, j % kLast};
  }
  void grow() {
    const size_t n = block_size(blocks_.size());
    blocks_.push_back(std::make_unique<T[]>(n));
    capacity_ += n;
  }

  std::vector<std::unique_ptr<T[]>> blocks_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace omni::io_internal
