#!/usr/bin/python3
"""Checks the include rules of the module layering (ctest include_rules).

Usage: scripts/check_includes.py [ROOT] [--modules core,dispatch,...]

ROOT is the source tree (default: this script's parent folder). The modules,
in layering order, come from `set(OMNI_ALL_MODULES ...)` in ROOT/CMakeLists.txt
unless --modules names them. A module may use only itself and the modules
before it; its private headers live in src/<module>/ and are included by bare
name ("file_util.h") from that module's sources, tests (tests/<module>/) and
benchmark (bench/bench_<module>.cc) only.

Files scanned (*.h, *.hpp, *.cc, *.cpp, *.cu, *.cuh):
  src/<m>/, include/omniplacement/<m>/   files of module m
  tests/<m>/, bench/bench_<m>.cc         tests and benchmark of module m
  tests/ (other), bench/ (other), tools/, python/src/, examples/   no module
Rules; every violation is printed as FILE:LINE: message, and the exit status
is 1 when there is one:
  private  a file includes another module's private header: "<m2>/x.h" where
           src/<m2>/x.h exists, a relative path into src/<m2>/, or a bare name
           that only src/<m2>/ holds; files of no module include none, and an
           installed header (include/) includes no private header at all;
  layering a file of module m includes "omniplacement/<m2>/..." where m2 comes
           after m in the layering order, or is not a module.
"""
import argparse
import os
import re
import sys

EXTENSIONS = (".h", ".hpp", ".cc", ".cpp", ".cu", ".cuh")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')


def read_modules(root):
    path = os.path.join(root, "CMakeLists.txt")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        sys.exit(f"check_includes: cannot read {path}: {e.strerror}; pass --modules")
    m = re.search(r"set\(\s*OMNI_ALL_MODULES\s+([^)]*)\)", text)
    if not m:
        sys.exit(f"check_includes: {path} has no set(OMNI_ALL_MODULES ...); pass --modules")
    return m.group(1).split()


def source_files(folder):
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(EXTENSIONS):
                yield os.path.join(dirpath, name)


class Checker:
    def __init__(self, root, modules):
        self.root = os.path.abspath(root)
        self.modules = modules
        self.rank = {m: i for i, m in enumerate(modules)}
        self.violations = []
        self.files = 0
        self.includes = 0

    def rel(self, path):
        return os.path.relpath(path, self.root)

    def private_dir(self, module):
        return os.path.join(self.root, "src", module)

    def owner_of_private(self, path):
        """The module whose src/<m>/ folder holds `path`, or None."""
        path = os.path.normpath(path)
        for m in self.modules:
            d = self.private_dir(m)
            if path.startswith(d + os.sep):
                return m
        return None

    def private_target(self, including_file, name):
        """The module whose private header `name` names, or None."""
        # Relative to the including file (how "x.h" is found first).
        here = os.path.normpath(os.path.join(os.path.dirname(including_file), name))
        if os.path.isfile(here):
            return self.owner_of_private(here)
        # "<m2>/x.h" through a src/ include root.
        first = name.split("/", 1)[0]
        if first in self.rank and os.path.isfile(os.path.join(self.root, "src", name)):
            return first
        # A bare name found through another include root is not private.
        for d in ("include", "tests", "tools", os.path.join("python", "src"), "examples"):
            if os.path.isfile(os.path.join(self.root, d, name)):
                return None
        # A bare name that only a module's private folder holds.
        for m in self.modules:
            if os.path.isfile(os.path.join(self.private_dir(m), name)):
                return m
        return None

    def report(self, path, line, message):
        self.violations.append(f"{self.rel(path)}:{line}: {message}")

    def check_file(self, path, module, kind):
        """kind: 'source' (src/<m>), 'public' (include/omniplacement/<m>),
        'test' (tests or benchmark of module m) or 'client' (no module)."""
        self.files += 1
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()
        except OSError as e:
            self.report(path, 0, f"cannot read: {e.strerror}")
            return
        for number, text in enumerate(lines, start=1):
            match = INCLUDE_RE.match(text)
            if not match:
                continue
            self.includes += 1
            name = match.group(2).strip()
            if name.startswith("omniplacement/"):
                parts = name.split("/")
                target = parts[1] if len(parts) > 2 else None
                if target not in self.rank:
                    self.report(path, number, f'includes "{name}": "{target}" is not a module '
                                f'(modules: {" ".join(self.modules)})')
                elif kind in ("source", "public") and self.rank[target] > self.rank[module]:
                    allowed = " ".join(self.modules[: self.rank[module] + 1])
                    self.report(path, number, f'module {module} includes "{name}" of module {target}, '
                                f"which comes after it in the layering (it may use: {allowed})")
                continue
            if match.group(1) == "<":
                # System and third-party headers, unless it names a private one: <m2>/x.h.
                first = name.split("/", 1)[0]
                private = first in self.rank and os.path.isfile(os.path.join(self.root, "src", name))
                owner = first if private else None
            else:
                owner = self.private_target(path, name)
            if owner is None:
                continue
            if kind == "public":
                self.report(path, number, f'installed header includes private header "{name}" of module '
                            f"{owner} (src/{owner}/ is not installed)")
            elif kind == "client":
                self.report(path, number, f'includes private header "{name}" of module {owner}; '
                            f"only module {owner}'s sources, tests/{owner}/ and bench/bench_{owner}.cc may")
            elif owner != module:
                self.report(path, number, f'{"module" if kind == "source" else "test of module"} {module} '
                            f'includes private header "{name}" of module {owner}; use a public header '
                            f"(include/omniplacement/{owner}/) instead")

    def run(self):
        for m in self.modules:
            for path in source_files(self.private_dir(m)):
                self.check_file(path, m, "source")
            for path in source_files(os.path.join(self.root, "include", "omniplacement", m)):
                self.check_file(path, m, "public")
            for path in source_files(os.path.join(self.root, "tests", m)):
                self.check_file(path, m, "test")
        tests = os.path.join(self.root, "tests")
        if os.path.isdir(tests):
            for entry in sorted(os.listdir(tests)):
                if entry in self.rank:
                    continue
                full = os.path.join(tests, entry)
                for path in (source_files(full) if os.path.isdir(full) else
                             [full] if full.endswith(EXTENSIONS) else []):
                    self.check_file(path, None, "client")
        bench = os.path.join(self.root, "bench")
        for path in source_files(bench):
            stem = os.path.splitext(os.path.basename(path))[0]
            m = stem[len("bench_"):] if stem.startswith("bench_") else None
            if m in self.rank and os.path.dirname(path) == bench:
                self.check_file(path, m, "test")
            else:
                self.check_file(path, None, "client")
        for folder in ("tools", os.path.join("python", "src"), "examples"):
            for path in source_files(os.path.join(self.root, folder)):
                self.check_file(path, None, "client")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    parser.add_argument("--modules", help="comma-separated modules in layering order (default: from CMakeLists.txt)")
    args = parser.parse_args()
    modules = args.modules.split(",") if args.modules else read_modules(args.root)
    checker = Checker(args.root, modules)
    checker.run()
    for v in checker.violations:
        print(v)
    summary = (f"check_includes: {checker.files} files, {checker.includes} includes, "
               f"{len(checker.violations)} violations (modules: {' '.join(modules)})")
    print(summary, file=sys.stderr if checker.violations else sys.stdout)
    return 1 if checker.violations else 0


if __name__ == "__main__":
    sys.exit(main())
