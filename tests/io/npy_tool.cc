// Driver for tests/io/npy_numpy_test.py (C++ twin: npy_test.cc): reads .npy
// files with omni::read_npy and writes them with omni::write_npy.
//
//   npy_tool describe IN          prints "<dtype> [shape] <v0> <v1> ..." (values with %.17g)
//   npy_tool copy IN OUT VERSION  reads IN, writes OUT in format VERSION (0 = auto)
// Exit code 1 with the Status on stderr when reading fails.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "omniplacement/io/npy.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: npy_tool describe IN | copy IN OUT VERSION\n";
    return 2;
  }
  const std::string cmd = argv[1];
  auto a = omni::read_npy(argv[2]);
  if (!a.ok()) {
    std::cerr << a.status() << "\n";
    return 1;
  }
  if (cmd == "describe") {
    std::cout << a->describe();
    for (size_t i = 0; i < static_cast<size_t>(a->num_elements()); ++i) {
      char buf[40];
      if (a->is_integer()) {
        std::snprintf(buf, sizeof buf, " %lld", static_cast<long long>(a->ints[i]));
      } else {
        std::snprintf(buf, sizeof buf, " %.17g", a->floats[i]);
      }
      std::cout << buf;
    }
    std::cout << "\n";
    return 0;
  }
  if (cmd == "copy" && argc == 5) {
    omni::Status s = omni::write_npy(argv[3], *a, std::atoi(argv[4]));
    if (!s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
    return 0;
  }
  std::cerr << "usage: npy_tool describe IN | copy IN OUT VERSION\n";
  return 2;
}
