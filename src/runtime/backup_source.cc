#include "omniplacement/runtime/backup_source.h"

#include <cstring>

#include "omniplacement/core/str_cat.h"

namespace omni {

StatusOr<std::unique_ptr<HostMemoryBackup>> HostMemoryBackup::create(std::vector<int64_t> expert_bytes,
                                                                      int32_t num_experts) {
  if (expert_bytes.empty() || num_experts < 1)
    return invalid_argument_error(str_cat("HostMemoryBackup: need >= 1 layer (", expert_bytes.size(),
                                          ") and >= 1 expert (", num_experts, ")"));
  std::unique_ptr<HostMemoryBackup> b(new HostMemoryBackup());
  for (size_t l = 0; l < expert_bytes.size(); ++l) {
    if (expert_bytes[l] <= 0 || expert_bytes[l] > (int64_t{1} << 40) / num_experts)
      return invalid_argument_error(str_cat("HostMemoryBackup: layer ", l, ": expert bytes ", expert_bytes[l],
                                            " out of (0, 2^40 / ", num_experts, "]"));
    b->layers_.emplace_back(static_cast<size_t>(expert_bytes[l]) * static_cast<size_t>(num_experts));
  }
  b->expert_bytes_ = std::move(expert_bytes);
  b->num_experts_ = num_experts;
  return b;
}

StatusOr<std::span<std::byte>> HostMemoryBackup::locate(LayerId l, ExpertId e, size_t size, const char* what) const {
  if (l < 0 || l >= static_cast<LayerId>(layers_.size()) || e < 0 || e >= num_experts_)
    return out_of_range_error(str_cat("HostMemoryBackup::", what, ": layer ", l, " expert ", e, " out of [0, ",
                                      layers_.size(), ") x [0, ", num_experts_, ")"));
  const auto bytes = static_cast<size_t>(expert_bytes_[static_cast<size_t>(l)]);
  if (size != bytes)
    return invalid_argument_error(str_cat("HostMemoryBackup::", what, ": layer ", l, " expert ", e, ": buffer of ",
                                          size, " bytes, the expert has ", bytes));
  auto& layer = const_cast<std::vector<std::byte>&>(layers_[static_cast<size_t>(l)]);
  return std::span<std::byte>(layer).subspan(static_cast<size_t>(e) * bytes, bytes);
}

Status HostMemoryBackup::set(LayerId l, ExpertId e, std::span<const std::byte> data) {
  OMNI_ASSIGN_OR_RETURN(auto dst, locate(l, e, data.size(), "set"));
  std::memcpy(dst.data(), data.data(), data.size());
  return ok_status();
}

Status HostMemoryBackup::read_expert(LayerId l, ExpertId e, std::span<std::byte> out) const {
  OMNI_ASSIGN_OR_RETURN(auto src, locate(l, e, out.size(), "read_expert"));
  std::memcpy(out.data(), src.data(), out.size());
  return ok_status();
}

std::string expert_tensor_name(LayerId l, ExpertId e) { return str_cat("layers.", l, ".experts.", e); }

StatusOr<std::unique_ptr<SafetensorsBackup>> SafetensorsBackup::open(const std::string& path, int32_t num_layers,
                                                                     int32_t num_experts) {
  if (num_layers < 1 || num_experts < 1)
    return invalid_argument_error(str_cat("SafetensorsBackup: ", path, ": need >= 1 layer (", num_layers,
                                          ") and >= 1 expert (", num_experts, ")"));
  std::unique_ptr<SafetensorsBackup> b(new SafetensorsBackup());
  OMNI_ASSIGN_OR_RETURN(b->file_, SafetensorsFile::open(path));
  b->path_ = path;
  b->num_layers_ = num_layers;
  b->num_experts_ = num_experts;
  for (LayerId l = 0; l < num_layers; ++l)
    for (ExpertId e = 0; e < num_experts; ++e) {
      const std::string name = expert_tensor_name(l, e);
      const SafetensorsTensor* t = b->file_.find(name);
      if (t == nullptr)
        return not_found_error(str_cat("SafetensorsBackup: ", path, ": no tensor '", name, "' (layer ", l,
                                       ", expert ", e, ")"));
      b->tensors_.push_back(t);
    }
  return b;
}

Status SafetensorsBackup::read_expert(LayerId l, ExpertId e, std::span<std::byte> out) const {
  if (l < 0 || l >= num_layers_ || e < 0 || e >= num_experts_)
    return out_of_range_error(str_cat("SafetensorsBackup: ", path_, ": layer ", l, " expert ", e, " out of [0, ",
                                      num_layers_, ") x [0, ", num_experts_, ")"));
  const SafetensorsTensor& t = *tensors_[static_cast<size_t>(l) * static_cast<size_t>(num_experts_) + static_cast<size_t>(e)];
  if (t.num_bytes() != out.size())
    return invalid_argument_error(str_cat("SafetensorsBackup: ", path_, ": tensor '", t.name, "' has ", t.num_bytes(),
                                          " bytes, the slot ", out.size()));
  return file_.read(t, out);
}

Status write_expert_checkpoint(const std::string& path, const std::vector<int64_t>& expert_bytes, int32_t num_experts,
                               const std::function<Status(LayerId, ExpertId, std::span<std::byte>)>& fill) {
  if (expert_bytes.empty() || num_experts < 1)
    return invalid_argument_error(str_cat("write_expert_checkpoint: ", path, ": need >= 1 layer and >= 1 expert"));
  std::vector<std::vector<std::byte>> data;
  std::vector<SafetensorsEntry> entries;
  data.reserve(expert_bytes.size() * static_cast<size_t>(num_experts));
  for (size_t l = 0; l < expert_bytes.size(); ++l)
    for (ExpertId e = 0; e < num_experts; ++e) {
      if (expert_bytes[l] <= 0)
        return invalid_argument_error(str_cat("write_expert_checkpoint: ", path, ": layer ", l, " has ",
                                              expert_bytes[l], " bytes per expert"));
      data.emplace_back(static_cast<size_t>(expert_bytes[l]));
      OMNI_RETURN_IF_ERROR(fill(static_cast<LayerId>(l), e, data.back()));
      entries.push_back({expert_tensor_name(static_cast<LayerId>(l), e), "U8", {expert_bytes[l]}, data.back()});
    }
  return write_safetensors(path, entries, {{"format", "omniplacement-experts"}});
}

}  // namespace omni
