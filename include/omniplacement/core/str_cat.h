// str_cat(a, b, ...): concatenates anything printable with operator<< into a
// std::string. Used to build Status messages ("layer 3, rank 7: ...").
// Thread safety: pure function.
#pragma once

#include <sstream>
#include <string>

namespace omni {

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace omni
