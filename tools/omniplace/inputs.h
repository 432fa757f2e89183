// Reading the inputs of omniplace subcommands: a placement (a file, or a
// generated "contiguous:RANKS:SLOTS" placement) and a load (any load source).
// Header-only because the CLI's CMakeLists compiles cmd_*.cc files only; the
// work is done by the io library.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/dump_writer.h"
#include "omniplacement/io/load_file.h"
#include "omniplacement/io/placement_file.h"

namespace omni::cli {

// "contiguous:R:S": Placement::contiguous with R ranks and S slots per rank,
// layers and experts taken from `load` (needed). Anything else is a file.
inline StatusOr<PlacementFile> read_placement_arg(const std::string& arg, const LoadMatrix* load) {
  const std::string prefix = "contiguous:";
  if (arg.rfind(prefix, 0) != 0) return read_placement_file(arg);
  const std::string rest = arg.substr(prefix.size());
  const size_t colon = rest.find(':');
  int ranks = 0, slots = 0;
  try {
    size_t used = 0;
    ranks = std::stoi(rest.substr(0, colon), &used);
    if (colon == std::string::npos || used != colon) throw std::invalid_argument("ranks");
    slots = std::stoi(rest.substr(colon + 1), &used);
    if (used != rest.size() - colon - 1) throw std::invalid_argument("slots");
  } catch (const std::exception&) {
    return invalid_argument_error(str_cat("placement '", arg, "': expected contiguous:RANKS:SLOTS_PER_RANK, e.g. contiguous:12:6"));
  }
  if (!load) return invalid_argument_error("a contiguous placement takes its layers and experts from --load");
  PlacementFile f;
  OMNI_ASSIGN_OR_RETURN(f.placement, Placement::contiguous(load->num_layers(), ranks, load->num_experts(), slots));
  return f;
}

// The load named by `path` (a trace needs `selector`; a dump is read under `placement`).
// A directory is a dump of activation windows (io/dump_writer.h): the sum of its windows.
inline StatusOr<LoadMatrix> read_load_arg(const std::string& path, const std::string& selector,
                                          const Placement* placement) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    if (!selector.empty())
      return invalid_argument_error(str_cat("--select applies to trace CSV files, not to the dump directory ", path));
    return read_dump_dir_load(path, placement);
  }
  return read_load_file(path, selector, placement);
}

}  // namespace omni::cli
