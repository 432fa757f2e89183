// One function per library module that adds its classes and functions to the
// extension module omniplacement._omni. module.cc calls those of the modules built.
#pragma once

#include <pybind11/pybind11.h>

namespace omni::py_support {

void bind_core(pybind11::module_& m);
void bind_metrics(pybind11::module_& m);
void bind_planner(pybind11::module_& m);
void bind_io(pybind11::module_& m);
void bind_capture(pybind11::module_& m);

}  // namespace omni::py_support
