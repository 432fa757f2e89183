#include "omniplace/command.h"

namespace omni::cli {

std::vector<CommandSpec>& registered_commands() {
  static std::vector<CommandSpec> commands;
  return commands;
}

void register_command(CommandSpec spec) { registered_commands().push_back(std::move(spec)); }

int fail(const std::string& command, const Status& status) {
  std::cerr << "omniplace " << command << ": " << status.to_string() << "\n";
  return kExitInvalidInput;
}

}  // namespace omni::cli
