#include "omniplacement/io/load_file.h"

#include "file_util.h"
#include "omniplacement/io/activation_dump.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/io/npy.h"
#include "omniplacement/io/trace.h"

namespace omni {

using io_internal::LoadCells;

namespace {

constexpr const char* kTraceNotLoad =
    ": this CSV is a trace (several windows); choose one with a selector, "
    "e.g. \"dataset=bookcorpus,iteration=0\" or \"model=olmoe,domain=arxiv\"";

// The rows of a plain load CSV, one line per layer, streamed.
StatusOr<LoadMatrix> parse_load_lines(io_internal::LineReader& lines, std::string_view name) {
  LoadCells cells;
  int64_t num_layers = 0;
  size_t num_experts = 0;
  bool first_content_line = true;
  io_internal::Line line;
  while (lines.next(&line)) {
    const std::string_view t = io_internal::trim(line.text);
    if (t.empty() || t.front() == '#') continue;
    const auto fields = io_internal::split_csv(t);
    if (first_content_line) {
      first_content_line = false;
      double unused = 0;
      if (!io_internal::parse_double(fields[0], &unused)) continue;  // a header line
    }
    if (num_layers == 0) {
      num_experts = fields.size();
      if (num_experts > static_cast<size_t>(kMaxExperts)) {
        return invalid_argument_error(str_cat(name, ":", line.number, ": ", num_experts, " values exceed ", kMaxExperts,
                                              " experts"));
      }
    } else if (fields.size() != num_experts) {
      return invalid_argument_error(str_cat(name, ":", line.number, ": layer ", num_layers, " has ", fields.size(),
                                            " values, the first layer has ", num_experts));
    }
    if (num_layers >= kMaxLayers) {
      return invalid_argument_error(str_cat(name, ":", line.number, ": more than ", kMaxLayers, " layers"));
    }
    for (size_t e = 0; e < fields.size(); ++e) {
      if (!cells.add(fields[e])) {
        return invalid_argument_error(str_cat(name, ":", line.number, ": layer ", num_layers, ", expert ", e, ": ",
                                              io_internal::quote_token(fields[e]), " is not a finite number"));
      }
    }
    ++num_layers;
  }
  OMNI_RETURN_IF_ERROR(lines.status());
  if (num_layers == 0) return invalid_argument_error(str_cat(name, ": no load rows (expected one line per layer)"));
  auto m = std::move(cells).build(static_cast<int32_t>(num_layers), static_cast<int32_t>(num_experts));
  if (!m.ok()) return m.status().with_context(name);
  return m;
}

}  // namespace

StatusOr<LoadMatrix> parse_load_csv(std::string_view text, std::string_view name) {
  if (Trace::looks_like_trace(text)) return invalid_argument_error(str_cat(name, kTraceNotLoad));
  io_internal::LineReader lines(text);
  return parse_load_lines(lines, name);
}

std::string encode_load_csv(const LoadMatrix& load) {
  std::string out = str_cat("# load [", load.num_layers(), " layers, ", load.num_experts(), " experts], ",
                            load.is_counts() ? "token counts" : "weights", "; one line per layer\n");
  for (LayerId l = 0; l < load.num_layers(); ++l) {
    for (ExpertId e = 0; e < load.num_experts(); ++e) {
      if (e) out.push_back(',');
      if (load.is_counts()) {
        out += std::to_string(load.counts_row(l)[static_cast<size_t>(e)]);
      } else {
        // A weight always carries a '.' or an exponent, so that a weights
        // matrix of whole numbers reads back as weights, not counts.
        std::string v = io_internal::format_double(load.row(l)[static_cast<size_t>(e)]);
        if (v.find_first_of(".e") == std::string::npos) v += ".0";
        out += v;
      }
    }
    out.push_back('\n');
  }
  return out;
}

namespace {

StatusOr<LoadMatrix> load_from_npy(const NpyArray& a, const std::string& path) {
  if (a.shape.size() != 2) {
    return invalid_argument_error(str_cat(path, ": a load .npy must have shape [layers, experts], got ", a.describe()));
  }
  if (a.shape[0] < 1 || a.shape[0] > kMaxLayers || a.shape[1] < 1 || a.shape[1] > kMaxExperts) {
    return invalid_argument_error(str_cat(path, ": load shape ", a.describe(), " out of range (layers 1..", kMaxLayers,
                                          ", experts 1..", kMaxExperts, ")"));
  }
  const auto L = static_cast<int32_t>(a.shape[0]);
  const auto E = static_cast<int32_t>(a.shape[1]);
  auto m = a.is_integer() ? LoadMatrix::from_counts(L, E, a.ints) : LoadMatrix::from_weights(L, E, a.floats);
  if (!m.ok()) return m.status().with_context(path);
  return m;
}

}  // namespace

StatusOr<LoadMatrix> read_load_file(const std::string& path, std::string_view selector,
                                    const Placement* placement_in_force) {
  const std::string ext = io_internal::extension_of(path);
  if (ext == ".txt") {
    if (!placement_in_force) {
      return invalid_argument_error(str_cat(path, ": an activation dump holds per-slot counts; the placement in force ",
                                            "is needed to turn them into per-expert loads"));
    }
    if (!selector.empty()) return invalid_argument_error(str_cat(path, ": a selector applies only to trace CSV files"));
    return read_activation_dump(path, *placement_in_force);
  }
  if (ext == ".npy") {
    if (!selector.empty()) return invalid_argument_error(str_cat(path, ": a selector applies only to trace CSV files"));
    OMNI_ASSIGN_OR_RETURN(NpyArray a, read_npy(path));
    return load_from_npy(a, path);
  }
  if (ext == ".csv") {
    // The header decides; only the key columns of its first line are looked at.
    OMNI_ASSIGN_OR_RETURN(std::string head, io_internal::read_file_prefix(path, 4096));
    if (Trace::looks_like_trace(head)) {
      OMNI_ASSIGN_OR_RETURN(TraceSelector sel, TraceSelector::parse(selector));
      OMNI_ASSIGN_OR_RETURN(Trace trace, Trace::read_csv(path));
      auto m = trace.select(sel);
      if (!m.ok()) return m.status().with_context(path);
      return m;
    }
    if (!selector.empty()) {
      return invalid_argument_error(str_cat(path, ": --select/a selector applies only to trace CSV files; this is a ",
                                            "plain load CSV (one line per layer), which has a single window"));
    }
    OMNI_ASSIGN_OR_RETURN(io_internal::LineReader lines, io_internal::LineReader::open(path));
    return parse_load_lines(lines, path);
  }
  return invalid_argument_error(str_cat(path, ": unknown load extension '", ext, "' (expected .npy, .csv or a .txt dump)"));
}

Status write_load_file(const std::string& path, const LoadMatrix& load) {
  const std::string ext = io_internal::extension_of(path);
  if (load.num_layers() == 0) return invalid_argument_error(str_cat(path, ": cannot write an empty load matrix"));
  if (ext == ".npy") {
    NpyArray a;
    a.shape = {load.num_layers(), load.num_experts()};
    if (load.is_counts()) {
      a.dtype = NpyDtype::kInt64;
      a.ints.assign(load.counts().begin(), load.counts().end());
    } else {
      a.dtype = NpyDtype::kFloat64;
      a.floats.assign(load.values().begin(), load.values().end());
    }
    return write_npy(path, a);
  }
  if (ext == ".csv") return io_internal::write_file(path, encode_load_csv(load));
  return invalid_argument_error(str_cat(path, ": unknown load extension '", ext, "' (expected .npy or .csv)"));
}

}  // namespace omni
