// omniplace: command-line front end of the OmniPlacement SDK.
#include <algorithm>
#include <map>

#include "omniplace/command.h"
#include "omniplacement/core/version.h"

int main(int argc, char** argv) {
  using namespace omni::cli;
  CLI::App app{
      "omniplace: expert placement for Mixture-of-Experts inference (OmniPlacement SDK " +
      std::string(omni::kVersionString) + ")"};
  app.footer("Run 'omniplace <command> --help' (or 'omniplace help <command>') for a command's options and an example.\n"
             "Exit codes: 0 ok, 1 invalid input, 2 usage error.");
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(omni::kVersionString));
  auto& commands = registered_commands();
  std::stable_sort(commands.begin(), commands.end(),
                   [](const CommandSpec& a, const CommandSpec& b) { return a.order < b.order; });
  std::map<std::string, RunFn> runs;
  for (auto& c : commands) runs[c.name] = c.setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  for (auto* sub : app.get_subcommands()) {
    auto it = runs.find(sub->get_name());
    if (it != runs.end() && it->second) return it->second();
  }
  return kExitUsage;
}
