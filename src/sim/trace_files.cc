#include "omniplacement/sim/trace_files.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/load_file.h"
#include "omniplacement/io/trace.h"

namespace omni::sim {

namespace fs = std::filesystem;

namespace {

bool is_load_extension(const fs::path& p, bool with_dumps) {
  const std::string ext = p.extension().string();
  return ext == ".npy" || ext == ".csv" || (with_dumps && ext == ".txt");
}

StatusOr<std::vector<LoadMatrix>> read_directory(const std::string& dir, const TraceFileOptions& options) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && is_load_extension(entry.path(), options.placement_in_force != nullptr)) {
      files.push_back(entry.path());
    }
  }
  if (ec) return not_found_error(str_cat("trace: cannot list ", dir, ": ", ec.message()));
  if (files.empty()) {
    return not_found_error(str_cat("trace: ", dir, " holds no load files (.npy, .csv",
                                   options.placement_in_force ? ", .txt dumps" : "", ")"));
  }
  std::sort(files.begin(), files.end());
  std::vector<LoadMatrix> out;
  for (const fs::path& f : files) {
    OMNI_ASSIGN_OR_RETURN(LoadMatrix m, read_load_file(f.string(), "", options.placement_in_force));
    if (!out.empty() && (m.num_layers() != out.front().num_layers() || m.num_experts() != out.front().num_experts())) {
      return invalid_argument_error(str_cat("trace: ", f.string(), " is ", m.num_layers(), " x ", m.num_experts(),
                                            " but ", files.front().string(), " is ", out.front().num_layers(), " x ",
                                            out.front().num_experts()));
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

StatusOr<std::vector<LoadMatrix>> read_trace_windows(const std::string& path, const TraceFileOptions& options) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (!options.datasets.empty()) {
      return invalid_argument_error(str_cat("trace: datasets apply to a trace CSV, not to the directory ", path));
    }
    return read_directory(path, options);
  }
  if (fs::path(path).extension() == ".csv") {
    // A trace CSV (by its header) has windows; a plain load CSV is one window.
    StatusOr<Trace> trace = Trace::read_csv(path);
    if (trace.ok()) {
      std::vector<LoadMatrix> out;
      if (options.datasets.empty()) {
        for (const TraceWindow& w : trace->windows()) out.push_back(w.load);
      } else {
        OMNI_ASSIGN_OR_RETURN(std::vector<TraceWindow> ws, trace->windows(options.datasets));
        for (TraceWindow& w : ws) out.push_back(std::move(w.load));
      }
      return out;
    }
  }
  if (!options.datasets.empty()) {
    return invalid_argument_error(str_cat("trace: ", path, " is not a per-iteration trace CSV; datasets do not apply"));
  }
  OMNI_ASSIGN_OR_RETURN(LoadMatrix m, read_load_file(path, "", options.placement_in_force));
  std::vector<LoadMatrix> out;
  out.push_back(std::move(m));
  return out;
}

StatusOr<std::vector<std::string>> write_synthetic_trace(const WorkloadParams& params, int64_t num_windows,
                                                         int64_t steps_per_window, const std::string& dir,
                                                         const std::string& format) {
  if (format != "npy" && format != "csv") {
    return invalid_argument_error(str_cat("gen-trace: format '", format, "' is not one of npy, csv"));
  }
  if (num_windows < 1 || num_windows > 10'000'000) {
    return invalid_argument_error(str_cat("gen-trace: num_windows ", num_windows, " must be in [1, 10^7]"));
  }
  OMNI_ASSIGN_OR_RETURN(SyntheticWorkload gen, SyntheticWorkload::create(params));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return not_found_error(str_cat("gen-trace: cannot create ", dir, ": ", ec.message()));
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind("window_", 0) == 0) {
      return failed_precondition_error(str_cat("gen-trace: ", dir, " already holds window files (",
                                               entry.path().filename().string(), "); use an empty directory"));
    }
  }
  std::vector<std::string> paths;
  LoadMatrix window;
  for (int64_t w = 0; w < num_windows; ++w) {
    OMNI_RETURN_IF_ERROR(gen.next_window(steps_per_window, &window));
    char name[64];
    std::snprintf(name, sizeof name, "window_%06lld.%s", static_cast<long long>(w), format.c_str());
    const std::string path = (fs::path(dir) / name).string();
    OMNI_RETURN_IF_ERROR(write_load_file(path, window));
    paths.push_back(path);
  }
  return paths;
}

}  // namespace omni::sim
