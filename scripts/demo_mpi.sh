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
# process of a job with --enable-recovery is killed: that line is filtered out.
# OMNIPLACE=path/to/omniplace runs another build; MPIRUN_FLAGS adds flags.
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
# stdout passes through (fd 3); stderr goes through the filter.
{
  # shellcheck disable=SC2086
  mpirun "${flags[@]}" ${MPIRUN_FLAGS:-} -np "$n" "$bin" demo --transport ucx "$@" 2>&1 1>&3 3>&- |
    grep -v --line-buffered 'PMIX ERROR: BAD-PARAM in file .*pmix_event_notification.c' >&2 3>&-
  exit "${PIPESTATUS[0]}"
} 3>&1
