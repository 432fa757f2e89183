"""The README's Python examples run as written and print what their C++ twin prints.

C++ twin: tests/consumer (consumer_project), which builds and runs the README's C++ example.
The engine examples import vllm / sglang: they run against the stand-ins of
python/tests/standins (see its README), in a scratch directory (they write files).
"""
import contextlib
import io
import os
import re
import sys

SOURCE_DIR = os.path.abspath(os.environ.get("OMNI_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")))


def python_blocks():
    with open(os.path.join(SOURCE_DIR, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.abspath(__file__)), "standins"))
    monkeypatch.chdir(tmp_path)
    for name in [n for n in sys.modules if n.split(".")[0] in ("vllm", "sglang")]:
        monkeypatch.delitem(sys.modules, name)
    blocks = python_blocks()
    assert blocks, "README.md has no ```python block"
    for block in blocks:
        assert len(block.strip().splitlines()) <= 16, "README examples stay short"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
        assert out.getvalue().strip(), "the example prints its result"


def test_readme_core_example_figures():
    # The core example's numbers, computed independently: every layer has one hot
    # expert on one of 32 ranks, so max/mean is 32 and all that load is on one rank.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(python_blocks()[0], "README.md", "exec"), {"__name__": "__readme__"})
    lines = dict(line.split(": ", 1) for line in out.getvalue().strip().splitlines())
    assert float(lines["mean max/mean rank load"]) == 32.0
    assert abs(float(lines["cross-host share of tokens"]) - 24 / 32) < 1e-12
