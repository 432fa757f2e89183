// The extension module omniplacement._omni. Users import the package
// `omniplacement`, which re-exports these names and adds the numpy/torch
// adapters, the EPLB drop-in and the plots (python/omniplacement/*.py).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings.h"
#include "omniplacement/core/version.h"
#include "py_support.h"

PYBIND11_MODULE(_omni, m) {
  namespace ps = omni::py_support;
  m.doc() =
      "OmniPlacement C++ bindings (dynamic expert placement for MoE inference). Import the package "
      "`omniplacement` rather than this module.";
  ps::register_status_errors(m);
  std::vector<std::string> modules = {"core"};
  ps::bind_core(m);
  ps::bind_metrics(m);
#ifdef OMNI_PY_HAVE_PLANNER
  ps::bind_planner(m);
  modules.push_back("planner");
#endif
#ifdef OMNI_PY_HAVE_IO
  ps::bind_io(m);
  modules.push_back("io");
#endif
#ifdef OMNI_PY_HAVE_CAPTURE
  ps::bind_capture(m);
  modules.push_back("capture");
#endif
#ifdef OMNI_PY_HAVE_RUNTIME
  ps::bind_runtime(m);
  modules.push_back("runtime");
#endif
  m.attr("__version__") = omni::kVersionString;
  m.attr("bound_modules") = modules;
}
