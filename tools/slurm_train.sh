#!/usr/bin/env bash
# Training on a Slurm cluster: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py args]
# srun starts one task per GPU (GPUS in total, GPUS_PER_NODE per node); each task runs
# tools/train.py with --launcher slurm, which reads the rank and world size from Slurm.
# The work dir must be on a file system every node sees (checkpoints, SPT allocation).
set -euo pipefail
if [ $# -lt 3 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: $(basename "$0") PARTITION JOB_NAME CONFIG [tools/train.py options]"
  echo "  env: GPUS (8) GPUS_PER_NODE (min(GPUS, 8)) CPUS_PER_TASK (5) SRUN_ARGS ('')"
  [ $# -ge 1 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; } && exit 0
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
read -r -a EXTRA_SRUN <<< "${SRUN_ARGS:-}"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
  --job-name="$JOB_NAME" \
  --gres=gpu:"$GPUS_PER_NODE" \
  --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 \
  "${EXTRA_SRUN[@]}" \
  "$PY" -u "$ROOT/tools/train.py" "$CONFIG" --launcher slurm "$@"
