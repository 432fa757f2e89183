// Range checks for the numeric options of omniplace subcommands. A value out of
// range is a usage error (exit 2) whose message names the option, the value
// and the valid range, e.g. "--migration-per-round: -1 is out of range: an
// integer in [0, 16384]". Header-only (the CLI compiles only cmd_*.cc files).
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "omniplacement/core/str_cat.h"

namespace omni::cli {

// An integer in [lo, hi].
inline CLI::Validator int_range(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        int64_t v = 0;
        const char* first = s.data();
        const char* last = s.data() + s.size();
        if (first != last && *first == '+') ++first;
        const auto [ptr, ec] = std::from_chars(first, last, v);
        if (ec != std::errc() || ptr != last || v < lo || v > hi) {
          return str_cat(s, " is out of range: an integer in [", lo, ", ", hi, "]");
        }
        return {};
      },
      str_cat("INT in [", lo, ", ", hi, "]"));
}

// A finite number in [lo, hi] ([lo, hi) with hi_open); NaN and inf are refused.
inline CLI::Validator number_range(double lo, double hi, bool hi_open = false) {
  return CLI::Validator(
      [lo, hi, hi_open](std::string& s) -> std::string {
        double v = 0;
        const char* first = s.data();
        const char* last = s.data() + s.size();
        if (first != last && *first == '+') ++first;
        const auto [ptr, ec] = std::from_chars(first, last, v);
        const bool in = ec == std::errc() && ptr == last && std::isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi);
        if (!in) return str_cat(s, " is out of range: a finite number in [", lo, ", ", hi, hi_open ? ")" : "]");
        return {};
      },
      str_cat("NUMBER in [", lo, ", ", hi, hi_open ? ")" : "]"));
}

// Largest values accepted for counts of steps and milliseconds (far beyond any real run).
inline constexpr int64_t kMaxCliSteps = int64_t{1} << 40;
inline constexpr int64_t kMaxCliMs = int64_t{24} * 3600 * 1000;  // a day

}  // namespace omni::cli
