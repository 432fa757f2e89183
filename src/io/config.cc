#include "omniplacement/io/config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <functional>

#include "file_util.h"
#include "omniplacement/core/ids.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

// yaml-cpp parses recursively; configs are flat maps, so anything nested
// deeper than this is refused before yaml-cpp sees it (keeps hostile input
// from exhausting the stack).
constexpr int kMaxNesting = 16;
constexpr size_t kMaxConfigBytes = size_t{1} << 20;

// Largest nesting of flow collections ([ {) and block sequences / indentation.
// Quoted scalars and comments are skipped; a comment ('#' at the start of a
// line or after a space or tab) ends at the end of its line.
Status check_nesting(std::string_view text, std::string_view name) {
  int depth = 0;
  int64_t line = 1;
  char quote = 0;        // '"' or '\'' inside a quoted scalar (which may span lines)
  bool comment = false;  // inside a comment, until the end of the line
  bool escaped = false;  // after a backslash inside a double-quoted scalar
  size_t column = 0;
  bool leading = true;
  int dashes = 0;
  char prev = '\n';
  for (char c : text) {
    const char before = prev;
    prev = c;
    if (c == '\n') {
      ++line;
      column = 0;
      leading = true;
      dashes = 0;
      comment = false;
      continue;
    }
    ++column;
    if (comment) continue;
    if (leading && quote == 0) {
      if (c == ' ' || c == '\t') {
        if (column > 4 * kMaxNesting) {
          return invalid_argument_error(str_cat(name, ":", line, ": indentation deeper than ", 4 * kMaxNesting,
                                                " columns (configuration keys are a flat map)"));
        }
        continue;
      }
      if (c == '-' || c == '?') {
        if (++dashes > kMaxNesting) {
          return invalid_argument_error(str_cat(name, ":", line, ": more than ", kMaxNesting, " nested sequences"));
        }
        continue;
      }
      leading = false;
    }
    if (quote != 0) {
      if (escaped) {
        escaped = false;
      } else if (quote == '"' && c == '\\') {
        escaped = true;  // \" does not end a double-quoted scalar
      } else if (c == quote) {
        quote = 0;
      }
      continue;
    }
    if ((c == '"' || c == '\'') && std::string_view(" \t\r\n[{,:-?").find(before) != std::string_view::npos) {
      quote = c;  // a quote opens a scalar only where a scalar can start (not in "it's")
    } else if (c == '#' && (before == ' ' || before == '\t' || before == '\n' || before == '\r')) {
      comment = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxNesting) {
        return invalid_argument_error(str_cat(name, ":", line, ": more than ", kMaxNesting,
                                              " nested collections (configuration keys are a flat map)"));
      }
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;
    }
  }
  return ok_status();
}

// One key: how to read it from a YAML scalar into a Config and how to write it.
struct KeySpec {
  const char* key;
  std::function<Status(const YAML::Node&, Config*, const std::string& where)> read;
  std::function<std::string(const Config&)> write;
};

std::string where_of(std::string_view name, const YAML::Node& node) {
  return str_cat(name, ":", node.Mark().line + 1);
}

Status scalar_or_error(const YAML::Node& v, const std::string& where, const char* key) {
  if (!v.IsScalar()) return invalid_argument_error(str_cat(where, ": '", key, "' must be a single value"));
  return ok_status();
}

template <typename T>
KeySpec int_key(const char* key, T Config::*field, int64_t lo, int64_t hi) {
  return {key,
          [key, field, lo, hi](const YAML::Node& v, Config* c, const std::string& where) -> Status {
            OMNI_RETURN_IF_ERROR(scalar_or_error(v, where, key));
            int64_t x = 0;
            if (!io_internal::parse_int64(v.Scalar(), &x)) {
              return invalid_argument_error(str_cat(where, ": '", key, "' must be an integer, got ",
                                                    io_internal::quote_token(v.Scalar())));
            }
            if (x < lo || x > hi) {
              return invalid_argument_error(str_cat(where, ": '", key, "' = ", x, " is out of range [", lo, ", ", hi, "]"));
            }
            c->*field = static_cast<T>(x);
            return ok_status();
          },
          [field](const Config& c) { return std::to_string(c.*field); }};
}

KeySpec double_key(const char* key, double Config::*field, double lo, double hi_exclusive) {
  return {key,
          [key, field, lo, hi_exclusive](const YAML::Node& v, Config* c, const std::string& where) -> Status {
            OMNI_RETURN_IF_ERROR(scalar_or_error(v, where, key));
            double x = 0;
            if (!io_internal::parse_double(v.Scalar(), &x)) {
              return invalid_argument_error(str_cat(where, ": '", key, "' must be a number, got ",
                                                    io_internal::quote_token(v.Scalar())));
            }
            if (!(x >= lo && x < hi_exclusive)) {
              return invalid_argument_error(
                  str_cat(where, ": '", key, "' = ", x, " is out of range [", lo, ", ", hi_exclusive, ")"));
            }
            c->*field = x;
            return ok_status();
          },
          [field](const Config& c) { return io_internal::format_double(c.*field); }};
}

KeySpec bool_key(const char* key, bool Config::*field) {
  return {key,
          [key, field](const YAML::Node& v, Config* c, const std::string& where) -> Status {
            OMNI_RETURN_IF_ERROR(scalar_or_error(v, where, key));
            const std::string& s = v.Scalar();
            if (s == "true" || s == "True" || s == "TRUE" || s == "yes" || s == "on") {
              c->*field = true;
            } else if (s == "false" || s == "False" || s == "FALSE" || s == "no" || s == "off") {
              c->*field = false;
            } else {
              return invalid_argument_error(
                  str_cat(where, ": '", key, "' must be true or false, got ", io_internal::quote_token(s)));
            }
            return ok_status();
          },
          [field](const Config& c) { return std::string(c.*field ? "true" : "false"); }};
}

// Strings are written double-quoted with YAML escapes for '"' and '\'.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
      // Control characters would be folded or refused inside a YAML scalar: escape them.
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[(static_cast<unsigned char>(ch) >> 4) & 0xf]);
      out.push_back(kHex[static_cast<unsigned char>(ch) & 0xf]);
      continue;
    }
    out.push_back(ch);
  }
  return out + "\"";
}

KeySpec string_key(const char* key, std::string Config::*field) {
  return {key,
          [key, field](const YAML::Node& v, Config* c, const std::string& where) -> Status {
            if (v.IsNull()) {
              (c->*field).clear();
              return ok_status();
            }
            OMNI_RETURN_IF_ERROR(scalar_or_error(v, where, key));
            c->*field = v.Scalar();
            return ok_status();
          },
          [field](const Config& c) { return quoted(c.*field); }};
}

const std::vector<KeySpec>& key_specs() {
  static const std::vector<KeySpec> specs = {
      string_key("pattern_path", &Config::pattern_path),
      int_key("max_moe_layer_num", &Config::max_moe_layer_num, 0, kMaxLayers),
      bool_key("enable_dynamic", &Config::enable_dynamic),
      int_key("max_redundant_per_expert", &Config::max_redundant_per_expert, 0, kMaxRanks * int64_t{kMaxSlotsPerRank}),
      int_key("max_redundant_per_rank", &Config::max_redundant_per_rank, 0, kMaxSlotsPerRank),
      bool_key("enable_dump", &Config::enable_dump),
      string_key("dump_dir", &Config::dump_dir),
      string_key("planner", &Config::planner),
      int_key("replan_interval_steps", &Config::replan_interval_steps, 1, int64_t{1} << 40),
      int_key("window_steps", &Config::window_steps, 1, int64_t{1} << 40),
      double_key("ema_decay", &Config::ema_decay, 0.0, 1.0),
      int_key("shift_check_steps", &Config::shift_check_steps, -1, int64_t{1} << 40),
      double_key("shift_threshold", &Config::shift_threshold, 0.0, 1e6),
      int_key("ranks_per_host", &Config::ranks_per_host, 0, kMaxRanks),
      double_key("min_gain", &Config::min_gain, 0.0, 1.0),
      int_key("max_moves_per_rank", &Config::max_moves_per_rank, -1, kMaxSlotsPerRank),
      int_key("layers_per_commit", &Config::layers_per_commit, 0, kMaxLayers),
      int_key("staging_bytes_per_rank", &Config::staging_bytes_per_rank, 0, int64_t{1} << 50),
      int_key("heartbeat_timeout_ms", &Config::heartbeat_timeout_ms, 1, int64_t{1} << 40),
  };
  return specs;
}

std::string key_list() {
  std::string s;
  for (const auto& k : key_specs()) s += str_cat(s.empty() ? "" : ", ", k.key);
  return s;
}

StatusOr<Config> parse_node(const YAML::Node& root, std::string_view name, const ConfigOptions& options) {
  Config c;
  if (!root || root.IsNull()) return c;  // an empty file: all defaults
  if (!root.IsMap()) {
    return invalid_argument_error(str_cat(where_of(name, root), ": the configuration must be a map of key: value"));
  }
  std::vector<std::string> seen;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const YAML::Node k = it->first;  // a copy: the iterator yields a temporary pair
    const std::string where = where_of(name, k);
    if (!k.IsScalar()) return invalid_argument_error(str_cat(where, ": keys must be plain names"));
    const std::string key = k.Scalar();
    const KeySpec* spec = nullptr;
    for (const auto& s : key_specs()) {
      if (key == s.key) spec = &s;
    }
    if (!spec) {
      const std::string msg = str_cat(where, ": unknown key ", io_internal::quote_token(key), " (valid keys: ",
                                      key_list(), ")");
      if (!options.allow_unknown_keys) return invalid_argument_error(msg);
      c.warnings.push_back(msg);
      continue;
    }
    for (const auto& s : seen) {
      if (s == key) return invalid_argument_error(str_cat(where, ": key '", key, "' appears twice"));
    }
    seen.push_back(key);
    const YAML::Node value = it->second;
    OMNI_RETURN_IF_ERROR(spec->read(value, &c, where));
  }
  return c;
}

}  // namespace

const std::vector<std::string>& config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& s : key_specs()) k.emplace_back(s.key);
    return k;
  }();
  return keys;
}

StatusOr<Config> parse_config(std::string_view yaml, std::string_view name, const ConfigOptions& options) {
  if (yaml.size() > kMaxConfigBytes) {
    return invalid_argument_error(str_cat(name, ": configuration of ", yaml.size(), " bytes exceeds ", kMaxConfigBytes));
  }
  OMNI_RETURN_IF_ERROR(check_nesting(yaml, name));
  try {
    const YAML::Node root = YAML::Load(std::string(yaml));
    return parse_node(root, name, options);
  } catch (const YAML::Exception& e) {
    return invalid_argument_error(str_cat(name, ":", e.mark.line + 1, ": not valid YAML: ", e.msg));
  } catch (const std::exception& e) {
    return invalid_argument_error(str_cat(name, ": not valid YAML: ", e.what()));
  }
}

StatusOr<Config> read_config(const std::string& path, const ConfigOptions& options) {
  OMNI_ASSIGN_OR_RETURN(std::string text, io_internal::read_file(path));
  OMNI_ASSIGN_OR_RETURN(Config c, parse_config(text, path, options));
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  for (std::string* p : {&c.pattern_path, &c.dump_dir}) {
    if (!p->empty() && std::filesystem::path(*p).is_relative()) *p = (dir / *p).lexically_normal().string();
  }
  return c;
}

std::string encode_config(const Config& c) {
  std::string out = "# OmniPlacement configuration (docs/formats.md, \"Configuration\")\n";
  for (const auto& s : key_specs()) out += str_cat(s.key, ": ", s.write(c), "\n");
  return out;
}

}  // namespace omni
