// Runs the omniplace binary (OMNIPLACE_PATH, set by tests/tools/CMakeLists.txt)
// for the CLI tests and captures its exit code and output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace omni::testing {

struct CliResult {
  int code = -1;
  std::string out;  // stdout and stderr together
};

// `args` is appended to the binary's path and run through the shell.
inline CliResult run_omniplace(const std::string& args) {
  CliResult r;
  const std::string cmd = std::string(OMNIPLACE_PATH) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace omni::testing
