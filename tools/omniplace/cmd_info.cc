// omniplace info: version, built modules and the shipped sample data.
#include <filesystem>

#include "omniplace/command.h"
#include "omniplacement/core/version.h"

namespace {

omni::cli::RunFn setup_info(CLI::App& app) {
  auto* sub = app.add_subcommand("info", "Print the version, the modules built in and the shipped sample data");
  sub->footer("Example:\n  omniplace info");
  return [] {
    std::cout << "OmniPlacement " << omni::kVersionString << "\n";
    std::cout << "modules:";
#ifdef OMNI_MODULE_LIST
    std::cout << " " << OMNI_MODULE_LIST;
#endif
    std::cout << "\n";
    const std::filesystem::path data(OMNI_DATA_DIR);
    std::cout << "sample data: " << data.string() << "\n";
    std::error_code ec;
    for (const char* sub_dir : {"patterns", "traces"}) {
      for (const auto& entry : std::filesystem::directory_iterator(data / sub_dir, ec)) {
        if (entry.path().extension() == ".md") continue;
        std::cout << "  " << sub_dir << "/" << entry.path().filename().string() << " ("
                  << entry.file_size() << " bytes)\n";
      }
    }
    return omni::cli::kExitOk;
  };
}

}  // namespace

OMNI_CLI_COMMAND(info, 90, setup_info);
