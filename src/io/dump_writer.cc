#include "omniplacement/io/dump_writer.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <type_traits>
#include <nlohmann/json.hpp>
#include <utility>

#include "file_util.h"
#include "json_reader.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/activation_dump.h"
#include "omniplacement/io/load_file.h"

namespace omni {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFormat = "omniplacement.activation_window";
constexpr int kVersion = 1;
constexpr int32_t kMaxQueue = 1 << 16;

std::string file_stem(const std::string& prefix, uint64_t window) {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%08" PRIu64, window);
  return prefix + "_" + digits;
}

std::string hex64(uint64_t v) {
  char out[17];
  std::snprintf(out, sizeof out, "%016" PRIx64, v);
  return out;
}

bool valid_prefix(const std::string& p) {
  if (p.empty() || p.size() > 200 || p[0] == '.') return false;
  return std::all_of(p.begin(), p.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

Status check_id_space(const std::string& s, const std::string& where) {
  if (s == "expert" || s == "global_slot") return ok_status();
  return invalid_argument_error(str_cat(where, ": id_space '", s, "'; valid: \"expert\" or \"global_slot\""));
}

// A sidecar is a few hundred bytes; anything much larger is not one.
constexpr size_t kMaxSidecarBytes = size_t{1} << 20;

// The keys read from a sidecar (others are ignored: newer writers may add some).
io_internal::JsonField sidecar_schema() {
  using io_internal::JsonField;
  std::vector<std::pair<std::string, JsonField>> m;
  for (const char* k : {"format", "npy", "id_space", "kind", "placement_checksum"}) m.emplace_back(k, JsonField::string());
  for (const char* k : {"version", "num_layers", "num_ids", "window", "step_begin", "step_end", "epoch", "rank",
                        "num_invalid"})
    m.emplace_back(k, JsonField::number());
  return JsonField::object(std::move(m), /*allow_unknown_keys=*/true);
}

// Typed field of a sidecar, with the file and key in the error.
template <typename T>
StatusOr<T> field(const io_internal::JsonField& j, const char* key, const std::string& path) {
  const io_internal::JsonField& v = *j.member(key);
  if (!v.present()) return invalid_argument_error(str_cat(path, ": missing key \"", key, "\""));
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.has_wanted_type()) return invalid_argument_error(str_cat(path, ": \"", key, "\" must be a string, got ", v.type()));
    return v.text();
  } else {
    const int64_t lo = std::is_unsigned_v<T> ? 0 : std::max<int64_t>(std::numeric_limits<T>::min(), -io_internal::kMaxJsonInteger);
    const int64_t hi = std::min<int64_t>(static_cast<int64_t>(std::min<uint64_t>(std::numeric_limits<T>::max(), INT64_MAX)),
                                         io_internal::kMaxJsonInteger);
    int64_t x = 0;
    OMNI_RETURN_IF_ERROR(io_internal::json_int(path, v, str_cat("\"", key, "\""), lo, hi, &x));
    return static_cast<T>(x);
  }
}

}  // namespace

Status write_dump_window(const std::string& dir, const std::string& file_prefix, const LoadMatrix& load,
                         const DumpMetadata& meta) {
  OMNI_RETURN_IF_ERROR(check_id_space(meta.id_space, "dump metadata"));
  if (!valid_prefix(file_prefix))
    return invalid_argument_error(str_cat("dump file prefix '", file_prefix,
                                          "': use letters, digits, '_', '-' and '.' (not first)"));
  if (load.num_layers() == 0) return invalid_argument_error("dump of an empty (0 x 0) load matrix");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return internal_error(str_cat("dump directory ", dir, ": cannot create it: ", ec.message()));
  const std::string stem = file_stem(file_prefix, meta.window);
  OMNI_RETURN_IF_ERROR(write_load_file((fs::path(dir) / (stem + ".npy")).string(), load));
  const nlohmann::ordered_json sidecar = {
      {"format", kFormat},
      {"version", kVersion},
      {"npy", stem + ".npy"},
      {"num_layers", load.num_layers()},
      {"num_ids", load.num_experts()},
      {"id_space", meta.id_space},
      {"kind", load.is_counts() ? "counts" : "weights"},
      {"window", meta.window},
      {"step_begin", meta.step_begin},
      {"step_end", meta.step_end},
      {"epoch", meta.epoch},
      // A string: JSON numbers lose precision beyond 2^53 in most readers.
      {"placement_checksum", hex64(meta.placement_checksum)},
      {"rank", meta.rank},
      {"num_invalid", meta.num_invalid},
  };
  return io_internal::write_file((fs::path(dir) / (stem + ".json")).string(), sidecar.dump(2) + "\n");
}

StatusOr<DumpWindow> read_dump_window(const std::string& json_path) {
  OMNI_ASSIGN_OR_RETURN(const std::string text, io_internal::read_file(json_path));
  if (text.size() > kMaxSidecarBytes)
    return invalid_argument_error(str_cat(json_path, ": ", text.size(), " bytes; an activation window sidecar has at most ",
                                          kMaxSidecarBytes));
  io_internal::JsonField j = sidecar_schema();
  OMNI_RETURN_IF_ERROR(io_internal::read_json(text, json_path, &j));
  if (!j.has_wanted_type())
    return invalid_argument_error(str_cat(json_path, ": not a JSON object (activation window sidecar), got ", j.type()));
  OMNI_ASSIGN_OR_RETURN(const std::string format, field<std::string>(j, "format", json_path));
  if (format != kFormat)
    return invalid_argument_error(str_cat(json_path, ": format '", format, "'; expected '", kFormat, "'"));
  OMNI_ASSIGN_OR_RETURN(const int32_t version, field<int32_t>(j, "version", json_path));
  if (version != kVersion)
    return invalid_argument_error(str_cat(json_path, ": version ", version, "; this build reads ", kVersion));
  DumpWindow w;
  w.json_path = json_path;
  OMNI_ASSIGN_OR_RETURN(w.meta.id_space, field<std::string>(j, "id_space", json_path));
  OMNI_RETURN_IF_ERROR(check_id_space(w.meta.id_space, json_path));
  OMNI_ASSIGN_OR_RETURN(w.meta.window, field<uint64_t>(j, "window", json_path));
  OMNI_ASSIGN_OR_RETURN(w.meta.step_begin, field<int64_t>(j, "step_begin", json_path));
  OMNI_ASSIGN_OR_RETURN(w.meta.step_end, field<int64_t>(j, "step_end", json_path));
  OMNI_ASSIGN_OR_RETURN(w.meta.epoch, field<int64_t>(j, "epoch", json_path));
  OMNI_ASSIGN_OR_RETURN(w.meta.rank, field<int32_t>(j, "rank", json_path));
  OMNI_ASSIGN_OR_RETURN(w.meta.num_invalid, field<int64_t>(j, "num_invalid", json_path));
  OMNI_ASSIGN_OR_RETURN(const std::string checksum, field<std::string>(j, "placement_checksum", json_path));
  size_t used = 0;
  bool hex_ok = checksum.size() == 16 && checksum.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (hex_ok) w.meta.placement_checksum = std::stoull(checksum, &used, 16);
  if (!hex_ok || used != 16)
    return invalid_argument_error(
        str_cat(json_path, ": placement_checksum '", checksum, "'; expected 16 lower-case hex digits"));
  OMNI_ASSIGN_OR_RETURN(const int32_t layers, field<int32_t>(j, "num_layers", json_path));
  OMNI_ASSIGN_OR_RETURN(const int32_t ids, field<int32_t>(j, "num_ids", json_path));
  OMNI_ASSIGN_OR_RETURN(const std::string kind, field<std::string>(j, "kind", json_path));
  if (kind != "counts" && kind != "weights")
    return invalid_argument_error(str_cat(json_path, ": kind '", kind, "'; valid: \"counts\" or \"weights\""));
  OMNI_ASSIGN_OR_RETURN(const std::string npy_name, field<std::string>(j, "npy", json_path));
  if (npy_name.empty() || npy_name.find('/') != std::string::npos || npy_name.find('\\') != std::string::npos ||
      npy_name == "." || npy_name == "..")
    return invalid_argument_error(
        str_cat(json_path, ": \"npy\" = '", npy_name, "' must be a file name in the same directory"));
  const std::string npy_path = (fs::path(json_path).parent_path() / npy_name).string();
  StatusOr<LoadMatrix> load = read_load_file(npy_path);
  if (!load.ok()) return load.status().with_context(str_cat(json_path, ": its window"));
  const char* held = load->is_counts() ? "counts" : "weights";
  if (load->num_layers() != layers || load->num_experts() != ids)
    return invalid_argument_error(str_cat(npy_path, ": holds ", load->num_layers(), " x ", load->num_experts(), " ",
                                          held, "; the sidecar ", json_path, " says [", layers, ", ", ids, "]"));
  if (held != kind)
    return invalid_argument_error(
        str_cat(npy_path, ": holds ", held, "; the sidecar says kind '", kind, "' (counts: int32/int64 .npy, weights: float)"));
  w.load = std::move(load).value();
  return w;
}

StatusOr<std::vector<DumpWindow>> read_dump_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return not_found_error(str_cat(dir, ": not a directory (activation dumps)"));
  std::vector<std::string> sidecars;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file(ec) && entry.path().extension() == ".json") sidecars.push_back(entry.path().string());
  }
  if (ec) return internal_error(str_cat(dir, ": listing failed: ", ec.message()));
  if (sidecars.empty()) return not_found_error(str_cat(dir, ": no activation window sidecars (*.json)"));
  std::sort(sidecars.begin(), sidecars.end());
  std::vector<DumpWindow> out;
  out.reserve(sidecars.size());
  for (const std::string& path : sidecars) {
    OMNI_ASSIGN_OR_RETURN(DumpWindow w, read_dump_window(path));
    out.push_back(std::move(w));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const DumpWindow& a, const DumpWindow& b) { return a.meta.window < b.meta.window; });
  return out;
}

StatusOr<LoadMatrix> read_dump_dir_load(const std::string& dir, const Placement* placement) {
  OMNI_ASSIGN_OR_RETURN(const std::vector<DumpWindow> windows, read_dump_dir(dir));
  std::optional<LoadMatrix> total;
  for (const DumpWindow& w : windows) {
    LoadMatrix load = w.load;
    if (w.meta.id_space == "global_slot") {
      if (placement == nullptr)
        return invalid_argument_error(str_cat(w.json_path, ": global-slot counts need the placement in force "
                                                           "(give --placement as a file)"));
      if (w.meta.placement_checksum != 0 && w.meta.placement_checksum != placement->checksum())
        return invalid_argument_error(str_cat(w.json_path, ": recorded under placement checksum ",
                                              hex64(w.meta.placement_checksum), ", but the placement given has ",
                                              hex64(placement->checksum())));
      if (!load.is_counts())
        return invalid_argument_error(str_cat(w.json_path, ": global-slot windows must hold counts"));
      if (load.num_layers() != placement->num_layers())
        return invalid_argument_error(str_cat(w.json_path, ": ", load.num_layers(), " layers; the placement has ",
                                              placement->num_layers()));
      SlotCounts slots(static_cast<size_t>(load.num_layers()));
      for (LayerId l = 0; l < load.num_layers(); ++l) {
        const std::span<const int64_t> row = load.counts_row(l);
        const int32_t n = placement->num_slots(l);
        if (n > load.num_experts())
          return invalid_argument_error(str_cat(w.json_path, ": layer ", l, " has ", load.num_experts(),
                                                " slot columns; the placement has ", n, " global slots"));
        for (int32_t g = n; g < load.num_experts(); ++g)
          if (row[static_cast<size_t>(g)] != 0)
            return invalid_argument_error(str_cat(w.json_path, ": layer ", l, " counts ", row[static_cast<size_t>(g)],
                                                  " tokens in global slot ", g, ", past the placement's ", n,
                                                  " slots"));
        slots[static_cast<size_t>(l)].assign(row.begin(), row.begin() + n);
      }
      auto experts = loads_from_slot_counts(slots, *placement);
      if (!experts.ok()) return experts.status().with_context(w.json_path);
      load = std::move(experts).value();
    }
    if (!total) {
      total = std::move(load);
      continue;
    }
    if (load.num_layers() != total->num_layers() || load.num_experts() != total->num_experts())
      return invalid_argument_error(str_cat(w.json_path, ": ", load.num_layers(), " x ", load.num_experts(),
                                            " loads; the windows before it are ", total->num_layers(), " x ",
                                            total->num_experts()));
    const Status s = total->add(load);
    if (!s.ok()) return s.with_context(w.json_path);
  }
  return std::move(*total);
}

StatusOr<std::unique_ptr<DumpWriter>> DumpWriter::start(DumpWriterOptions options) {
  if (options.dir.empty()) return invalid_argument_error("dump writer: dir is empty");
  if (options.queue_capacity < 1 || options.queue_capacity > kMaxQueue)
    return invalid_argument_error(
        str_cat("dump writer: queue_capacity = ", options.queue_capacity, "; valid: [1, ", kMaxQueue, "]"));
  if (!valid_prefix(options.file_prefix))
    return invalid_argument_error(str_cat("dump writer: file_prefix '", options.file_prefix,
                                          "': use letters, digits, '_', '-' and '.' (not first)"));
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec || !fs::is_directory(options.dir, ec))
    return internal_error(str_cat("dump writer: cannot create directory ", options.dir,
                                  ec ? ": " + ec.message() : std::string()));
  std::unique_ptr<DumpWriter> w(new DumpWriter(std::move(options)));
  w->thread_ = std::thread([p = w.get()] { p->run(); });
  return w;
}

DumpWriter::~DumpWriter() { close().ignore(); }

bool DumpWriter::submit(LoadMatrix load, DumpMetadata meta) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_ && std::ssize(queue_) < options_.queue_capacity) {
      queue_.push_back(Item{std::move(load), std::move(meta)});
      cv_.notify_all();
      return true;
    }
  }
  dropped_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void DumpWriter::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ and drained
    Item item = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    const Status s = write_dump_window(options_.dir, options_.file_prefix, item.load, item.meta);
    lock.lock();
    busy_ = false;
    if (s.ok()) {
      written_.fetch_add(1, std::memory_order_relaxed);
    } else {
      failed_.fetch_add(1, std::memory_order_relaxed);
      if (first_error_.ok()) first_error_ = s;
    }
    cv_.notify_all();
  }
}

Status DumpWriter::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
  return std::exchange(first_error_, Status());
}

Status DumpWriter::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(first_error_, Status());
}

}  // namespace omni
