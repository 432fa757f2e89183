"""Builds the omniplacement Python package: setuptools drives CMake (pyproject.toml has the metadata).

    pip install --no-build-isolation .        # configures and builds build/pip/cmake with CMake

The C++ library and the extension omniplacement._omni are built by CMake (target
omniplacement_python: every library module, no tests, no CLI); the pure-Python files
come from python/omniplacement. Environment:
  CMAKE_ARGS              extra CMake arguments, e.g. "-DOMNI_WITH_MPI=ON
                          -DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
  CMAKE_BUILD_PARALLEL_LEVEL  build jobs (default: all cores)
  OMNI_PREBUILT_DIR       a CMake build tree configured with -DOMNI_BUILD_PYTHON=ON
                          whose python/omniplacement/_omni*.so is packaged instead of
                          building (for the same Python version)
"""
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD_BASE = os.path.join("build", "pip")


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        match = re.search(r"project\(OmniPlacement\s+VERSION\s+([0-9][0-9.]*)", f.read())
    if not match:
        raise RuntimeError("CMakeLists.txt: no project(OmniPlacement VERSION x.y.z)")
    return match.group(1)


class CMakeBuild(build_ext):
    """Builds omniplacement._omni with CMake (or takes it from OMNI_PREBUILT_DIR)."""

    def build_extension(self, ext):
        package_dir = os.environ.get("OMNI_PREBUILT_DIR")
        if package_dir:
            package_dir = os.path.join(os.path.abspath(package_dir), "python", "omniplacement")
        else:
            package_dir = self._cmake_build()
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        built = glob.glob(os.path.join(package_dir, "_omni" + suffix))
        if not built:
            found = glob.glob(os.path.join(package_dir, "_omni*"))
            raise RuntimeError(f"no _omni{suffix} in {package_dir} (found {found or 'nothing'}); build it with "
                               f"-DOMNI_BUILD_PYTHON=ON for {sys.executable}")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(built[0], target)

    def _cmake_build(self):
        build_dir = os.path.join(ROOT, BUILD_BASE, "cmake")
        args = ["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release", "-DOMNI_BUILD_PYTHON=ON",
                "-DOMNI_BUILD_TESTS=OFF", "-DOMNI_BUILD_BENCH=OFF", "-DOMNI_BUILD_TOOLS=OFF",
                f"-DPython3_EXECUTABLE={sys.executable}"]
        if shutil.which("ninja") and not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            args += ["-G", "Ninja"]
        args += shlex.split(os.environ.get("CMAKE_ARGS", ""))
        subprocess.run(args, check=True)
        build = ["cmake", "--build", build_dir, "--target", "omniplacement_python"]
        if "CMAKE_BUILD_PARALLEL_LEVEL" not in os.environ:
            build += ["--parallel", str(os.cpu_count() or 1)]
        subprocess.run(build, check=True)
        return os.path.join(build_dir, "python", "omniplacement")


os.makedirs(os.path.join(ROOT, BUILD_BASE), exist_ok=True)
setup(
    version=project_version(),
    ext_modules=[Extension("omniplacement._omni", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    # setuptools' own build files go under build/pip, beside the CMake build, not in the tree.
    options={"build": {"build_base": BUILD_BASE}, "egg_info": {"egg_base": BUILD_BASE}},
)
