#!/usr/bin/python3
"""Tests of scripts/check_includes.py (ctest include_rules_selftest): small
source trees written to a temporary folder, one rule broken in each, must fail
with the file and line named; the clean tree and the allowed cases must pass."""
import os
import subprocess
import sys
import tempfile
import unittest

CHECKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_includes.py")

# A clean tree: three modules, private headers included by bare name from
# their own module, its tests and its benchmark; public headers by layering.
CLEAN = {
    "CMakeLists.txt": "set(OMNI_ALL_MODULES core planner capture runtime)\n",
    "include/omniplacement/core/ids.h": "#pragma once\n#include <cstdint>\n",
    "include/omniplacement/planner/plan.h": '#pragma once\n#include "omniplacement/core/ids.h"\n',
    "include/omniplacement/capture/recorder.h": '#pragma once\n#include "omniplacement/core/ids.h"\n',
    "include/omniplacement/runtime/manager.h":
        '#pragma once\n#include "omniplacement/planner/plan.h"\n#include "omniplacement/capture/recorder.h"\n',
    "src/core/mix.h": "#pragma once\n",
    "src/core/ids.cc": '#include "omniplacement/core/ids.h"\n#include "mix.h"\n',
    "src/planner/plan.cc": '#include "omniplacement/planner/plan.h"\n#include "refine.h"\n',
    "src/planner/refine.h": '#pragma once\n#include "omniplacement/core/ids.h"\n',
    "src/capture/peer.h": "#pragma once\n",
    "src/capture/recorder.cc": '#include "peer.h"\n',
    "src/runtime/manager.cc": '#include "omniplacement/runtime/manager.h"\n#include <vector>\n',
    "tests/common/helpers.h": "#pragma once\n",
    "tests/io_like/util.h": "#pragma once\n",
    "tests/planner/plan_test.cc": '#include "refine.h"\n#include "common/helpers.h"\n',
    "tests/capture/recorder_test.cc": '#include "peer.h"\n',
    "tests/runtime/manager_test.cc": '#include "io_like/util.h"\n#include "omniplacement/runtime/manager.h"\n',
    "bench/bench_capture.cc": '#include "peer.h"\n#include "common/helpers.h"\n',
    "bench/bench_extra.cc": '#include "omniplacement/runtime/manager.h"\n',
    "tools/cli/main.cc": '#include "cli/command.h"\n#include <omniplacement/runtime/manager.h>\n',
    "tools/cli/command.h": "#pragma once\n",
    "python/src/bind.cc": '#include "support.h"\n#include "omniplacement/planner/plan.h"\n',
    "python/src/support.h": "#pragma once\n",
}


def write_tree(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


class CheckIncludesTest(unittest.TestCase):
    def run_checker(self, changes):
        """Runs the checker on CLEAN with `changes` applied (path -> text);
        returns (exit status, stdout lines)."""
        files = dict(CLEAN)
        files.update(changes)
        with tempfile.TemporaryDirectory() as root:
            write_tree(root, files)
            r = subprocess.run([sys.executable, CHECKER, root], capture_output=True, text=True, check=False)
        return r.returncode, r.stdout.splitlines()

    def assert_violation(self, changes, where, words):
        status, lines = self.run_checker(changes)
        self.assertEqual(status, 1, f"expected a violation at {where}, got none: {lines}")
        hits = [line for line in lines if line.startswith(where + ":")]
        self.assertEqual(len(hits), 1, f"expected one violation at {where}: {lines}")
        for w in words:
            self.assertIn(w, hits[0])

    def test_clean_tree_passes(self):
        status, lines = self.run_checker({})
        self.assertEqual(status, 0, lines)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("22 files, 25 includes, 0 violations", lines[0])

    def test_private_header_of_another_module_by_module_path(self):
        self.assert_violation({"src/planner/plan.cc": '#include "omniplacement/planner/plan.h"\n#include "core/mix.h"\n'},
                              "src/planner/plan.cc:2", ['"core/mix.h"', "module core", "module planner"])

    def test_private_header_of_another_module_by_relative_path(self):
        self.assert_violation({"src/runtime/manager.cc": '\n\n#include "../planner/refine.h"\n'},
                              "src/runtime/manager.cc:3", ["module planner"])

    def test_private_header_reachable_only_through_another_modules_folder(self):
        self.assert_violation({"src/runtime/manager.cc": '#include "refine.h"\n'},
                              "src/runtime/manager.cc:1", ['"refine.h"', "module planner"])

    def test_private_header_in_angle_brackets(self):
        self.assert_violation({"tools/cli/main.cc": "#include <planner/refine.h>\n"},
                              "tools/cli/main.cc:1", ["module planner"])

    def test_test_of_one_module_includes_anothers_private_header(self):
        self.assert_violation({"tests/runtime/manager_test.cc": '#include "planner/refine.h"\n'},
                              "tests/runtime/manager_test.cc:1", ["test of module runtime", "module planner"])

    def test_benchmark_of_another_module_includes_a_private_header(self):
        self.assert_violation({"bench/bench_extra.cc": '#include "peer.h"\n'},
                              "bench/bench_extra.cc:1", ["module capture"])
        self.assert_violation({"bench/bench_planner.cc": '#include "capture/peer.h"\n'},
                              "bench/bench_planner.cc:1", ["module capture"])

    def test_tools_and_python_include_no_private_header(self):
        self.assert_violation({"tools/cli/main.cc": '#include "capture/peer.h"\n'}, "tools/cli/main.cc:1",
                              ["module capture"])
        self.assert_violation({"python/src/bind.cc": '#include "core/mix.h"\n'}, "python/src/bind.cc:1",
                              ["module core"])

    def test_examples_include_their_own_headers_and_no_private_one(self):
        demo = {"examples/demo/loop.h": "#pragma once\n",
                "examples/demo/loop.cc": '#include "demo/loop.h"\n#include "omniplacement/runtime/manager.h"\n'}
        status, lines = self.run_checker(demo)
        self.assertEqual(status, 0, lines)
        self.assertIn("24 files, 27 includes, 0 violations", lines[0])
        demo["examples/demo/loop.cc"] = '#include "demo/loop.h"\n#include "core/mix.h"\n'
        self.assert_violation(demo, "examples/demo/loop.cc:2", ["module core"])

    def test_installed_header_includes_no_private_header_even_its_own(self):
        self.assert_violation({"include/omniplacement/planner/plan.h": '#pragma once\n#include "../../../src/planner/refine.h"\n'},
                              "include/omniplacement/planner/plan.h:2", ["installed header", "module planner"])

    def test_module_includes_a_module_after_it(self):
        self.assert_violation({"src/planner/plan.cc": '#include "omniplacement/runtime/manager.h"\n'},
                              "src/planner/plan.cc:1", ["module planner", "module runtime", "may use: core planner"])
        self.assert_violation({"include/omniplacement/capture/recorder.h": '#pragma once\n#  include <omniplacement/runtime/manager.h>\n'},
                              "include/omniplacement/capture/recorder.h:2", ["module capture", "module runtime"])

    def test_unknown_module(self):
        self.assert_violation({"src/core/ids.cc": '#include "omniplacement/nosuch/x.h"\n'},
                              "src/core/ids.cc:1", ['"nosuch" is not a module'])

    def test_modules_flag_overrides_cmake(self):
        # With planner after runtime, runtime's include of planner breaks the layering.
        with tempfile.TemporaryDirectory() as root:
            write_tree(root, CLEAN)
            r = subprocess.run([sys.executable, CHECKER, root, "--modules", "core,capture,runtime,planner"],
                               capture_output=True, text=True, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertTrue(any(line.startswith("include/omniplacement/runtime/manager.h:2:") for line in r.stdout.splitlines()),
                        r.stdout)


if __name__ == "__main__":
    unittest.main()
