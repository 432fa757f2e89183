#include "json_reader.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "file_util.h"
#include "omniplacement/core/str_cat.h"

namespace omni::io_internal {

NumberArray::View NumberArray::root() const {
  if (!finished_ || starts_.empty() || starts_[0].size() < 2) return View(this, 0, 0, 0);
  return View(this, 0, starts_[0][0], starts_[0][1]);
}

NumberArray::View NumberArray::View::array(size_t j) const {
  OMNI_CHECK_MSG(level_ + 1 < a_->depth_ && j < size(), "NumberArray::View::array out of range");
  const auto& s = a_->starts_[static_cast<size_t>(level_ + 1)];
  const size_t i = begin_ + j;
  return View(a_, level_ + 1, s[i], s[i + 1]);
}

JsonNumber NumberArray::View::number(size_t j) const {
  OMNI_CHECK_MSG(level_ + 1 == a_->depth_ && j < size(), "NumberArray::View::number out of range");
  const size_t i = begin_ + j;
  return {a_->values_[i], a_->integer_[i]};
}

void NumberArray::open(int level) {
  const auto k = static_cast<size_t>(level);
  starts_[k].push_back(k + 1 < starts_.size() ? starts_[k + 1].size() : values_.size());
}

void NumberArray::add(JsonNumber n) {
  values_.push_back(n.value);
  integer_.push_back(n.integer);
}

void NumberArray::finish() {
  // The end entry of each level: how many children its arrays have in all.
  std::vector<uint64_t> ends(starts_.size());
  for (size_t k = 0; k < starts_.size(); ++k) ends[k] = k + 1 < starts_.size() ? starts_[k + 1].size() : values_.size();
  for (size_t k = 0; k < starts_.size(); ++k) starts_[k].push_back(ends[k]);
  finished_ = true;
}

JsonField JsonField::numbers(int depth) {
  JsonField f(Want::kNumbers);
  f.depth_ = depth;
  f.numbers_ = NumberArray(depth);
  return f;
}

JsonField JsonField::object(std::vector<std::pair<std::string, JsonField>> members, bool allow_unknown_keys) {
  JsonField f(Want::kObject);
  f.members_ = std::move(members);
  f.allow_unknown_keys_ = allow_unknown_keys;
  return f;
}

bool JsonField::has_wanted_type() const {
  if (!type_) return false;
  const std::string_view t = type_;
  switch (want_) {
    case Want::kString: return t == "string";
    case Want::kNumber: return t == "number";
    case Want::kNumbers: return t == "array";
    case Want::kObject: return t == "object";
  }
  return false;
}

const JsonField* JsonField::member(std::string_view key) const {
  for (const auto& [k, f] : members_)
    if (k == key) return &f;
  return nullptr;
}

JsonField* JsonField::find_member(std::string_view key) {
  for (auto& [k, f] : members_)
    if (k == key) return &f;
  return nullptr;
}

std::string JsonField::key_list() const {
  std::string s;
  for (const auto& m : members_) s += str_cat(s.empty() ? "" : ", ", m.first);
  return s;
}

// The SAX handler behind read_json (nlohmann's SAX interface, duck-typed).
class JsonFieldReader {
 public:
  JsonFieldReader(std::string_view name, JsonField* root) : name_(name), root_(root) {}

  const Status& error() const { return error_; }

  bool null() { return scalar("null"); }
  bool boolean(bool) { return scalar("boolean"); }
  bool number_integer(int64_t v) {
    return number_int(v < -kMaxJsonInteger || v > kMaxJsonInteger, static_cast<double>(v), std::to_string(v));
  }
  bool number_unsigned(uint64_t v) {
    return number_int(v > static_cast<uint64_t>(kMaxJsonInteger), static_cast<double>(v), std::to_string(v));
  }
  bool number_float(double v, const std::string& literal) {
    // nlohmann reads an integer literal beyond 64 bits as a double.
    if (literal.find_first_of(".eE") == std::string::npos) return number_int(true, v, literal);
    if (!std::isfinite(v) && kept()) {
      return fail(str_cat(path(), " = ", quote_token(literal), " is beyond the range of a double"));
    }
    return number({v, false});
  }
  bool string(std::string& s) {
    if (!frames_.empty() && frames_.back().kind == Frame::kNumbers) return wrong_in_numbers("a string");
    JsonField* f = target();
    if (f && f->want_ == JsonField::Want::kString) f->text_ = std::move(s);
    return scalar("string");
  }
  bool binary(nlohmann::json::binary_t&) { return fail(str_cat(path(), ": binary values are not JSON")); }

  bool start_object(size_t) {
    if (!root_is(JsonField::Want::kObject)) return wrong_root("object");
    if (!enter()) return false;
    if (!frames_.empty() && frames_.back().kind == Frame::kNumbers) return wrong_in_numbers("an object");
    JsonField* f = target();
    if (f) f->type_ = "object";
    frames_.emplace_back(f && f->want_ == JsonField::Want::kObject ? Frame::kObject : Frame::kSkip, f, 0, false);
    return true;
  }
  bool key(std::string& k) {
    Frame& top = frames_.back();
    top.key = std::move(k);
    top.member = nullptr;
    if (top.kind != Frame::kObject) return true;
    JsonField* m = top.field->find_member(top.key);
    if (!m) {
      if (top.field->allow_unknown_keys_) return true;
      return fail(str_cat("unknown key \"", path(), "\" (valid: ", top.field->key_list(), ")"));
    }
    if (m->present()) return fail(str_cat("key \"", path(), "\" appears twice (each key may be given once)"));
    top.member = m;
    return true;
  }
  bool end_object() { return leave(); }

  bool start_array(size_t) {
    if (!root_is(JsonField::Want::kNumbers)) return wrong_root("array");
    if (!enter()) return false;
    if (!frames_.empty() && frames_.back().kind == Frame::kNumbers) {
      Frame& top = frames_.back();
      if (top.level + 1 >= top.field->depth_) return wrong_in_numbers("an array");
      top.field->numbers_.open(top.level + 1);
      frames_.emplace_back(Frame::kNumbers, top.field, top.level + 1, true);
      return true;
    }
    JsonField* f = target();
    if (f) f->type_ = "array";
    if (f && f->want_ == JsonField::Want::kNumbers) {
      f->numbers_ = NumberArray(f->depth_);
      f->numbers_.open(0);
      frames_.emplace_back(Frame::kNumbers, f, 0, true);
    } else {
      frames_.emplace_back(Frame::kSkip, nullptr, 0, true);
    }
    return true;
  }
  bool end_array() { return leave(); }

  bool parse_error(size_t position, const std::string&, const nlohmann::json::exception& e) {
    error_ = invalid_argument_error(str_cat(name_, ": not valid JSON (byte ", position, "): ", printable(e.what())));
    return false;
  }

 private:
  struct Frame {
    enum Kind { kObject, kNumbers, kSkip };
    Frame(Kind k, JsonField* f, int lvl, bool array) : kind(k), field(f), level(lvl), is_array(array) {}
    Kind kind;
    JsonField* field;  // kObject: the object; kNumbers: the array's field; kSkip: nullptr
    int level;         // kNumbers: nesting level within the field's arrays
    bool is_array;
    size_t index = 0;  // arrays: elements before the current one
    std::string key;   // objects: the current key
    JsonField* member = nullptr;  // objects: the field of the current key (nullptr: unknown, skipped)
  };

  // The JSON path of the current value, e.g. "phy2log[3][17]" or "topology.host_of_rank".
  std::string path() const {
    std::string p;
    for (const Frame& f : frames_) {
      if (f.is_array) {
        p += str_cat("[", f.index, "]");
      } else if (!f.key.empty() || f.member) {
        p += str_cat(p.empty() ? "" : ".", f.key);
      }
    }
    if (p.size() > 120) p = str_cat(p.substr(0, 100), "...(", frames_.size(), " levels)");
    return p.empty() ? "<top level>" : p;
  }

  bool fail(const std::string& what) {
    error_ = invalid_argument_error(str_cat(name_, ": ", what));
    return false;
  }

  // A top-level value of the wrong type ends the reading at once.
  bool wrong_root(const char* type) {
    const char* want = root_->want_ == JsonField::Want::kObject    ? "a JSON object"
                       : root_->want_ == JsonField::Want::kNumbers ? "a JSON array"
                       : root_->want_ == JsonField::Want::kString  ? "a JSON string"
                                                                   : "a JSON number";
    return fail(str_cat("the top level must be ", want, ", got ", type));
  }
  bool root_is(JsonField::Want want) const { return !frames_.empty() || root_->want_ == want; }

  // The field the next value fills (nullptr: skipped).
  JsonField* target() {
    if (frames_.empty()) return root_done_ ? nullptr : root_;
    const Frame& top = frames_.back();
    return top.kind == Frame::kObject ? top.member : nullptr;
  }

  // A value ended: the enclosing array moves to its next element.
  void value_done() {
    if (frames_.empty()) {
      root_done_ = true;
    } else if (frames_.back().is_array) {
      ++frames_.back().index;
    }
  }

  bool enter() {
    if (static_cast<int>(frames_.size()) >= kMaxJsonDepth) {
      return fail(str_cat(path(), ": nesting deeper than ", kMaxJsonDepth, " levels (the format needs at most 4)"));
    }
    return true;
  }

  bool leave() {
    const Frame f = std::move(frames_.back());
    frames_.pop_back();
    if (f.kind == Frame::kNumbers && f.level == 0) f.field->numbers_.finish();
    value_done();
    return true;
  }

  bool wrong_in_numbers(const char* what) {
    const Frame& top = frames_.back();
    const bool want_numbers = top.level + 1 == top.field->depth_;
    return fail(str_cat(path(), " must be ", want_numbers ? "a number" : "an array", ", got ", what));
  }

  bool scalar(const char* type) {
    if (frames_.empty() && (root_->want_ == JsonField::Want::kObject || root_->want_ == JsonField::Want::kNumbers)) {
      return wrong_root(type);
    }
    if (!frames_.empty() && frames_.back().kind == Frame::kNumbers) {
      return wrong_in_numbers(std::string_view(type) == "null" ? "null" : "a boolean");
    }
    if (JsonField* f = target()) f->type_ = type;
    value_done();
    return true;
  }

  // Whether the value now arriving is kept (in an array of numbers or a known field).
  bool kept() { return (!frames_.empty() && frames_.back().kind == Frame::kNumbers) || target() != nullptr; }

  // An integer literal; too_large: beyond 2^53 in magnitude (decided before any rounding to double).
  bool number_int(bool too_large, double v, const std::string& literal) {
    if (too_large && kept()) {
      return fail(str_cat(path(), " = ", quote_token(literal), " is too large: no integer of this format exceeds 2^53 = ",
                          kMaxJsonInteger, " in magnitude"));
    }
    return number({v, true});
  }

  bool number(JsonNumber n) {
    if (frames_.empty() && (root_->want_ == JsonField::Want::kObject || root_->want_ == JsonField::Want::kNumbers)) {
      return wrong_root("number");
    }
    if (!frames_.empty() && frames_.back().kind == Frame::kNumbers) {
      Frame& top = frames_.back();
      if (top.level + 1 != top.field->depth_) return wrong_in_numbers("a number");
      top.field->numbers_.add(n);
      value_done();
      return true;
    }
    if (JsonField* f = target()) {
      f->type_ = "number";
      f->number_ = n;
    }
    value_done();
    return true;
  }

  std::string_view name_;
  JsonField* root_;
  bool root_done_ = false;
  std::vector<Frame> frames_;
  Status error_;
};

Status read_json(std::string_view text, std::string_view name, JsonField* root) {
  JsonFieldReader reader(name, root);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(text.begin(), text.end(), &reader);
  } catch (const std::exception& e) {
    // nlohmann reports through parse_error(); this is a last line of defence.
    return invalid_argument_error(str_cat(name, ": not valid JSON: ", e.what()));
  }
  if (!ok) {
    if (!reader.error().ok()) return reader.error();
    return invalid_argument_error(str_cat(name, ": not valid JSON"));
  }
  return ok_status();
}

std::string json_number_text(JsonNumber n) {
  if (n.integer) return std::to_string(static_cast<int64_t>(n.value));
  return format_double(n.value);
}

Status json_int(std::string_view name, JsonNumber n, const std::string& where, int64_t lo, int64_t hi, int64_t* out) {
  if (!n.integer) {
    return invalid_argument_error(str_cat(name, ": ", where, " must be an integer, got ", json_number_text(n)));
  }
  const auto v = static_cast<int64_t>(n.value);
  if (v < lo || v > hi) {
    return invalid_argument_error(str_cat(name, ": ", where, " = ", v, " is out of range [", lo, ", ", hi, "]"));
  }
  *out = v;
  return ok_status();
}

Status json_int(std::string_view name, const JsonField& f, const std::string& where, int64_t lo, int64_t hi,
                int64_t* out) {
  if (!f.present()) return invalid_argument_error(str_cat(name, ": missing \"", where, "\""));
  if (std::string_view(f.type()) != "number") {
    return invalid_argument_error(str_cat(name, ": ", where, " must be an integer, got ", f.type()));
  }
  return json_int(name, f.number_value(), where, lo, hi, out);
}

}  // namespace omni::io_internal
