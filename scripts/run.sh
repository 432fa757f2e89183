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
echo "== omniplace validate (an omni-infer pattern with layer-wise uneven layers)"
build/bin/omniplace validate \
  data/patterns/DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy --strict
echo "== omniplace eval (Qwen1.5-MoE trace, wikitext iteration 0, contiguous placement on 12 ranks)"
build/bin/omniplace eval --placement data/placements/qwen15moe_contiguous_12ranks_6slots.json \
  --load data/traces/qwen15moe_expert_freq_by_iteration.csv --select dataset=wikitext,iteration=0
