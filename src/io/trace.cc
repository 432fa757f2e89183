#include "omniplacement/io/trace.h"

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "file_util.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

using io_internal::LoadCells;

namespace {

// Number of leading key columns of each layout.
constexpr size_t kPerDomainKeys = 3;     // model, domain, layer_index
constexpr size_t kPerIterationKeys = 4;  // row, dataset, iteration, layer_idx

std::optional<TraceLayout> layout_of_header(const std::vector<std::string_view>& f) {
  if (f.size() > kPerDomainKeys && f[0] == "model" && f[1] == "domain" && f[2] == "layer_index") {
    return TraceLayout::kPerDomain;
  }
  if (f.size() > kPerIterationKeys && f[1] == "dataset" && f[2] == "iteration" && f[3] == "layer_idx") {
    return TraceLayout::kPerIteration;
  }
  return std::nullopt;
}

std::string_view first_content_line(std::string_view text) {
  io_internal::LineReader lines(text);
  io_internal::Line line;
  while (lines.next(&line)) {
    const std::string_view t = io_internal::trim(line.text);
    if (!t.empty()) return t;
  }
  return {};
}

std::string join(const std::set<std::string>& values) {
  std::string s;
  for (const auto& v : values) s += str_cat(s.empty() ? "" : ", ", v);
  return s;
}

}  // namespace

std::string TraceWindow::label() const {
  if (iteration >= 0) return str_cat(group, "#", iteration);
  return str_cat(model, "/", group);
}

StatusOr<TraceSelector> TraceSelector::parse(std::string_view spec) {
  TraceSelector sel;
  spec = io_internal::trim(spec);
  if (spec.empty()) return sel;
  for (std::string_view item : io_internal::split_csv(spec)) {
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return invalid_argument_error(str_cat("trace selector item ", io_internal::quote_token(item),
                                            " is not key=value (keys: model, domain, dataset, iteration)"));
    }
    const std::string_view key = io_internal::trim(item.substr(0, eq));
    const std::string_view value = io_internal::trim(item.substr(eq + 1));
    if (value.empty()) return invalid_argument_error(str_cat("trace selector key '", key, "' has an empty value"));
    if (key == "model") {
      sel.model = value;
    } else if (key == "domain") {
      sel.domain = value;
    } else if (key == "dataset") {
      sel.dataset = value;
    } else if (key == "iteration") {
      int64_t it = 0;
      if (!io_internal::parse_int64(value, &it) || it < 0 || it > kMaxTraceIteration) {
        return invalid_argument_error(str_cat("trace selector: iteration ", io_internal::quote_token(value),
                                              " is not a non-negative integer"));
      }
      sel.iteration = static_cast<int32_t>(it);
    } else {
      return invalid_argument_error(str_cat("trace selector: unknown key ", io_internal::quote_token(key),
                                            " (keys: model, domain, dataset, iteration)"));
    }
  }
  return sel;
}

std::string TraceSelector::to_string() const {
  std::string s;
  auto add = [&s](const char* k, const std::string& v) {
    if (!v.empty()) s += str_cat(s.empty() ? "" : ",", k, "=", v);
  };
  add("model", model);
  add("domain", domain);
  add("dataset", dataset);
  if (iteration >= 0) add("iteration", std::to_string(iteration));
  return s;
}

bool Trace::looks_like_trace(std::string_view text) {
  const std::string_view first = first_content_line(text);
  // Only the key columns matter; avoid splitting a very long line.
  return layout_of_header(io_internal::split_csv(first.substr(0, 64))).has_value();
}

namespace {

// One window while the file is read: its cells row after row in file order
// (num_experts per row), and for each row its layer and line. Rows are put in
// layer order only at the end, so memory grows with the rows the file holds,
// never with the layer numbers it names.
struct PendingWindow {
  TraceWindow window;
  LoadCells cells;
  struct Row {
    int32_t layer;
    int64_t line;
  };
  std::vector<Row> rows;
};

}  // namespace

struct TraceParser {
  static StatusOr<Trace> parse(io_internal::LineReader& lines, std::string_view name);
};

StatusOr<Trace> TraceParser::parse(io_internal::LineReader& lines, std::string_view name) {
  io_internal::Line line;
  bool have_header = false;
  while (lines.next(&line)) {
    if (!io_internal::trim(line.text).empty()) {
      have_header = true;
      break;
    }
  }
  OMNI_RETURN_IF_ERROR(lines.status());
  if (!have_header) return invalid_argument_error(str_cat(name, ": empty trace file"));
  const auto header = io_internal::split_csv(line.text);
  const auto layout = layout_of_header(header);
  if (!layout) {
    return invalid_argument_error(str_cat(name, ":", line.number, ": not a trace header (expected ",
                                          "'model,domain,layer_index,0,1,...' or ',dataset,iteration,layer_idx,0,1,...')"));
  }
  const size_t keys = *layout == TraceLayout::kPerDomain ? kPerDomainKeys : kPerIterationKeys;
  const size_t num_experts = header.size() - keys;
  const size_t num_fields = header.size();
  if (num_experts > static_cast<size_t>(kMaxExperts)) {
    return invalid_argument_error(str_cat(name, ":", line.number, ": ", num_experts, " expert columns exceed ",
                                          kMaxExperts));
  }
  for (size_t e = 0; e < num_experts; ++e) {
    int64_t v = -1;
    if (!io_internal::parse_int64(header[keys + e], &v) || v != static_cast<int64_t>(e)) {
      return invalid_argument_error(str_cat(name, ":", line.number, ": expert column ", e, " is named ",
                                            io_internal::quote_token(header[keys + e]), ", expected '", e, "'"));
    }
  }
  // A deque: windows never move, so the index can key on views of their names.
  std::deque<PendingWindow> pending;
  std::map<std::tuple<std::string_view, std::string_view, int32_t>, size_t> index;
  int64_t num_layers = 0;
  while (lines.next(&line)) {
    if (io_internal::trim(line.text).empty()) continue;
    const auto f = io_internal::split_csv(line.text);
    if (f.size() != num_fields) {
      return invalid_argument_error(str_cat(name, ":", line.number, ": ", f.size(), " fields, the header has ",
                                            num_fields, " (", keys, " keys and ", num_experts, " experts)"));
    }
    std::string_view model, group;
    int64_t iteration = -1, layer = -1;
    auto int_field = [&](size_t k, int64_t* out, const char* what) -> Status {
      if (!io_internal::parse_int64(f[k], out) || *out < 0) {
        return invalid_argument_error(str_cat(name, ":", line.number, ": ", what, " ", io_internal::quote_token(f[k]),
                                              " is not a non-negative integer"));
      }
      return ok_status();
    };
    if (*layout == TraceLayout::kPerDomain) {
      model = f[0];
      group = f[1];
      OMNI_RETURN_IF_ERROR(int_field(2, &layer, "layer_index"));
    } else {
      int64_t row = 0;
      OMNI_RETURN_IF_ERROR(int_field(0, &row, "row number"));
      group = f[1];
      OMNI_RETURN_IF_ERROR(int_field(2, &iteration, "iteration"));
      OMNI_RETURN_IF_ERROR(int_field(3, &layer, "layer_idx"));
      if (iteration > kMaxTraceIteration) {
        return invalid_argument_error(str_cat(name, ":", line.number, ": iteration ", iteration, " exceeds ",
                                              kMaxTraceIteration));
      }
    }
    if (group.empty()) return invalid_argument_error(str_cat(name, ":", line.number, ": empty domain or dataset name"));
    if (model.size() > kMaxTraceNameBytes || group.size() > kMaxTraceNameBytes) {
      return invalid_argument_error(str_cat(name, ":", line.number, ": a model, domain or dataset name longer than ",
                                            kMaxTraceNameBytes, " bytes"));
    }
    if (layer >= kMaxLayers) {
      return invalid_argument_error(str_cat(name, ":", line.number, ": layer ", layer, " exceeds ", kMaxLayers - 1));
    }
    auto found = index.find(std::make_tuple(model, group, static_cast<int32_t>(iteration)));
    if (found == index.end()) {
      if (pending.size() >= static_cast<size_t>(kMaxTraceWindows)) {
        return invalid_argument_error(str_cat(name, ":", line.number, ": more than ", kMaxTraceWindows,
                                              " windows (distinct model/domain or dataset/iteration keys)"));
      }
      PendingWindow& p = pending.emplace_back();
      p.window.model = model;
      p.window.group = group;
      p.window.iteration = static_cast<int32_t>(iteration);
      found = index.emplace(std::make_tuple(std::string_view(p.window.model), std::string_view(p.window.group),
                                            p.window.iteration),
                            pending.size() - 1)
                  .first;
    }
    PendingWindow& p = pending[found->second];
    if (p.rows.size() >= static_cast<size_t>(kMaxLayers)) {
      return invalid_argument_error(str_cat(name, ":", line.number, ": window ", p.window.label(), " has more than ",
                                            kMaxLayers, " rows, so some layer repeats"));
    }
    for (size_t e = 0; e < num_experts; ++e) {
      if (!p.cells.add(f[keys + e])) {
        return invalid_argument_error(str_cat(name, ":", line.number, ": layer ", layer, ", expert ", e, ": ",
                                              io_internal::quote_token(f[keys + e]), " is not a finite number"));
      }
    }
    p.rows.push_back({static_cast<int32_t>(layer), line.number});
    num_layers = std::max(num_layers, layer + 1);
  }
  OMNI_RETURN_IF_ERROR(lines.status());
  if (pending.empty()) return invalid_argument_error(str_cat(name, ": the trace has a header but no rows"));
  if (num_experts == 0) return invalid_argument_error(str_cat(name, ": the trace has no expert columns"));
  Trace trace;
  trace.layout_ = *layout;
  trace.num_layers_ = static_cast<int32_t>(num_layers);
  trace.num_experts_ = static_cast<int32_t>(num_experts);
  trace.windows_.reserve(pending.size());
  index.clear();  // it points into the windows' names, which move out below
  for (; !pending.empty(); pending.pop_front()) {
    PendingWindow& p = pending.front();
    // Rows in layer order; every layer exactly once.
    std::vector<size_t> order(p.rows.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p.rows[a].layer < p.rows[b].layer; });
    for (size_t k = 1; k < order.size(); ++k) {
      const auto& prev = p.rows[order[k - 1]];
      const auto& cur = p.rows[order[k]];
      if (prev.layer == cur.layer) {
        return invalid_argument_error(str_cat(name, ":", cur.line, ": window ", p.window.label(), " has layer ",
                                              cur.layer, " twice (first at line ", prev.line, ")"));
      }
    }
    for (int64_t l = 0; l < num_layers; ++l) {
      if (static_cast<size_t>(l) >= order.size() || p.rows[order[static_cast<size_t>(l)]].layer != l) {
        return invalid_argument_error(str_cat(name, ": window ", p.window.label(), " has no row for layer ", l,
                                              " (the trace has ", num_layers, " layers: 0..", num_layers - 1, ")"));
      }
    }
    p.rows = {};
    auto m = std::move(p.cells).build(trace.num_layers_, trace.num_experts_, &order);
    if (!m.ok()) return m.status().with_context(str_cat(name, ": window ", p.window.label()));
    p.window.load = std::move(m).value();
    trace.windows_.push_back(std::move(p.window));
  }
  return trace;
}

StatusOr<Trace> Trace::parse_csv(std::string_view text, std::string_view name) {
  io_internal::LineReader lines(text);
  return TraceParser::parse(lines, name);
}

StatusOr<Trace> Trace::read_csv(const std::string& path) {
  OMNI_ASSIGN_OR_RETURN(io_internal::LineReader lines, io_internal::LineReader::open(path));
  return TraceParser::parse(lines, path);
}

StatusOr<LoadMatrix> Trace::select(const TraceSelector& sel) const {
  if (layout_ == TraceLayout::kPerDomain && (!sel.dataset.empty() || sel.iteration >= 0)) {
    return invalid_argument_error("this trace is per domain: select with model= and domain=, not dataset/iteration");
  }
  if (layout_ == TraceLayout::kPerIteration && (!sel.model.empty() || !sel.domain.empty())) {
    return invalid_argument_error("this trace is per iteration: select with dataset= and iteration=, not model/domain");
  }
  const TraceWindow* found = nullptr;
  int matches = 0;
  for (const auto& w : windows_) {
    const bool ok = (sel.model.empty() || w.model == sel.model) && (sel.domain.empty() || w.group == sel.domain) &&
                    (sel.dataset.empty() || w.group == sel.dataset) &&
                    (sel.iteration < 0 || w.iteration == sel.iteration);
    if (ok) {
      ++matches;
      found = &w;
    }
  }
  if (matches == 1) return found->load;
  std::set<std::string> models, groups;
  std::set<int32_t> iterations;
  for (const auto& w : windows_) {
    if (!w.model.empty()) models.insert(w.model);
    groups.insert(w.group);
    if (w.iteration >= 0) iterations.insert(w.iteration);
  }
  const std::string available =
      layout_ == TraceLayout::kPerDomain
          ? str_cat("models: ", join(models), "; domains: ", join(groups))
          : str_cat("datasets: ", join(groups), "; iterations: ", *iterations.begin(), "..", *iterations.rbegin());
  return invalid_argument_error(str_cat("trace selector \"", sel.to_string(), "\" matches ", matches,
                                        " windows; it must match exactly one (", available, ")"));
}

StatusOr<std::vector<TraceWindow>> Trace::windows(const std::vector<std::string>& datasets, int32_t first_iteration,
                                                  int32_t last_iteration) const {
  if (layout_ != TraceLayout::kPerIteration) {
    return invalid_argument_error("windows(datasets): the trace is per domain, not per iteration");
  }
  if (first_iteration < 0 || (last_iteration >= 0 && last_iteration < first_iteration)) {
    return invalid_argument_error(str_cat("windows(datasets): bad iteration range ", first_iteration, "..", last_iteration));
  }
  std::vector<TraceWindow> out;
  for (const std::string& d : datasets) {
    std::map<int32_t, const TraceWindow*> by_iteration;
    for (const auto& w : windows_) {
      if (w.group == d) by_iteration[w.iteration] = &w;
    }
    if (by_iteration.empty()) {
      std::set<std::string> groups;
      for (const auto& w : windows_) groups.insert(w.group);
      return not_found_error(str_cat("dataset '", d, "' is not in the trace (datasets: ", join(groups), ")"));
    }
    const int32_t last = last_iteration >= 0 ? last_iteration : by_iteration.rbegin()->first;
    for (int32_t it = first_iteration; it <= last; ++it) {
      auto found = by_iteration.find(it);
      if (found == by_iteration.end()) {
        return not_found_error(str_cat("dataset '", d, "' has no iteration ", it));
      }
      out.push_back(*found->second);
    }
  }
  return out;
}

}  // namespace omni
