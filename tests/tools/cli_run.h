// Runs the real omniplace binary (OMNIPLACE_PATH, set by CMake) for CLI tests.
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

// `args` go through the shell: quote paths that need it.
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
