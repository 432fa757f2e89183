#include "omniplacement/io/activation_dump.h"

#include <limits>

#include "file_util.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

bool is_blank(char c) { return c == '\t' || c == ' '; }

// One line per layer, streamed; each row is reserved to its exact number of
// counts, so the table costs 8 bytes per count and nothing more.
StatusOr<SlotCounts> parse_dump_lines(io_internal::LineReader& lines, std::string_view name) {
  SlotCounts out;
  int64_t first_blank_line = 0;  // a blank line is an error unless only blank lines follow it
  io_internal::Line line;
  while (lines.next(&line)) {
    const std::string_view s = line.text;
    size_t tokens = 0;
    for (size_t i = 0; i < s.size(); ++i) tokens += !is_blank(s[i]) && (i == 0 || is_blank(s[i - 1]));
    if (tokens == 0) {
      if (first_blank_line == 0) first_blank_line = line.number;
      continue;
    }
    if (first_blank_line != 0) {
      return invalid_argument_error(str_cat(name, ":", first_blank_line, ": layer ", out.size(),
                                            " has no counts (a blank line between layers)"));
    }
    if (out.size() >= static_cast<size_t>(kMaxLayers)) {
      return invalid_argument_error(str_cat(name, ":", line.number, ": more than ", kMaxLayers, " lines (layers)"));
    }
    if (tokens > static_cast<size_t>(kMaxSlotsPerLayer)) {
      return invalid_argument_error(str_cat(name, ":", line.number, ": ", tokens, " counts exceed ", kMaxSlotsPerLayer,
                                            " slots per layer"));
    }
    const size_t l = out.size();
    auto& row = out.emplace_back();
    row.reserve(tokens);
    size_t pos = 0;
    while (pos < s.size()) {
      while (pos < s.size() && is_blank(s[pos])) ++pos;
      if (pos == s.size()) break;
      const size_t start = pos;
      while (pos < s.size() && !is_blank(s[pos])) ++pos;
      const std::string_view tok = s.substr(start, pos - start);
      int64_t v = 0;
      if (!io_internal::parse_int64(tok, &v) || v < 0) {
        return invalid_argument_error(str_cat(name, ":", line.number, ": layer ", l, ", global slot ", row.size(),
                                              ": ", io_internal::quote_token(tok), " is not a non-negative integer count"));
      }
      row.push_back(v);
    }
  }
  OMNI_RETURN_IF_ERROR(lines.status());
  if (out.empty()) return invalid_argument_error(str_cat(name, ": empty activation dump (expected one line per layer)"));
  return out;
}

}  // namespace

StatusOr<SlotCounts> parse_activation_dump(std::string_view text, std::string_view name) {
  io_internal::LineReader lines(text);
  return parse_dump_lines(lines, name);
}

std::string encode_activation_dump(const SlotCounts& slot_counts) {
  std::string out;
  for (const auto& row : slot_counts) {
    for (size_t g = 0; g < row.size(); ++g) {
      if (g) out.push_back('\t');
      out += std::to_string(row[g]);
    }
    out.push_back('\n');
  }
  return out;
}

StatusOr<LoadMatrix> loads_from_slot_counts(const SlotCounts& slot_counts, const Placement& placement) {
  if (static_cast<int64_t>(slot_counts.size()) != placement.num_layers()) {
    return invalid_argument_error(str_cat("the dump has ", slot_counts.size(), " layers, the placement ",
                                          placement.num_layers()));
  }
  const auto E = static_cast<size_t>(placement.num_experts());
  std::vector<int64_t> counts(slot_counts.size() * E, 0);
  for (LayerId l = 0; l < placement.num_layers(); ++l) {
    const auto& row = slot_counts[static_cast<size_t>(l)];
    if (static_cast<int64_t>(row.size()) != placement.num_slots(l)) {
      return invalid_argument_error(str_cat("layer ", l, ": the dump has ", row.size(), " slot counts, the placement has ",
                                            placement.num_ranks(), " ranks x ", placement.slots_per_rank(l), " = ",
                                            placement.num_slots(l), " slots"));
    }
    for (size_t g = 0; g < row.size(); ++g) {
      const ExpertId e = placement.expert_at(l, static_cast<GlobalSlot>(g));
      const int64_t c = row[g];
      if (c < 0) return invalid_argument_error(str_cat("layer ", l, ", global slot ", g, ": negative count ", c));
      if (e == kEmptySlot) {
        if (c != 0) {
          return invalid_argument_error(str_cat("layer ", l, ", global slot ", g, " (rank ", placement.rank_of(l, static_cast<GlobalSlot>(g)),
                                                ") is empty in the placement but has ", c,
                                                " tokens: the dump was taken under another placement"));
        }
        continue;
      }
      int64_t& acc = counts[static_cast<size_t>(l) * E + static_cast<size_t>(e)];
      if (acc > std::numeric_limits<int64_t>::max() - c) {
        return out_of_range_error(str_cat("layer ", l, ", expert ", e, ": the token count overflows int64"));
      }
      acc += c;
    }
  }
  return LoadMatrix::from_counts(placement.num_layers(), placement.num_experts(), std::move(counts));
}

StatusOr<LoadMatrix> read_activation_dump(const std::string& path, const Placement& placement) {
  OMNI_ASSIGN_OR_RETURN(io_internal::LineReader lines, io_internal::LineReader::open(path));
  OMNI_ASSIGN_OR_RETURN(SlotCounts counts, parse_dump_lines(lines, path));
  auto load = loads_from_slot_counts(counts, placement);
  if (!load.ok()) return load.status().with_context(path);
  return load;
}

Status write_activation_dump(const std::string& path, const SlotCounts& slot_counts) {
  if (slot_counts.empty()) return invalid_argument_error(str_cat(path, ": cannot write a dump with no layers"));
  for (size_t l = 0; l < slot_counts.size(); ++l) {
    if (slot_counts[l].empty()) return invalid_argument_error(str_cat(path, ": layer ", l, " has no slot counts"));
    for (size_t g = 0; g < slot_counts[l].size(); ++g) {
      if (slot_counts[l][g] < 0) {
        return invalid_argument_error(str_cat(path, ": layer ", l, ", global slot ", g, ": negative count"));
      }
    }
  }
  return io_internal::write_file(path, encode_activation_dump(slot_counts));
}

}  // namespace omni
