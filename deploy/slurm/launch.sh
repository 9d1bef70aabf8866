#!/bin/bash
# Submits a federated run to Slurm: one server job and an array of N client jobs.
#   deploy/slurm/launch.sh SCENARIO N [extra sbatch flags for both, e.g. --partition=cpu]
# Environment: as in server.sbatch (DISTILLERY_RUN, DISTILLERY_BIN, DISTILLERY_TLS_DIR, ...).
set -euo pipefail
scenario=$(realpath "${1:?usage: launch.sh SCENARIO N [sbatch flags]}")
n=${2:?usage: launch.sh SCENARIO N [sbatch flags]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
export SCENARIO=$scenario
export DISTILLERY_RUN=${DISTILLERY_RUN:-$PWD/distillery-run}
mkdir -p "$DISTILLERY_RUN"
# A URL left by an earlier run would send the new clients to a server that is gone.
rm -f "$DISTILLERY_RUN/server-url"
sbatch --export=ALL "$@" "$here/server.sbatch"
sbatch --export=ALL --array="0-$((n - 1))" "$@" "$here/clients.sbatch"
