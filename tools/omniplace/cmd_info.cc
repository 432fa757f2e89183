// omniplace info: version, built modules and the shipped sample data.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "omniplace/command.h"
#include "omniplace/install_paths.h"
#include "omniplace/json_out.h"
#include "omniplacement/core/version.h"

namespace {

struct SampleFile {
  std::string path;  // relative to the data directory, e.g. "patterns/x.npy"
  uintmax_t bytes = 0;
};

std::vector<std::string> module_list() {
  std::vector<std::string> modules;
#ifdef OMNI_MODULE_LIST
  std::istringstream words(OMNI_MODULE_LIST);
  for (std::string m; words >> m;) modules.push_back(m);
#endif
  return modules;
}

// The sample files of data/patterns and data/traces (READMEs left out), in
// directory order.
std::vector<SampleFile> sample_files(const std::filesystem::path& data) {
  std::vector<SampleFile> files;
  std::error_code ec;
  for (const char* sub_dir : {"patterns", "traces"}) {
    for (const auto& entry : std::filesystem::directory_iterator(data / sub_dir, ec)) {
      if (entry.path().extension() == ".md") continue;
      files.push_back({std::string(sub_dir) + "/" + entry.path().filename().string(), entry.file_size()});
    }
  }
  return files;
}

omni::cli::RunFn setup_info(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  auto* sub = app.add_subcommand("info", "Print the version, the modules built in and the shipped sample data");
  sub->add_flag("--json", *json, "Print one JSON object (version, modules, data_dir, sample_data)");
  sub->footer("Examples:\n  omniplace info\n  omniplace info --json");
  return [json] {
    // The data dir is found beside the executable (omniplace/install_paths.h); when it is
    // missing, info still prints the rest and says why (data_dir null, data_dir_error).
    const auto data = omni::cli::data_dir();
    const auto modules = module_list();
    const auto files = data.ok() ? sample_files(*data) : std::vector<SampleFile>{};
    if (*json) {
      nlohmann::json j{{"version", omni::kVersionString}, {"modules", modules}};
      if (data.ok()) {
        j["data_dir"] = data->string();
      } else {
        j["data_dir"] = nullptr;
        j["data_dir_error"] = data.status().message();
      }
      j["sample_data"] = nlohmann::json::array();
      for (const auto& f : files) j["sample_data"].push_back({{"path", f.path}, {"bytes", f.bytes}});
      omni::cli::print_json(j);
      return omni::cli::kExitOk;
    }
    std::cout << "OmniPlacement " << omni::kVersionString << "\n";
    std::cout << "modules:";
    for (const auto& m : modules) std::cout << " " << m;
    std::cout << "\n";
    if (!data.ok()) {
      std::cout << "sample data: not found (" << data.status().message() << ")\n";
      return omni::cli::kExitOk;
    }
    std::cout << "sample data: " << data->string() << "\n";
    for (const auto& f : files) std::cout << "  " << f.path << " (" << f.bytes << " bytes)\n";
    return omni::cli::kExitOk;
  };
}

}  // namespace

OMNI_CLI_COMMAND(info, 90, setup_info);
