// omniplace help [COMMAND]: the usage of omniplace, or of one command; the
// same text as 'omniplace --help' and 'omniplace COMMAND --help'.
#include <functional>

#include "omniplace/command.h"

namespace {

struct HelpArgs {
  std::string command;  // empty: the usage of omniplace itself
};

omni::cli::RunFn setup_help(CLI::App& app) {
  auto args = std::make_shared<HelpArgs>();
  auto* sub = app.add_subcommand("help", "Print the usage of omniplace or of one command (the same as --help)");
  sub->add_option("command", args->command, "Command to describe, e.g. plan");
  sub->footer(
      "Exit codes: 0 ok, 2 unknown command.\n"
      "Examples:\n"
      "  omniplace help\n"
      "  omniplace help simulate");
  // `app` outlives the run: main() keeps it until the command returns.
  return [args, &app] {
    const std::function<bool(CLI::App*)> every = [](CLI::App*) { return true; };
    if (args->command.empty()) {
      // Not app.help(): once a command is chosen (this one) it describes that command.
      std::cout << app.get_formatter()->make_help(&app, app.get_name(), CLI::AppFormatMode::Normal);
      return omni::cli::kExitOk;
    }
    for (CLI::App* c : app.get_subcommands(every)) {
      if (c->get_name() == args->command) {
        std::cout << c->help(app.get_name());  // as 'omniplace COMMAND --help' prints it
        return omni::cli::kExitOk;
      }
    }
    std::cerr << "omniplace help: unknown command '" << args->command << "'; the commands are:";
    for (CLI::App* c : app.get_subcommands(every)) std::cerr << " " << c->get_name();
    std::cerr << "\n";
    return omni::cli::kExitUsage;
  };
}

}  // namespace

OMNI_CLI_COMMAND(help, 100, setup_help);
