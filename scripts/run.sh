#!/usr/bin/env bash
# The main job: install what is missing, build, and run omniplace on shipped data.
# Usage: bash scripts/run.sh
cd "$(dirname "$0")/.."
source scripts/common.sh
omni_ensure_packages "${OMNI_PACKAGES[@]}"
omni_build
echo "== omniplace demo (12 ranks serve a toy MoE on the Qwen1.5-MoE series while placement changes)"
build/bin/omniplace demo
echo "== omniplace info"
build/bin/omniplace info
