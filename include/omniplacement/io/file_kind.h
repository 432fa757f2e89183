// What a file holds, guessed from its extension and, for .npy and .csv, its
// header: the first step of `omniplace validate` and `convert`, and of any
// tool that accepts "a placement or a load" on its command line.
//
//   .json                placement (ours)
//   .npy                 placement pattern when 3-D, load matrix when 2-D
//   .bin                 placement pattern
//   .txt                 placement pattern; an activation dump when the caller
//                        has a placement in force (dump_context = true)
//   .csv                 trace (per-domain or per-iteration header) or load matrix
//   .yaml / .yml         configuration
//
//   omni::StatusOr<omni::FileKind> k = omni::detect_file_kind("data/traces/olmoe_expert_counts.csv");
//   *k == omni::FileKind::kTrace;   // true
//
// Thread safety: pure function (reads the file).
#pragma once

#include <string>

#include "omniplacement/core/status.h"

namespace omni {

enum class FileKind { kPlacement, kLoad, kTrace, kDump, kConfig };

const char* file_kind_name(FileKind kind);  // "placement", "load", "trace", "activation dump", "config"

// dump_context: treat .txt as an activation dump rather than a pattern.
StatusOr<FileKind> detect_file_kind(const std::string& path, bool dump_context = false);

}  // namespace omni
