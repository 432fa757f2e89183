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
echo "== omniplace plan (omni on the same window, 12 ranks on 3 hosts, one redundant slot per rank, replicas spread over hosts)"
mkdir -p build/run
build/bin/omniplace plan --load data/traces/qwen15moe_expert_freq_by_iteration.csv \
  --select dataset=wikitext,iteration=0 --planner 'omni(spread_hosts=true)' --num-ranks 12 --num-nodes 3 \
  --redundant-per-rank 1 --output build/run/plan.json
echo "== omniplace plan --current (re-plan for wmt19 from that plan and its hosts, at most 1 moved expert per rank and layer)"
build/bin/omniplace plan --load data/traces/qwen15moe_expert_freq_by_iteration.csv \
  --select dataset=wmt19,iteration=0 --current build/run/plan.json --max-moves-per-rank 1 \
  --output build/run/next.json --show-moves 5
