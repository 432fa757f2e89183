#include "omniplace/install_paths.h"

#include <cstdlib>
#include <string>
#include <system_error>

#include "omniplacement/core/str_cat.h"

namespace omni::cli {

namespace fs = std::filesystem;

StatusOr<fs::path> executable_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return internal_error(str_cat("cannot locate the omniplace executable (/proc/self/exe: ", ec.message(), ")"));
  return exe.parent_path();
}

namespace {

StatusOr<fs::path> share_dir() {
  OMNI_ASSIGN_OR_RETURN(fs::path exe_dir, executable_dir());
  return (exe_dir / OMNI_SHARE_REL_DIR).lexically_normal();
}

}  // namespace

StatusOr<fs::path> data_dir() {
  std::error_code ec;
  if (const char* env = std::getenv(kDataDirEnv); env != nullptr && *env != '\0') {
    if (!fs::is_directory(env, ec)) {
      return not_found_error(str_cat("$", kDataDirEnv, " is '", env, "', which is not a directory"));
    }
    return fs::path(env);
  }
  OMNI_ASSIGN_OR_RETURN(fs::path share, share_dir());
  const fs::path data = share / "data";
  if (!fs::is_directory(data, ec)) {
    return not_found_error(str_cat("no sample data at ", data.string(), " (installed with omniplace under "
                                   "<prefix>/share/omniplacement/data); set $", kDataDirEnv, " to the data directory"));
  }
  return data;
}

StatusOr<fs::path> plot_script() {
  OMNI_ASSIGN_OR_RETURN(fs::path share, share_dir());
  const fs::path script = share / "plot_simulation.py";
  std::error_code ec;
  if (!fs::is_regular_file(script, ec)) {
    return not_found_error(str_cat("no plot script at ", script.string(), " (installed with omniplace)"));
  }
  return script;
}

std::optional<fs::path> python_package_dir() {
  auto exe_dir = executable_dir();
  if (!exe_dir.ok()) return std::nullopt;
  const fs::path prefix = exe_dir->parent_path();
  std::error_code ec;
  auto has_package = [&ec](const fs::path& dir) { return fs::exists(dir / "omniplacement" / "plot.py", ec); };
  if (has_package(prefix / "python")) return prefix / "python";  // the build tree
  for (const auto& entry : fs::directory_iterator(prefix / "lib", ec)) {
    if (entry.path().filename().string().rfind("python3", 0) != 0) continue;
    for (const char* site : {"dist-packages", "site-packages"}) {
      if (has_package(entry.path() / site)) return entry.path() / site;
    }
  }
  return std::nullopt;
}

}  // namespace omni::cli
