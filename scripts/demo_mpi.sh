#!/usr/bin/env bash
# The demo across N processes that survive a dead peer: UcxTransport,
# launched by mpirun with the flags it needs.
#   bash scripts/demo_mpi.sh N [demo args...]
#   bash scripts/demo_mpi.sh 4 --fail-rank 2 --fail-at-step 200 --json
#   bash scripts/demo_mpi.sh 4 --stall-rank 2 --stall-at-step 200 --stall-ms 5000 --json
# Flags:
#   --enable-recovery   the death of one process does not make mpirun kill the
#                       others (without it, mpirun aborts the job about 1 s later)
#   --oversubscribe     more processes than cores (CI machines)
#   --allow-run-as-root only when run as root
# The processes use MPI only to exchange their UCX addresses at start, then
# finalise it, so no process ever blocks in MPI on a peer that died or stopped.
# Open MPI prints "PMIX ERROR: BAD-PARAM ... pmix_event_notification.c" when a
# process of a job with --enable-recovery is killed: that line is filtered out,
# as is the wrapper shell's "Killed" for a crash injected with SIGKILL.
# OMNIPLACE=path/to/omniplace runs another build; MPIRUN_FLAGS adds flags.
# Exit status: mpirun --enable-recovery exits 0 whatever its processes
# return, so each process runs under a small wrapper that records its own
# exit status; the script exits with the first nonzero one (in rank order).
# A process ended by SIGKILL (137) counts as expected only when the arguments
# ask for a crash (--fail-rank, --fail-host).
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
  echo "usage: bash scripts/demo_mpi.sh N [omniplace demo args...]" >&2
  exit 2
fi
n=$1
shift
bin=${OMNIPLACE:-build/bin/omniplace}
if [[ ! -x $bin ]]; then
  echo "demo_mpi.sh: $bin not found; build first (bash scripts/run.sh, or cmake --build build --target omniplace)" >&2
  exit 2
fi
flags=(--enable-recovery --oversubscribe)
if [[ $(id -u) -eq 0 ]]; then flags+=(--allow-run-as-root); fi
crash_expected=0
for a in "$@"; do
  if [[ $a == --fail-rank || $a == --fail-host ]]; then crash_expected=1; fi
done
rc_dir=$(mktemp -d "${TMPDIR:-/tmp}/omni_demo_mpi.XXXXXX")
trap 'rm -rf "$rc_dir"' EXIT
# Each rank: run the demo, then write its exit status to $rc_dir/<rank>.
wrapper='"$@"; rc=$?; echo "$rc" > "'$rc_dir'/${OMPI_COMM_WORLD_RANK:-x}"; exit "$rc"'
# stdout passes through (fd 3); stderr goes through the filter.
{
  # shellcheck disable=SC2086
  mpirun "${flags[@]}" ${MPIRUN_FLAGS:-} -np "$n" sh -c "$wrapper" sh "$bin" demo --transport ucx "$@" 2>&1 1>&3 3>&- |
    grep -v --line-buffered -e 'PMIX ERROR: BAD-PARAM in file .*pmix_event_notification.c' -e '^Killed$' >&2 3>&-
  launcher=${PIPESTATUS[0]}
  if [[ $launcher -ne 0 ]]; then exit "$launcher"; fi
  for ((r = 0; r < n; ++r)); do
    if [[ ! -f $rc_dir/$r ]]; then
      echo "demo_mpi.sh: rank $r left no exit status (its wrapper was killed)" >&2
      exit 1
    fi
    rc=$(cat "$rc_dir/$r")
    if [[ $rc -eq 137 && $crash_expected -eq 1 ]]; then continue; fi
    if [[ $rc -ne 0 ]]; then
      echo "demo_mpi.sh: rank $r exited with status $rc" >&2
      exit "$rc"
    fi
  done
  exit 0
} 3>&1
