// One function per library module that adds its classes and functions to the
// extension module omniplacement._omni. module.cc calls those of the modules built.
#pragma once

#include <pybind11/pybind11.h>

#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/validation.h"

namespace omni::py_support {

void bind_core(pybind11::module_& m);

// A LoadMatrix from a LoadMatrix (a copy) or an array-like [num_layers, num_experts]:
// integer or bool dtype gives exact counts, any other numeric dtype weights.
LoadMatrix load_from_object(pybind11::handle data);
// `rules` cast to ValidationRules, or the defaults when it is None.
ValidationRules rules_or_default(const pybind11::object& rules);

void bind_metrics(pybind11::module_& m);
void bind_planner(pybind11::module_& m);
void bind_io(pybind11::module_& m);
void bind_capture(pybind11::module_& m);
void bind_runtime(pybind11::module_& m);

}  // namespace omni::py_support
