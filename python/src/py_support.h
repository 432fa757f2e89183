// Shared helpers of the Python bindings: Status -> Python exceptions, and numpy
// arrays in and out.
//
// Errors: a failed omni::Status is thrown as StatusError inside the bindings and
// turned into a Python exception by the translator that register_status_errors()
// installs (see status_exception_type() for the mapping). The exception's message
// is Status::to_string() ("INVALID_ARGUMENT: layer 3, ...") and its attribute
// `status_code` holds the code name.
//
// Arrays out: vectors produced by the library are moved into numpy arrays (no
// copy; a capsule owns the vector). Views into immutable library objects
// (Placement, ExpertMap) are read-only arrays whose base is the Python object, so
// the object lives as long as any view of it.
// Arrays in: anything numpy can turn into an array (lists, numpy arrays, CPU
// torch tensors through __array__). Integer inputs must have an integer dtype
// (floats are not silently truncated) and are range-checked before narrowing.
//
// Thread safety: call with the GIL held, except where a function says otherwise.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "omniplacement/core/status.h"

namespace omni::py_support {

namespace py = pybind11;

// Carries a failed Status out of a binding; translated into a Python exception.
class StatusError : public std::exception {
 public:
  explicit StatusError(Status status) : status_(std::move(status)), what_(status_.to_string()) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  Status status_;
  std::string what_;
};

// The Python exception class for a code: ValueError for bad input
// (INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, DATA_LOSS), TimeoutError for
// DEADLINE_EXCEEDED, NotImplementedError for UNIMPLEMENTED, RuntimeError for the
// rest (FAILED_PRECONDITION, UNAVAILABLE, ABORTED, RESOURCE_EXHAUSTED, INTERNAL).
PyObject* status_exception_type(StatusCode code);

// Installs the StatusError translator and adds `status_exception_type` helpers to m.
void register_status_errors(py::module_& m);

// Throws StatusError when status is not OK.
inline void check(const Status& status) {
  if (!status.ok()) throw StatusError(status);
}
template <typename T>
T unwrap(StatusOr<T>&& s) {
  if (!s.ok()) throw StatusError(std::move(s).status());
  return std::move(s).value();
}
// Throws StatusError(INVALID_ARGUMENT / OUT_OF_RANGE, message).
[[noreturn]] void fail(StatusCode code, const std::string& message);

// Index checks done in the bindings before calling accessors that abort on a bad index.
void check_index(const char* what, int64_t index, int64_t size);

// A numpy array taking ownership of `v` (no copy). shape's product must equal v.size().
template <typename T>
py::array_t<T> to_numpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(v));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(std::move(shape), owned->data(), owner);
}
template <typename T>
py::array_t<T> to_numpy(std::vector<T>&& v) {
  const auto n = static_cast<py::ssize_t>(v.size());
  return to_numpy(std::move(v), {n});
}

// A read-only C-ordered view of `data` with `shape`, memory owned by `base` (a
// Python object that the view keeps alive).
template <typename T>
py::array_t<T> readonly_view(const T* data, std::vector<py::ssize_t> shape, py::handle base) {
  py::array_t<T> a(std::move(shape), data, base);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}
template <typename T>
py::array_t<T> readonly_view(std::span<const T> s, py::handle base) {
  return readonly_view(s.data(), {static_cast<py::ssize_t>(s.size())}, base);
}

// An input array converted to a dense, C-ordered vector plus its shape.
template <typename T>
struct Dense {
  std::vector<T> data;
  std::vector<int64_t> shape;
  size_t ndim() const { return shape.size(); }
};

// `obj` as float64 (any numeric dtype accepted). `what` names the argument in errors.
Dense<double> to_doubles(py::handle obj, const char* what);
// `obj` as int64; the dtype must be integer or bool (or the array empty).
Dense<int64_t> to_int64s(py::handle obj, const char* what);
// The same, each value checked to lie in [lo, hi], as int32.
Dense<int32_t> to_int32s(py::handle obj, const char* what, int64_t lo, int64_t hi);
// Throws INVALID_ARGUMENT unless the array has `ndim` dimensions.
void expect_ndim(const char* what, size_t got, size_t ndim);

// Rows of a layer-wise array: a 2-D array (every layer the same length) or a list
// or tuple of 1-D arrays (layer-wise uneven), converted as to_int32s (full int32
// range; the library validates ids), to_int64s or to_doubles.
std::vector<std::vector<int32_t>> int32_rows(py::handle obj, const char* what);
std::vector<std::vector<int64_t>> int64_rows(py::handle obj, const char* what);
std::vector<std::vector<double>> double_rows(py::handle obj, const char* what);

// One numpy array (a copy) per row.
template <typename T>
py::list rows_to_list(const std::vector<std::vector<T>>& rows) {
  py::list out;
  for (const auto& row : rows) out.append(to_numpy(std::vector<T>(row)));
  return out;
}

// `obj` (numpy array, CPU torch tensor, list, ...) as a numpy array, without a
// copy when numpy.asarray can avoid one.
py::array as_numpy(py::handle obj);
// Expert ids as int32: a view of `arr` when it already is int32 and C-ordered,
// else a converted copy in `storage` (values outside int32 become INT32_MIN, an
// invalid id, never wrapped onto a valid one). INVALID_ARGUMENT for a
// non-integer dtype.
std::span<const int32_t> ids_view(const py::array& arr, std::vector<int32_t>& storage);

}  // namespace omni::py_support
