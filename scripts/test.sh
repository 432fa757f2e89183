#!/usr/bin/env bash
# Every test but the gpu label: install what is missing, build, run ctest.
# Usage: bash scripts/test.sh
cd "$(dirname "$0")/.."
source scripts/common.sh
omni_ensure_packages "${OMNI_PACKAGES[@]}"
omni_build
echo "== ctest (all labels but gpu)"
(cd build && ctest -LE gpu --output-on-failure -j"$(nproc)")
