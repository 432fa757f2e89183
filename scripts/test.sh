#!/usr/bin/env bash
# Every test but the gpu label: install what is missing, build, run ctest.
# Usage: bash scripts/test.sh
#
# Stages:
#   1. Release build in build/ (warnings are errors), ctest -LE gpu.
#   2. TSan build in build-tsan/ of the modules with concurrent code, running
#      only the suites listed in OMNI_TSAN_TESTS (kept small for CI time).
#   3. ASan+UBSan build in build-asan/ (clang) of core, dispatch, planner and io: their
#      cpu suites, and the libFuzzer targets when fuzz/ exists (ctest -L fuzz,
#      each target for a bounded time on its seed corpus).
cd "$(dirname "$0")/.."
source scripts/common.sh
omni_ensure_packages "${OMNI_PACKAGES[@]}"
start=$(date +%s)
omni_build
echo "== ctest (all labels but gpu)"
(cd build && ctest -LE gpu --output-on-failure -j"$(nproc)")

# Suites (ctest names, also their targets) that must also pass under
# ThreadSanitizer. runtime_tsan is the concurrent part of runtime_test (the
# randomized protocol test, LocalCluster, dumps, snapshot swaps, failover) and
# demo_tsan that of demo_test (the demo end to end, a crashed rank), built
# only in sanitizer builds (tests/runtime/ and tests/demo/CMakeLists.txt).
OMNI_TSAN_TESTS=(capture_test transport_test runtime_tsan demo_tsan)
# Modules those suites need.
OMNI_TSAN_MODULES="core,dispatch,planner,io,capture,transport,runtime"
if ((${#OMNI_TSAN_TESTS[@]})); then
  echo "== ThreadSanitizer: ${OMNI_TSAN_TESTS[*]}"
  tsan_start=$(date +%s)
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOMNI_WERROR=ON -DOMNI_SANITIZE=thread \
    -DOMNI_MODULES="$OMNI_TSAN_MODULES" -DOMNI_BUILD_BENCH=OFF -DOMNI_BUILD_TOOLS=OFF -DOMNI_BUILD_PYTHON=OFF \
    >build-configure.log 2>&1 || { cat build-configure.log; exit 1; }
  cmake --build build-tsan -j"$(nproc)" --target "${OMNI_TSAN_TESTS[@]}"
  regex=$(IFS='|'; echo "^(${OMNI_TSAN_TESTS[*]})\$")
  (cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest -R "$regex" --output-on-failure)
  echo "== ThreadSanitizer stage: $(( $(date +%s) - tsan_start )) s"
fi

# ASan+UBSan with clang over the modules that parse untrusted input, running
# their cpu suites and (when fuzz/ exists) the libFuzzer targets (label fuzz).
echo "== ASan+UBSan (clang): cpu suites of core, dispatch, planner, io, and fuzzing"
fuzz_flag=OFF
if [[ -f fuzz/CMakeLists.txt ]]; then fuzz_flag=ON; fi
CC=clang CXX=clang++ cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOMNI_WERROR=ON \
  -DOMNI_SANITIZE=address -DOMNI_BUILD_FUZZERS=$fuzz_flag -DOMNI_MODULES=core,dispatch,planner,io -DOMNI_BUILD_TESTS=ON \
  -DOMNI_BUILD_BENCH=OFF -DOMNI_BUILD_TOOLS=OFF >build-configure.log 2>&1 || { cat build-configure.log; exit 1; }
cmake --build build-asan -j"$(nproc)"
# One suite per core: each fuzz target runs for a fixed time on one thread.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest -L "cpu|fuzz" --output-on-failure -j"$(nproc)")
echo "== all test stages passed in $(( $(date +%s) - start )) s"
