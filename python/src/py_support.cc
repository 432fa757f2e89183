#include "py_support.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "omniplacement/core/str_cat.h"

namespace omni::py_support {

PyObject* status_exception_type(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kOutOfRange:
    case StatusCode::kDataLoss:
      return PyExc_ValueError;
    case StatusCode::kDeadlineExceeded:
      return PyExc_TimeoutError;
    case StatusCode::kUnimplemented:
      return PyExc_NotImplementedError;  // a subclass of RuntimeError
    default:
      return PyExc_RuntimeError;
  }
}

namespace {

void raise_status(const Status& status) {
  PyObject* type = status_exception_type(status.code());
  py::object exc = py::reinterpret_borrow<py::object>(type)(status.to_string());
  exc.attr("status_code") = py::str(std::string(status_code_name(status.code())));
  PyErr_SetObject(type, exc.ptr());
}

}  // namespace

void register_status_errors(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      raise_status(e.status());
    }
  });
  m.def(
      "status_exception_type",
      [](const std::string& code_name) -> py::object {
        for (int c = 0; c <= static_cast<int>(StatusCode::kInternal); ++c) {
          const auto code = static_cast<StatusCode>(c);
          if (status_code_name(code) == code_name)
            return py::reinterpret_borrow<py::object>(status_exception_type(code));
        }
        fail(StatusCode::kInvalidArgument, str_cat("unknown status code name '", code_name, "'"));
      },
      py::arg("code_name"),
      "The Python exception class raised for a library status code name such as "
      "'INVALID_ARGUMENT' (ValueError) or 'DEADLINE_EXCEEDED' (TimeoutError).");
}

void fail(StatusCode code, const std::string& message) { throw StatusError(Status(code, message)); }

void check_index(const char* what, int64_t index, int64_t size) {
  if (index < 0 || index >= size) {
    fail(StatusCode::kOutOfRange, str_cat(what, " ", index, " out of [0, ", size, ")"));
  }
}

void expect_ndim(const char* what, size_t got, size_t ndim) {
  if (got != ndim) {
    fail(StatusCode::kInvalidArgument, str_cat(what, ": expected a ", ndim, "-D array, got ", got, "-D"));
  }
}

namespace {

py::array as_array(py::handle obj, const char* what) {
  py::array arr;
  try {
    arr = py::module_::import("numpy").attr("asarray")(obj);
  } catch (py::error_already_set& e) {
    fail(StatusCode::kInvalidArgument, str_cat(what, ": not convertible to an array (", e.what(), ")"));
  }
  return arr;
}

template <typename T>
Dense<T> dense_copy(const py::array& arr) {
  auto typed = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(arr);
  Dense<T> out;
  for (py::ssize_t d = 0; d < typed.ndim(); ++d) out.shape.push_back(static_cast<int64_t>(typed.shape(d)));
  out.data.resize(static_cast<size_t>(typed.size()));
  if (!out.data.empty()) std::memcpy(out.data.data(), typed.data(), out.data.size() * sizeof(T));
  return out;
}

}  // namespace

Dense<double> to_doubles(py::handle obj, const char* what) {
  py::array arr = as_array(obj, what);
  const char kind = arr.dtype().kind();
  if (arr.size() > 0 && kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f') {
    fail(StatusCode::kInvalidArgument,
         str_cat(what, ": expected a real numeric array, got dtype ", std::string(py::str(arr.dtype()))));
  }
  return dense_copy<double>(arr);
}

Dense<int64_t> to_int64s(py::handle obj, const char* what) {
  py::array arr = as_array(obj, what);
  const char kind = arr.dtype().kind();
  if (arr.size() > 0 && kind != 'b' && kind != 'i' && kind != 'u') {
    fail(StatusCode::kInvalidArgument,
         str_cat(what, ": expected an integer array, got dtype ", std::string(py::str(arr.dtype()))));
  }
  if (kind == 'u' && arr.itemsize() == 8) {
    // uint64 values above INT64_MAX would wrap in the cast below.
    auto u = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    const uint64_t* p = u.data();
    for (py::ssize_t i = 0; i < u.size(); ++i) {
      if (p[i] > static_cast<uint64_t>(INT64_MAX)) {
        fail(StatusCode::kInvalidArgument, str_cat(what, ": value ", p[i], " at flat index ", i, " exceeds int64"));
      }
    }
  }
  return dense_copy<int64_t>(arr);
}

Dense<int32_t> to_int32s(py::handle obj, const char* what, int64_t lo, int64_t hi) {
  Dense<int64_t> wide = to_int64s(obj, what);
  Dense<int32_t> out;
  out.shape = wide.shape;
  out.data.resize(wide.data.size());
  for (size_t i = 0; i < wide.data.size(); ++i) {
    const int64_t v = wide.data[i];
    if (v < lo || v > hi) {
      fail(StatusCode::kInvalidArgument,
           str_cat(what, ": value ", v, " at flat index ", i, " is outside [", lo, ", ", hi, "]"));
    }
    out.data[i] = static_cast<int32_t>(v);
  }
  return out;
}

namespace {

// Rows of a layer-wise array: a 2-D array (every layer the same length) or a
// sequence of 1-D arrays (layer-wise uneven).
template <typename T, typename Convert>
std::vector<std::vector<T>> layer_rows(py::handle obj, const char* what, Convert convert) {
  std::vector<std::vector<T>> rows;
  if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    size_t l = 0;
    for (py::handle row : obj) {
      const std::string name = str_cat(what, "[", l++, "]");
      auto d = convert(row, name.c_str());
      expect_ndim(name.c_str(), d.ndim(), 1);
      rows.push_back(std::move(d.data));
    }
    return rows;
  }
  auto d = convert(obj, what);
  expect_ndim(what, d.ndim(), 2);
  const auto width = static_cast<size_t>(d.shape[1]);
  for (int64_t l = 0; l < d.shape[0]; ++l) {
    const auto begin = d.data.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(l) * width);
    rows.emplace_back(begin, begin + static_cast<std::ptrdiff_t>(width));
  }
  return rows;
}

}  // namespace

std::vector<std::vector<int32_t>> int32_rows(py::handle obj, const char* what) {
  return layer_rows<int32_t>(obj, what, [](py::handle h, const char* w) { return to_int32s(h, w, INT32_MIN, INT32_MAX); });
}

std::vector<std::vector<int64_t>> int64_rows(py::handle obj, const char* what) {
  return layer_rows<int64_t>(obj, what, [](py::handle h, const char* w) { return to_int64s(h, w); });
}

std::vector<std::vector<double>> double_rows(py::handle obj, const char* what) {
  return layer_rows<double>(obj, what, [](py::handle h, const char* w) { return to_doubles(h, w); });
}

std::span<const int32_t> ids_view(const py::array& arr, std::vector<int32_t>& storage) {
  const char kind = arr.dtype().kind();
  if (arr.size() > 0 && kind != 'i' && kind != 'u') {
    fail(StatusCode::kInvalidArgument,
         str_cat("topk_ids must have an integer dtype, got ", std::string(py::str(arr.dtype()))));
  }
  const bool c_order = (arr.flags() & py::array::c_style) != 0;
  if (kind == 'i' && arr.itemsize() == 4 && c_order) {
    return {static_cast<const int32_t*>(arr.data()), static_cast<size_t>(arr.size())};
  }
  storage.resize(static_cast<size_t>(arr.size()));
  if (kind == 'u' && arr.itemsize() == 8) {
    auto u = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    for (size_t i = 0; i < storage.size(); ++i)
      storage[i] = u.data()[i] > static_cast<uint64_t>(INT32_MAX) ? INT32_MIN : static_cast<int32_t>(u.data()[i]);
    return storage;
  }
  auto wide = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
  for (size_t i = 0; i < storage.size(); ++i) {
    const int64_t v = wide.data()[i];
    storage[i] = (v < INT32_MIN || v > INT32_MAX) ? INT32_MIN : static_cast<int32_t>(v);
  }
  return storage;
}

py::array as_numpy(py::handle obj) {
  // CPU tensors and numpy arrays: no copy (numpy.asarray reads __array__).
  py::object np = py::module_::import("numpy");
  py::object sys_modules = py::module_::import("sys").attr("modules");
  if (sys_modules.contains("torch")) {
    py::object torch = sys_modules["torch"];
    if (py::isinstance(obj, torch.attr("Tensor"))) return np.attr("asarray")(obj.attr("detach")().attr("cpu")());
  }
  return np.attr("asarray")(obj);
}

}  // namespace omni::py_support
