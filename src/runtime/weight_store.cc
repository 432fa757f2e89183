#include "omniplacement/runtime/weight_store.h"

#include <cstring>
#include <limits>

#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {
constexpr int64_t kAlign = 64;
// Keeps one layer's allocation (slots * stride) well inside size_t and int64.
constexpr int64_t kMaxLayerBytes = int64_t{1} << 40;
}  // namespace

StatusOr<std::unique_ptr<HostWeightStore>> HostWeightStore::create(std::vector<int64_t> slot_bytes,
                                                                   std::vector<int32_t> slots_per_rank,
                                                                   int64_t staging_limit_bytes) {
  if (slot_bytes.empty() || slot_bytes.size() != slots_per_rank.size() ||
      slot_bytes.size() > static_cast<size_t>(kMaxLayers)) {
    return invalid_argument_error(str_cat("HostWeightStore: need 1..", kMaxLayers,
                                          " layers with one slot size and one slots_per_rank each, got ",
                                          slot_bytes.size(), " slot sizes and ", slots_per_rank.size(),
                                          " slots_per_rank values"));
  }
  if (staging_limit_bytes < 0) {
    return invalid_argument_error(str_cat("HostWeightStore: staging_limit_bytes must be >= 0, got ",
                                          staging_limit_bytes));
  }
  std::unique_ptr<HostWeightStore> store(new HostWeightStore());
  for (size_t l = 0; l < slot_bytes.size(); ++l) {
    const int64_t b = slot_bytes[l];
    const int32_t n = slots_per_rank[l];
    if (b <= 0 || n < 1 || n > kMaxSlotsPerRank || b > kMaxLayerBytes / n) {
      return invalid_argument_error(str_cat("HostWeightStore: layer ", l, ": slot_bytes ", b, " and slots_per_rank ",
                                            n, " must be > 0, slots_per_rank <= ", kMaxSlotsPerRank,
                                            ", and their product <= ", kMaxLayerBytes, " bytes"));
    }
    const int64_t stride = (b + kAlign - 1) / kAlign * kAlign;
    store->stride_.push_back(stride);
    store->layers_.emplace_back(static_cast<size_t>(stride * n));
  }
  store->slot_bytes_ = std::move(slot_bytes);
  store->slots_per_rank_ = std::move(slots_per_rank);
  store->staging_limit_ = staging_limit_bytes == 0 ? std::numeric_limits<int64_t>::max() : staging_limit_bytes;
  return store;
}

int32_t HostWeightStore::slots_per_rank(LayerId l) const {
  OMNI_CHECK(l >= 0 && l < num_layers());
  return slots_per_rank_[static_cast<size_t>(l)];
}

int64_t HostWeightStore::slot_bytes(LayerId l) const {
  OMNI_CHECK(l >= 0 && l < num_layers());
  return slot_bytes_[static_cast<size_t>(l)];
}

std::byte* HostWeightStore::slot_ptr(LayerId l, SlotId s) const {
  return const_cast<std::byte*>(layers_[static_cast<size_t>(l)].data()) + static_cast<int64_t>(s) * stride_[static_cast<size_t>(l)];
}

SlotView HostWeightStore::slot_view(LayerId l, SlotId s) const {
  OMNI_CHECK(check_slot("slot_view", l, s).ok());
  return SlotView{slot_ptr(l, s), slot_bytes_[static_cast<size_t>(l)], MemoryKind::kHost};
}

std::span<const std::byte> HostWeightStore::slot_data(LayerId l, SlotId s) const {
  OMNI_CHECK(check_slot("slot_data", l, s).ok());
  return {slot_ptr(l, s), static_cast<size_t>(slot_bytes_[static_cast<size_t>(l)])};
}

Status HostWeightStore::check_slot(const char* what, LayerId l, SlotId s) const {
  if (l < 0 || l >= num_layers()) {
    return out_of_range_error(str_cat("HostWeightStore::", what, ": layer ", l, " out of [0, ", num_layers(), ")"));
  }
  if (s < 0 || s >= slots_per_rank_[static_cast<size_t>(l)]) {
    return out_of_range_error(str_cat("HostWeightStore::", what, ": layer ", l, ", slot ", s, " out of [0, ",
                                      slots_per_rank_[static_cast<size_t>(l)], ")"));
  }
  return ok_status();
}

Status HostWeightStore::check_range(const char* what, LayerId l, SlotId s, int64_t offset, size_t size) const {
  OMNI_RETURN_IF_ERROR(check_slot(what, l, s));
  const int64_t bytes = slot_bytes_[static_cast<size_t>(l)];
  if (offset < 0 || offset > bytes || size > static_cast<uint64_t>(bytes - offset)) {
    return out_of_range_error(str_cat("HostWeightStore::", what, ": layer ", l, ", slot ", s, ": bytes [", offset,
                                      ", ", offset, " + ", size, ") outside the slot's ", bytes, " bytes"));
  }
  return ok_status();
}

Status HostWeightStore::read_slot(LayerId l, SlotId s, int64_t offset, std::span<std::byte> out) const {
  OMNI_RETURN_IF_ERROR(check_range("read_slot", l, s, offset, out.size()));
  if (!out.empty()) std::memcpy(out.data(), slot_ptr(l, s) + offset, out.size());
  return ok_status();
}

Status HostWeightStore::write_slot(LayerId l, SlotId s, int64_t offset, std::span<const std::byte> data) {
  OMNI_RETURN_IF_ERROR(check_range("write_slot", l, s, offset, data.size()));
  if (!data.empty()) std::memcpy(slot_ptr(l, s) + offset, data.data(), data.size());
  return ok_status();
}

StatusOr<StagingId> HostWeightStore::acquire_staging(LayerId l, SlotId s) {
  OMNI_RETURN_IF_ERROR(check_slot("acquire_staging", l, s));
  const int64_t bytes = slot_bytes_[static_cast<size_t>(l)];
  std::lock_guard<std::mutex> lock(mu_);
  if (bytes > staging_limit_ - staging_in_use_) {
    return resource_exhausted_error(str_cat("HostWeightStore::acquire_staging: layer ", l, ", slot ", s, " needs ",
                                            bytes, " bytes of staging; ", staging_in_use_, " of the limit ",
                                            staging_limit_, " are in use"));
  }
  const StagingId id = next_id_++;
  Staging st;
  st.layer = l;
  st.slot = s;
  st.bytes.resize(static_cast<size_t>(bytes));
  staging_.emplace(id, std::move(st));
  staging_in_use_ += bytes;
  return id;
}

Status HostWeightStore::write_staging(StagingId id, int64_t offset, std::span<const std::byte> data) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = staging_.find(id);
  if (it == staging_.end()) return not_found_error(str_cat("HostWeightStore::write_staging: no staging buffer ", id));
  auto& b = it->second.bytes;
  if (offset < 0 || offset > static_cast<int64_t>(b.size()) || data.size() > b.size() - static_cast<size_t>(offset)) {
    return out_of_range_error(str_cat("HostWeightStore::write_staging: buffer ", id, " (layer ", it->second.layer,
                                      ", slot ", it->second.slot, "): bytes [", offset, ", ", offset, " + ",
                                      data.size(), ") outside its ", b.size(), " bytes"));
  }
  if (!data.empty()) std::memcpy(b.data() + offset, data.data(), data.size());
  return ok_status();
}

Status HostWeightStore::stage_from_slot(StagingId id, SlotId src_slot) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = staging_.find(id);
  if (it == staging_.end()) return not_found_error(str_cat("HostWeightStore::stage_from_slot: no staging buffer ", id));
  OMNI_RETURN_IF_ERROR(check_slot("stage_from_slot", it->second.layer, src_slot));
  std::memcpy(it->second.bytes.data(), slot_ptr(it->second.layer, src_slot), it->second.bytes.size());
  return ok_status();
}

Status HostWeightStore::commit_staging(StagingId id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = staging_.find(id);
  if (it == staging_.end()) return not_found_error(str_cat("HostWeightStore::commit_staging: no staging buffer ", id));
  std::memcpy(slot_ptr(it->second.layer, it->second.slot), it->second.bytes.data(), it->second.bytes.size());
  return ok_status();
}

void HostWeightStore::release_staging(StagingId id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = staging_.find(id);
  if (it == staging_.end()) return;
  staging_in_use_ -= static_cast<int64_t>(it->second.bytes.size());
  staging_.erase(it);
}

int64_t HostWeightStore::staging_bytes_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return staging_in_use_;
}

int64_t HostWeightStore::slot_bytes_total() const {
  int64_t total = 0;
  for (size_t l = 0; l < slot_bytes_.size(); ++l) total += slot_bytes_[l] * slots_per_rank_[l];
  return total;
}

}  // namespace omni
