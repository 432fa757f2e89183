#include "omniplacement/io/file_kind.h"

#include "file_util.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/trace.h"

namespace omni {

const char* file_kind_name(FileKind kind) {
  switch (kind) {
    case FileKind::kPlacement: return "placement";
    case FileKind::kLoad: return "load";
    case FileKind::kTrace: return "trace";
    case FileKind::kDump: return "activation dump";
    case FileKind::kConfig: return "config";
  }
  return "unknown";
}

StatusOr<FileKind> detect_file_kind(const std::string& path, bool dump_context) {
  const std::string ext = io_internal::extension_of(path);
  if (ext == ".json") return FileKind::kPlacement;
  if (ext == ".bin") return FileKind::kPlacement;
  if (ext == ".txt") return dump_context ? FileKind::kDump : FileKind::kPlacement;
  if (ext == ".yaml" || ext == ".yml") return FileKind::kConfig;
  if (ext == ".csv") {
    OMNI_ASSIGN_OR_RETURN(std::string head, io_internal::read_file_prefix(path, 4096));
    return Trace::looks_like_trace(head) ? FileKind::kTrace : FileKind::kLoad;
  }
  if (ext == ".npy") {
    // The shape tuple in the header says the number of dimensions; headers
    // we accept fit in the first 64 KiB. read_npy() checks the rest.
    OMNI_ASSIGN_OR_RETURN(std::string head, io_internal::read_file_prefix(path, 1 << 16));
    const size_t open = head.find('(');
    const size_t close = head.find(')', open == std::string::npos ? 0 : open);
    if (head.rfind("\x93NUMPY", 0) != 0 || open == std::string::npos || close == std::string::npos) {
      return invalid_argument_error(str_cat(path, ": not a .npy file (no magic or no shape in its header)"));
    }
    size_t dims = 0;
    bool digit = false;
    for (size_t i = open + 1; i < close; ++i) {
      const bool d = head[i] >= '0' && head[i] <= '9';
      if (d && !digit) ++dims;
      digit = d;
    }
    if (dims == 3) return FileKind::kPlacement;
    if (dims == 2) return FileKind::kLoad;
    return invalid_argument_error(str_cat(path, ": a .npy of ", dims,
                                          " dimensions is neither a placement pattern [ranks, layers, experts] nor a "
                                          "load [layers, experts]"));
  }
  return invalid_argument_error(str_cat(path, ": unknown file type '", ext,
                                        "' (expected .json, .npy, .txt, .bin, .csv, .yaml)"));
}

}  // namespace omni
