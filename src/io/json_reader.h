// Reading JSON without building a tree (private to the io module).
//
// A DOM (nlohmann::json) costs 16 bytes per value plus vector growth: 8-32x
// the text for the arrays of small numbers our formats are made of. These
// readers take nlohmann's SAX events (its parser is iterative, so nesting never
// recurses) and keep only what a format asks for: strings, numbers, and nested
// arrays of numbers packed 8 bytes per number in blocks that never move. What
// the format does not know is refused while reading, with its JSON path:
// nesting deeper than kMaxJsonDepth, an unknown key (unless allowed), a key
// given twice, an array where a number belongs or the reverse, an integer
// beyond 2^53 in magnitude, a number beyond the range of a double.
//
//   JsonField doc = JsonField::object({{"format", JsonField::string()},
//                                      {"phy2log", JsonField::numbers(2)}});
//   Status s = read_json(text, "p.json", &doc);
//   const NumberArray& rows = doc.member("phy2log")->numbers();   // rows.root().array(0).number(3)
//
// Thread safety: a JsonField is a plain value; read_json fills one per call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "block_vector.h"
#include "omniplacement/core/status.h"

namespace omni::io_internal {

// Deepest nesting of arrays and objects any JSON input may have (our formats
// need at most 4: an object holding log2phy[layer][expert][replica]).
inline constexpr int kMaxJsonDepth = 16;
// Largest magnitude of an integer in our JSON formats (exact in a double).
inline constexpr int64_t kMaxJsonInteger = int64_t{1} << 53;

// A number as read: its value and whether the text was an integer literal.
struct JsonNumber {
  double value = 0;
  bool integer = false;
};

// Nested arrays of numbers, `depth` levels deep (1: [1, 2]; 2: [[1], [2, 3]]),
// ragged: inner arrays may differ in length. Numbers sit only at the deepest
// level. 8 bytes per number plus 8 per inner array.
class NumberArray {
 public:
  NumberArray() = default;
  explicit NumberArray(int depth) : depth_(depth), starts_(static_cast<size_t>(depth)) {}

  // One array of the nest: level 0 is the outermost.
  class View {
   public:
    size_t size() const { return end_ - begin_; }
    // Element j when this array holds arrays (level < depth - 1).
    View array(size_t j) const;
    // Element j when this array holds numbers (level == depth - 1).
    JsonNumber number(size_t j) const;

   private:
    friend class NumberArray;
    View(const NumberArray* a, int level, size_t begin, size_t end) : a_(a), level_(level), begin_(begin), end_(end) {}
    const NumberArray* a_;
    int level_;
    size_t begin_, end_;  // children in level_ + 1, or numbers
  };

  int depth() const { return depth_; }
  // The outermost array (empty when nothing was read).
  View root() const;
  // Numbers in all (at the deepest level).
  size_t num_numbers() const { return values_.size(); }
  // Frees the storage.
  void clear() { *this = NumberArray(depth_); }

  // Building, by read_json only: an array of `level` begins; a number arrives;
  // the outermost array ended.
  void open(int level);
  void add(JsonNumber n);
  void finish();

 private:
  int depth_ = 1;
  // starts_[k][i]: index of the first child of the i-th array of level k (in
  // level k + 1, or in values_ at the deepest level); one more entry, the end,
  // after finish().
  std::vector<BlockVector<uint64_t>> starts_;
  BlockVector<double> values_;
  std::vector<bool> integer_;
  bool finished_ = false;
};

// What one value of a document is expected to be, and, after read_json(),
// what it was. An object lists its known members; unknown keys are errors
// unless allowed (then skipped). A value of the wrong JSON type is recorded
// by its type name and skipped, so that the format's checks can say what was
// expected.
class JsonField {
 public:
  enum class Want { kString, kNumber, kNumbers, kObject };

  static JsonField string() { return JsonField(Want::kString); }
  static JsonField number() { return JsonField(Want::kNumber); }
  static JsonField numbers(int depth);
  static JsonField object(std::vector<std::pair<std::string, JsonField>> members, bool allow_unknown_keys = false);

  Want want() const { return want_; }
  bool present() const { return type_ != nullptr; }
  // JSON type read: "null", "boolean", "number", "string", "array", "object"; "absent" when not present.
  const char* type() const { return type_ ? type_ : "absent"; }
  bool is_null() const { return type_ != nullptr && std::string_view(type_) == "null"; }
  // Absent or null.
  bool missing() const { return type_ == nullptr || is_null(); }
  // The value, when it had the wanted type.
  bool has_wanted_type() const;
  const std::string& text() const { return text_; }
  JsonNumber number_value() const { return number_; }
  const NumberArray& array() const { return numbers_; }
  NumberArray& array() { return numbers_; }
  // A known member of an object field (nullptr for a key the field does not list).
  const JsonField* member(std::string_view key) const;
  JsonField* mutable_member(std::string_view key) { return find_member(key); }
  const std::vector<std::pair<std::string, JsonField>>& members() const { return members_; }
  // "a, b, c": the known keys, for messages.
  std::string key_list() const;

 private:
  friend class JsonFieldReader;
  explicit JsonField(Want want) : want_(want) {}
  JsonField* find_member(std::string_view key);

  Want want_;
  int depth_ = 1;
  bool allow_unknown_keys_ = false;
  const char* type_ = nullptr;
  std::string text_;
  JsonNumber number_;
  NumberArray numbers_;
  std::vector<std::pair<std::string, JsonField>> members_;
};

// Reads the JSON `text` into `root`. Errors are INVALID_ARGUMENT and start with
// `name`; they give the JSON path (topology.host_of_rank[3]) of what was
// wrong, or for a syntax error nlohmann's line, column and byte offset.
Status read_json(std::string_view text, std::string_view name, JsonField* root);

// An integer from a number field: `where` = value, or an error that says what
// was expected (an integer in [lo, hi]) and what was there.
Status json_int(std::string_view name, const JsonField& f, const std::string& where, int64_t lo, int64_t hi,
                int64_t* out);
// The same for one number of a NumberArray.
Status json_int(std::string_view name, JsonNumber n, const std::string& where, int64_t lo, int64_t hi, int64_t* out);
// A number as text for messages ("3", "1.5").
std::string json_number_text(JsonNumber n);

}  // namespace omni::io_internal
