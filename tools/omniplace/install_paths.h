// Where the omniplace CLI finds the files shipped beside it, so that an installed
// omniplace needs no source tree (nothing of the source tree is compiled in):
//
//   share dir    <directory of the executable>/OMNI_SHARE_REL_DIR, i.e.
//                <prefix>/share/omniplacement for <prefix>/bin/omniplace. The build
//                tree has the same layout (build/share/omniplacement links to the
//                source tree's data/ and scripts/plot_simulation.py).
//   data dir     $OMNI_DATA_DIR when set, else <share dir>/data: the sample traces,
//                patterns and placements (data/README.md).
//   plot script  <share dir>/plot_simulation.py (simulate --plot).
//   Python dir   the directory holding the omniplacement package beside the
//                executable, if any: build/python in the build tree, else
//                <prefix>/lib/python3.X/{dist,site}-packages of the install.
//
//   auto data = omni::cli::data_dir();
//   if (!data.ok()) return omni::cli::fail("demo", data.status());
//   std::string trace = (*data / "traces" / "qwen15moe_expert_freq_by_iteration.csv").string();
//
// Thread safety: any thread (reads the environment and the file system only).
#pragma once

#include <filesystem>
#include <optional>

#include "omniplacement/core/status.h"

namespace omni::cli {

// The environment variable that overrides the data dir.
inline constexpr const char* kDataDirEnv = "OMNI_DATA_DIR";

// The directory of the running executable (/proc/self/exe), or an error.
StatusOr<std::filesystem::path> executable_dir();
// The data dir (see above); NOT_FOUND naming where it looked when it is missing.
StatusOr<std::filesystem::path> data_dir();
// The plot script; NOT_FOUND naming where it looked.
StatusOr<std::filesystem::path> plot_script();
// The directory to put on PYTHONPATH for `import omniplacement`, when one lies beside
// the executable (nullopt: rely on the interpreter's own path).
std::optional<std::filesystem::path> python_package_dir();

}  // namespace omni::cli
