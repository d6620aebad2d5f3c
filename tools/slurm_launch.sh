#!/usr/bin/env bash
# What tools/slurm_train.sh and tools/slurm_test.sh share: srun starts one task per GPU
# (GPUS in total, GPUS_PER_NODE per node); each task runs tools/<TOOL>.py with
# --launcher slurm, which reads the rank and world size from Slurm.
#   tools/slurm_launch.sh train|test NUM_POSITIONAL PARTITION JOB_NAME ARGS...
# (the tool's NUM_POSITIONAL leading ARGS -- CONFIG [CHECKPOINT] -- come before
# --launcher slurm, its options after)
set -euo pipefail
TOOL=$1
NUM_POSITIONAL=$2
PARTITION=$3
JOB_NAME=$4
shift 4
POSITIONAL=("${@:1:$NUM_POSITIONAL}")
shift "$NUM_POSITIONAL"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
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
  "$PY" -u "$ROOT/tools/$TOOL.py" "${POSITIONAL[@]}" --launcher slurm "$@"
