// Spec string parsing and typed parameter access.
#include "omniplacement/planner/planner_spec.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "omniplacement/core/str_cat.h"

namespace omni {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_identifier(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

}  // namespace

StatusOr<PlannerSpec> PlannerSpec::parse(std::string_view text) {
  const std::string_view original = text;
  text = trim(text);
  PlannerSpec spec;
  const size_t open = text.find('(');
  std::string_view name = trim(text.substr(0, open));
  if (!is_identifier(name)) {
    return invalid_argument_error(str_cat("planner spec '", original, "': the name '", name,
                                          "' must be lower-case letters, digits and '_' (e.g. eplb, omni(...))"));
  }
  spec.name = std::string(name);
  if (open == std::string_view::npos) return spec;
  if (text.back() != ')') {
    return invalid_argument_error(str_cat("planner spec '", original, "': missing ')' at the end"));
  }
  std::string_view body = text.substr(open + 1, text.size() - open - 2);
  if (body.find_first_of("()") != std::string_view::npos) {
    return invalid_argument_error(str_cat("planner spec '", original, "': nested parentheses are not allowed"));
  }
  if (trim(body).empty()) return spec;
  size_t pos = 0;
  while (pos <= body.size()) {
    const size_t comma = body.find(',', pos);
    const std::string_view item = trim(body.substr(pos, comma == std::string_view::npos ? body.npos : comma - pos));
    pos = comma == std::string_view::npos ? body.size() + 1 : comma + 1;
    if (item.empty()) {
      return invalid_argument_error(str_cat("planner spec '", original, "': empty parameter"));
    }
    SpecParam p;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      if (!is_identifier(item)) {
        return invalid_argument_error(str_cat("planner spec '", original, "': '", item,
                                              "' is neither key=value nor a flag word"));
      }
      p.value = std::string(item);
    } else {
      const std::string_view key = trim(item.substr(0, eq));
      const std::string_view value = trim(item.substr(eq + 1));
      if (!is_identifier(key)) {
        return invalid_argument_error(str_cat("planner spec '", original, "': bad key '", key, "'"));
      }
      if (value.empty()) {
        return invalid_argument_error(str_cat("planner spec '", original, "': key '", key, "' has no value"));
      }
      for (const SpecParam& q : spec.params) {
        if (q.key == key) {
          return invalid_argument_error(str_cat("planner spec '", original, "': key '", key, "' given twice"));
        }
      }
      p.key = std::string(key);
      p.value = std::string(value);
    }
    spec.params.push_back(std::move(p));
  }
  return spec;
}

std::string PlannerSpec::to_string() const {
  std::string s = name;
  if (params.empty()) return s;
  s += '(';
  for (size_t i = 0; i < params.size(); ++i) {
    if (i) s += ',';
    if (!params[i].key.empty()) s += params[i].key + "=";
    s += params[i].value;
  }
  s += ')';
  return s;
}

const SpecParam* SpecReader::find(std::string_view key) {
  for (size_t i = 0; i < spec_.params.size(); ++i) {
    if (spec_.params[i].key == key) {
      used_[i] = true;
      return &spec_.params[i];
    }
  }
  return nullptr;
}

Status SpecReader::bad(std::string_view key, std::string_view value, std::string_view expected) const {
  return invalid_argument_error(
      str_cat("planner '", spec_.name, "': ", key, "=", value, " is invalid: expected ", expected));
}

StatusOr<int64_t> SpecReader::get_int(std::string_view key, int64_t def, int64_t min_value, int64_t max_value) {
  const SpecParam* p = find(key);
  if (!p) return def;
  const std::string expected = str_cat("an integer in [", min_value, ", ", max_value, "]");
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(p->value.c_str(), &end, 10);
  if (errno != 0 || end == p->value.c_str() || *end != '\0' || v < min_value || v > max_value) {
    return bad(key, p->value, expected);
  }
  return static_cast<int64_t>(v);
}

StatusOr<double> SpecReader::get_double(std::string_view key, double def, double min_value, double max_value) {
  const SpecParam* p = find(key);
  if (!p) return def;
  const std::string expected = str_cat("a number in [", min_value, ", ", max_value, "]");
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(p->value.c_str(), &end);
  if (errno != 0 || end == p->value.c_str() || *end != '\0' || !std::isfinite(v) || v < min_value ||
      v > max_value) {
    return bad(key, p->value, expected);
  }
  return v;
}

StatusOr<bool> SpecReader::get_bool(std::string_view key, bool def) {
  const SpecParam* p = find(key);
  if (!p) return def;
  if (p->value == "true" || p->value == "1") return true;
  if (p->value == "false" || p->value == "0") return false;
  return bad(key, p->value, "true or false");
}

StatusOr<std::string> SpecReader::get_choice(std::string_view key, std::string_view def,
                                             const std::vector<std::string>& choices) {
  const SpecParam* p = find(key);
  if (!p) return std::string(def);
  for (const std::string& c : choices) {
    if (p->value == c) return c;
  }
  std::string list;
  for (const std::string& c : choices) list += (list.empty() ? "" : ", ") + c;
  return bad(key, p->value, str_cat("one of ", list));
}

StatusOr<std::string> SpecReader::get_flag(std::string_view def, const std::vector<std::string>& choices) {
  std::string found;
  for (size_t i = 0; i < spec_.params.size(); ++i) {
    if (!spec_.params[i].key.empty()) continue;
    for (const std::string& c : choices) {
      if (spec_.params[i].value != c) continue;
      if (!found.empty()) {
        return invalid_argument_error(
            str_cat("planner '", spec_.name, "': flags '", found, "' and '", c, "' exclude each other"));
      }
      found = c;
      used_[i] = true;
    }
  }
  return found.empty() ? std::string(def) : found;
}

Status SpecReader::finish(std::string_view valid) const {
  for (size_t i = 0; i < spec_.params.size(); ++i) {
    if (used_[i]) continue;
    const SpecParam& p = spec_.params[i];
    return invalid_argument_error(str_cat("planner '", spec_.name, "': unknown parameter '",
                                          p.key.empty() ? p.value : p.key, "'; valid: ", valid));
  }
  return ok_status();
}

}  // namespace omni
