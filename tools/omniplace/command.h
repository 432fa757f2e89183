// Subcommand registry of the omniplace CLI.
//
// Each cmd_<name>.cc registers one subcommand at static-initialisation time:
//
//   OMNI_CLI_COMMAND(info, 90, [](CLI::App& app) -> omni::cli::RunFn {
//     auto* sub = app.add_subcommand("info", "Print version and modules");
//     return [] { return omni::cli::kExitOk; };
//   });
//
// The setup function adds the subcommand (with its options and an example in
// its footer) and returns what to run when that subcommand is chosen.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "omniplacement/core/status.h"

namespace omni::cli {

// Exit codes of every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitInvalidInput = 1;  // the input files or values are wrong
inline constexpr int kExitUsage = 2;         // the command line is wrong

using RunFn = std::function<int()>;
struct CommandSpec {
  std::string name;
  int order;  // position in --help
  std::function<RunFn(CLI::App&)> setup;
};

void register_command(CommandSpec spec);
std::vector<CommandSpec>& registered_commands();

// Prints "omniplace <command>: <status>" to stderr and returns kExitInvalidInput.
int fail(const std::string& command, const Status& status);

struct CommandRegistrar {
  explicit CommandRegistrar(CommandSpec spec) { register_command(std::move(spec)); }
};

}  // namespace omni::cli

#define OMNI_CLI_COMMAND(name, order, ...) \
  static const ::omni::cli::CommandRegistrar omni_cli_registrar_##name({#name, order, __VA_ARGS__})
