// Runs the omniplace binary (OMNIPLACE_PATH, set by tests/tools/CMakeLists.txt)
// for the CLI tests and captures its exit code and output.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace omni::testing {

struct CliResult {
  int code = -1;
  std::string out;  // stdout and stderr together (run_omniplace), or stdout alone (run_omniplace_split)
  std::string err;  // stderr (run_omniplace_split only)
};

// `args` is appended to the binary's path and run through the shell; with
// timeout_s > 0 the run is killed after that long (exit code 124).
inline CliResult run_omniplace(const std::string& args, int timeout_s = 0) {
  CliResult r;
  const std::string prefix = timeout_s > 0 ? "timeout " + std::to_string(timeout_s) + " " : std::string();
  const std::string cmd = prefix + std::string(OMNIPLACE_PATH) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Like run_omniplace, but keeps stdout (out) and stderr (err) apart, for
// checking that --json prints one JSON object on stdout and errors on stderr.
inline CliResult run_omniplace_split(const std::string& args) {
  CliResult r;
  char err_path[] = "/tmp/omniplace_stderr_XXXXXX";
  const int fd = mkstemp(err_path);
  if (fd < 0) return r;
  close(fd);
  const std::string cmd = std::string(OMNIPLACE_PATH) + " " + args + " 2>" + err_path;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe) {
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
    const int status = pclose(pipe);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::ifstream in(err_path);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  std::remove(err_path);
  return r;
}

}  // namespace omni::testing
