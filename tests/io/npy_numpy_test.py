"""Interoperability of omni::read_npy / omni::write_npy with numpy (C++ twin: tests/io/npy_test.cc).

Run by ctest (label python) as: python3 npy_numpy_test.py <path to npy_tool>.
Both directions: files numpy writes (format versions 1.0, 2.0, 3.0, every
supported dtype) are read by our reader, and files our writer produces load in
numpy with the same dtype, shape and values. Files numpy writes that we must
refuse (Fortran order, big-endian, object arrays, truncated) are refused.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

TOOL = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    return subprocess.run([TOOL, *args], capture_output=True, text=True)


def describe(a):
    names = {np.dtype("<i4"): "int32", np.dtype("<i8"): "int64", np.dtype("<f4"): "float32", np.dtype("<f8"): "float64"}
    vals = " ".join(repr(int(v)) if a.dtype.kind == "i" else "%.17g" % float(v) for v in a.ravel())
    return ("%s [%s]" % (names[a.dtype], ", ".join(str(d) for d in a.shape)) + (" " + vals if vals else "")).strip()


rng = np.random.default_rng(5)
arrays = {
    "i4_3d": rng.integers(-2**31, 2**31 - 1, size=(3, 4, 5), dtype=np.int32),
    "i8_2d": rng.integers(-2**62, 2**62, size=(6, 7), dtype=np.int64),
    "f4_1d": rng.standard_normal(11).astype(np.float32),
    "f8_2d": rng.standard_normal((4, 9)) * 1e10,
    "f8_scalar": np.array(3.25),
    "i4_empty": np.zeros((0, 3), dtype=np.int32),
    "pattern": (rng.random((4, 3, 8)) < 0.4).astype(np.int64),
}

with tempfile.TemporaryDirectory() as d:
    for name, a in arrays.items():
        for version in [(1, 0), (2, 0), (3, 0)]:
            src = os.path.join(d, "%s_v%d.npy" % (name, version[0]))
            with open(src, "wb") as f:
                np.lib.format.write_array(f, a, version=version)
            # numpy -> omni: same dtype, shape and values.
            r = run("describe", src)
            check(r.returncode == 0, "%s v%d: read failed: %s" % (name, version[0], r.stderr))
            if r.returncode == 0:
                got = r.stdout.strip().replace(" []", " []")
                check(got == describe(a).replace("[] ", "[] "),
                      "%s v%d: read %r, expected %r" % (name, version[0], got[:80], describe(a)[:80]))
            # omni -> numpy, in the same format version.
            dst = os.path.join(d, "%s_v%d_out.npy" % (name, version[0]))
            r = run("copy", src, dst, str(version[0]))
            check(r.returncode == 0, "%s v%d: copy failed: %s" % (name, version[0], r.stderr))
            if r.returncode == 0:
                b = np.load(dst)
                check(b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b),
                      "%s v%d: numpy reads back %s %s" % (name, version[0], b.dtype, b.shape))
                with open(dst, "rb") as f:
                    check(np.lib.format.read_magic(f) == version, "%s: written version" % name)
                # Written exactly as numpy writes it.
                with open(src, "rb") as f1, open(dst, "rb") as f2:
                    check(f1.read() == f2.read(), "%s v%d: bytes differ from numpy's" % (name, version[0]))

    refused = {
        "fortran": (np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)), "Fortran-order"),
        "big_endian": (np.arange(4, dtype=">i4"), "big-endian"),
        "object": (np.array([1, "a"], dtype=object), "object arrays"),
        "bool": (np.array([True, False]), "unsupported .npy dtype"),
    }
    for name, (a, message) in refused.items():
        path = os.path.join(d, name + ".npy")
        np.save(path, a, allow_pickle=True)
        r = run("describe", path)
        check(r.returncode == 1 and message in r.stderr, "%s: expected refusal with %r, got %d %r" %
              (name, message, r.returncode, r.stderr))
    path = os.path.join(d, "truncated.npy")
    np.save(path, np.arange(100, dtype=np.int64))
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-3])
    r = run("describe", path)
    check(r.returncode == 1 and "truncated" in r.stderr, "truncated: %r" % r.stderr)

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
