#!/usr/bin/env bash
# Stress check for the process transports (kept out of CI: it takes about an
# hour): runs the 4-process demo RUNS times with two busy loops beside it and
# counts crashes (non-zero exit or signal), hangs (no end within the limit)
# and runs with wrong outputs.
#   bash scripts/stress_mpi_demo.sh [RUNS=100] [TRANSPORT=mpi] [extra demo args...]
# With TRANSPORT=ucx each run goes through scripts/demo_mpi.sh (launcher flags,
# per-rank exit statuses). OMNIPLACE=path/to/omniplace runs another build; STRESS_LIMIT_S (900) bounds one run (a loaded run takes 2-5 minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
transport=${2:-mpi}
shift $(( $# > 2 ? 2 : $# ))
limit=${STRESS_LIMIT_S:-900}
export OMNI_DATA_DIR=${OMNI_DATA_DIR:-$PWD/data}  # a copied binary finds the shipped trace
root_flag=()
if [[ $(id -u) -eq 0 ]]; then root_flag=(--allow-run-as-root); fi
log=$(mktemp -d /tmp/omni_stress.XXXXXX)
timeout $((limit * runs + 600)) sh -c 'while :; do :; done' & busy1=$!
timeout $((limit * runs + 600)) sh -c 'while :; do :; done' & busy2=$!
trap 'kill $busy1 $busy2 2>/dev/null' EXIT
ok=0; crashes=0; hangs=0; wrong=0
for ((i = 1; i <= runs; ++i)); do
  start=$(date +%s.%N)
  if [[ $transport == ucx ]]; then
    # mpirun --enable-recovery exits 0 whatever its processes return:
    # demo_mpi.sh records each rank's exit status and exits with the first
    # nonzero one (timeout signals its whole process group, mpirun included).
    timeout -k 10 "$limit" bash scripts/demo_mpi.sh 4 --json "$@" >"$log/run$i.json" 2>"$log/run$i.err"
  else
    timeout -k 10 "$limit" mpirun "${root_flag[@]}" --oversubscribe -np 4 \
      "${OMNIPLACE:-build/bin/omniplace}" demo --transport "$transport" --json "$@" >"$log/run$i.json" 2>"$log/run$i.err"
  fi
  rc=$?
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    hangs=$((hangs + 1)); verdict=hang
  elif [[ $rc -ne 0 ]]; then
    crashes=$((crashes + 1)); verdict="crash (exit $rc)"
  elif ! /usr/bin/python3 -c "import json,sys; sys.exit(json.load(open('$log/run$i.json'))['wrong_outputs'] != 0)"; then
    wrong=$((wrong + 1)); verdict="wrong outputs"
  else
    ok=$((ok + 1)); verdict=ok
  fi
  printf 'run %d/%d: %s, %.1f s\n' "$i" "$runs" "$verdict" "$secs"
  if [[ $verdict != ok ]]; then grep -v -e '^-*$' "$log/run$i.err" | head -5 | sed 's/^/    /'; fi
done
echo "stress: $runs runs of the $transport demo beside two busy loops: $ok ok, $crashes crashes, $hangs hangs, $wrong with wrong outputs (logs in $log)"
[[ $crashes -eq 0 && $hangs -eq 0 && $wrong -eq 0 ]]
