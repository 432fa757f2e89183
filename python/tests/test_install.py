"""`cmake --install` puts the package where /usr/bin/python3 finds it, and
`pip install --no-build-isolation .` installs it, with metadata, into a fresh venv.

C++ twin: tests/consumer (consumer_project), which installs the library and builds
a CMake project against it (CMake package and pkg-config) and runs the installed CLI
away from the source tree; this does the same for the Python package.

The pip test packages this build tree's extension (OMNI_PREBUILT_DIR) from a copy of
the files pip needs, so that it neither rebuilds the library nor writes into the
source tree; OMNI_TEST_PIP_FROM_SOURCE=1 makes it build from source through CMake
(setup.py's default path; minutes).
"""
import os
import shutil
import subprocess
import sys

import pytest

BUILD_DIR = os.environ.get("OMNI_BUILD_DIR")
SOURCE_DIR = os.environ.get("OMNI_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
STANDINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standins")


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


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMNI_PREBUILT_DIR")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def pip_source(tmp_path):
    """What `pip install .` reads, copied; the whole tree when building from source."""
    if os.environ.get("OMNI_TEST_PIP_FROM_SOURCE") == "1":
        return os.path.abspath(SOURCE_DIR), {}
    src = tmp_path / "src"
    for name in ("pyproject.toml", "setup.py", "CMakeLists.txt", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(SOURCE_DIR, name), src / name)
    shutil.copytree(os.path.join(SOURCE_DIR, "python", "omniplacement"), src / "python" / "omniplacement",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return str(src), {"OMNI_PREBUILT_DIR": os.path.abspath(BUILD_DIR)}


def test_pip_install_into_a_fresh_venv_imports_and_plans_outside_the_source_tree(tmp_path):
    assert BUILD_DIR, "OMNI_BUILD_DIR must name the build tree (ctest sets it)"
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True,
                   capture_output=True)
    python = str(venv / "bin" / "python")
    source, extra = pip_source(tmp_path)
    r = subprocess.run([python, "-m", "pip", "install", "--no-build-isolation", "--no-index", source],
                       cwd=tmp_path, env=clean_env(**extra), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    code = """
import importlib.metadata as md, numpy as np, omniplacement as op
phy2log, log2phy, logcnt = op.rebalance_experts(np.array([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86]]),
                                                16, 4, 2, 8, planner="eplb")
print(op.__file__)
print(md.version("omniplacement"), op.__version__)
print(phy2log.tolist()[0])
print([ep.value for ep in md.entry_points(group="vllm.general_plugins") if ep.name == "omniplacement"])
"""
    run = tmp_path / "elsewhere"
    run.mkdir()
    out = subprocess.run([python, "-c", code], cwd=run, env=clean_env(), check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert out[0].startswith(str(venv)) and out[0].endswith(os.path.join("omniplacement", "__init__.py"))
    version, module_version = out[1].split()
    assert version == module_version
    assert out[2] == str([5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1])   # docs/REFERENCES.md section 1, first layer
    assert out[3] == str(["omniplacement.vllm:plugin"])
    # The entry point vLLM loads in every process registers the policy (a stand-in vLLM here).
    plugin = """
import importlib.metadata as md
(ep,) = [ep for ep in md.entry_points(group="vllm.general_plugins") if ep.name == "omniplacement"]
ep.load()()
from vllm.distributed.eplb.policy import EPLB_POLICIES
print(EPLB_POLICIES["default"].planner)
"""
    out = subprocess.run([python, "-c", plugin], cwd=run, env=clean_env(PYTHONPATH=STANDINS,
                                                                         OMNI_VLLM_PLANNER="omni"),
                         check=True, capture_output=True, text=True).stdout.split()
    assert out == ["omni"]
