"""`cmake --install` puts the package where /usr/bin/python3 finds it.

C++ twin: tests/consumer (consumer_project), which installs the library and builds
a CMake project against it; this does the same for the Python package.
"""
import os
import subprocess

import pytest

BUILD_DIR = os.environ.get("OMNI_BUILD_DIR")


def cache_value(name):
    with open(os.path.join(BUILD_DIR, "CMakeCache.txt"), encoding="utf-8") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split("=", 1)[1].strip()
    raise AssertionError(f"{name} not in CMakeCache.txt")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    assert BUILD_DIR, "OMNI_BUILD_DIR must name the build tree (ctest sets it)"
    prefix = tmp_path_factory.mktemp("prefix")
    subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", str(prefix)], check=True, capture_output=True)
    return prefix


def test_installed_package_imports_and_works_outside_the_build_tree(installed, tmp_path):
    site = installed / cache_value("OMNI_PYTHON_INSTALL_DIR")
    assert (site / "omniplacement" / "__init__.py").exists()
    assert (site / "omniplacement" / "plot.py").exists()
    code = ("import omniplacement as op; p = op.Placement.contiguous(1, 2, 4, 2); "
            "print(op.__file__); print(p.num_slots(0))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(["/usr/bin/python3", "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True,
                         text=True).stdout.split()
    assert out[0].startswith(str(site))
    assert out[1] == "4"


def test_default_install_dir_is_on_the_system_interpreters_path():
    # With the default prefix /usr/local (and /usr), Debian's python3 needs no PYTHONPATH.
    rel = cache_value("OMNI_PYTHON_INSTALL_DIR")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    paths = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('\\n'.join(sys.path))"], env=env,
                           check=True, capture_output=True, text=True).stdout.split()
    assert os.path.join("/usr/local", rel) in paths
    assert os.path.join("/usr", rel) in paths
