// Status and StatusOr<T>: how every fallible OmniPlacement function reports errors.
//
// Nothing throws across the library boundary. A function that can fail returns
// Status (or StatusOr<T> when it also produces a value); the message says what
// was wrong and where (layer, rank, slot, expert, file, index).
//
//   omni::StatusOr<omni::Placement> p = omni::Placement::create(layout);
//   if (!p.ok()) { std::cerr << p.status() << "\n"; return 1; }
//   use(*p);
//
// Invariant violations inside the library (bugs, not bad input) abort through
// OMNI_CHECK with file and line.
//
// Thread safety: Status and StatusOr are values; distinct objects may be used
// from different threads freely.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace omni {

// Canonical codes (a subset of absl's), stable across releases.
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,      // bad input: malformed shape, id out of range, bad spec
  kNotFound = 2,             // file, key or planner name not present
  kOutOfRange = 3,           // index beyond a valid bound
  kFailedPrecondition = 4,   // the object is not in a state that allows the call
  kDeadlineExceeded = 5,     // a wait ran past its timeout
  kUnavailable = 6,          // a peer rank is failed or unreachable
  kAborted = 7,              // a protocol step was abandoned (e.g. a migration batch)
  kResourceExhausted = 8,    // a memory or queue limit was reached
  kDataLoss = 9,             // truncated or corrupted data
  kUnimplemented = 10,       // feature not built in (e.g. MPI, CUDA)
  kInternal = 11,            // unexpected failure of a system call or library
};

// "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", ...
std::string_view status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {
    if (code_ == StatusCode::kOk) message_.clear();
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "OK" or "<CODE>: <message>".
  std::string to_string() const;

  // Adds context in front of the message: "reading foo.npy: <message>".
  Status with_context(std::string_view context) const;

  void ignore() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

std::ostream& operator<<(std::ostream& os, const Status& s);

inline Status ok_status() { return Status(); }
inline Status invalid_argument_error(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status not_found_error(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status out_of_range_error(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status failed_precondition_error(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status deadline_exceeded_error(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status unavailable_error(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status aborted_error(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
inline Status resource_exhausted_error(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status data_loss_error(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status unimplemented_error(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
inline Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

namespace internal {
[[noreturn]] void check_failed(const char* file, int line, const char* expr, const std::string& msg);
}  // namespace internal

// Aborts with file and line when `cond` is false. Always on (also in Release):
// it guards library invariants, never user input.
#define OMNI_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) ::omni::internal::check_failed(__FILE__, __LINE__, #cond, ""); \
  } while (0)
#define OMNI_CHECK_MSG(cond, msg)                                               \
  do {                                                                          \
    if (!(cond)) ::omni::internal::check_failed(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)

// StatusOr<T>: a T, or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  // Implicit from an error Status (must not be OK) and from a value.
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT
    OMNI_CHECK_MSG(!status_.ok(), "StatusOr constructed from an OK Status without a value");
  }
  StatusOr(const T& value) : value_(value) {}        // NOLINT
  StatusOr(T&& value) : value_(std::move(value)) {}  // NOLINT
  template <typename U,
            typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                        !std::is_same_v<std::decay_t<U>, T> &&
                                        !std::is_same_v<std::decay_t<U>, Status> &&
                                        !std::is_same_v<std::decay_t<U>, StatusOr<T>>>>
  StatusOr(U&& value) : value_(T(std::forward<U>(value))) {}  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const& { return status_; }
  Status status() && { return std::move(status_); }

  const T& value() const& { check(); return *value_; }
  T& value() & { check(); return *value_; }
  T&& value() && { check(); return std::move(*value_); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  void check() const {
    if (!status_.ok()) internal::check_failed(__FILE__, __LINE__, "StatusOr::ok()", status_.to_string());
  }
  Status status_;
  std::optional<T> value_;
};

}  // namespace omni

#define OMNI_STATUS_CONCAT_INNER(a, b) a##b
#define OMNI_STATUS_CONCAT(a, b) OMNI_STATUS_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` is not OK.
#define OMNI_RETURN_IF_ERROR(expr)                 \
  do {                                             \
    ::omni::Status omni_status_tmp_ = (expr);      \
    if (!omni_status_tmp_.ok()) return omni_status_tmp_; \
  } while (0)

// OMNI_ASSIGN_OR_RETURN(auto x, f()); declares/assigns x from a StatusOr or returns its error.
#define OMNI_ASSIGN_OR_RETURN(lhs, expr) \
  OMNI_ASSIGN_OR_RETURN_IMPL(OMNI_STATUS_CONCAT(omni_statusor_, __LINE__), lhs, expr)
#define OMNI_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return std::move(tmp).status();   \
  lhs = std::move(tmp).value()
