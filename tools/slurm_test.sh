#!/usr/bin/env bash
# Testing on a Slurm cluster:
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]
# (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS: see tools/slurm_launch.sh)
set -euo pipefail
if [ $# -lt 4 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: $(basename "$0") PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options]"
  echo "  env: GPUS (8) GPUS_PER_NODE (min(GPUS, 8)) CPUS_PER_TASK (5) SRUN_ARGS ('')"
  [ $# -ge 1 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; } && exit 0
  exit 2
fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/slurm_launch.sh" test 2 "$@"
