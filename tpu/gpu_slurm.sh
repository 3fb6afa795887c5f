#!/usr/bin/env bash
# jaxlab on a SLURM GPU cluster. The repository is on a filesystem every node sees.
#
#   tpu/gpu_slurm.sh install                   # once: .venv from requirements.lock, jax[cuda13] at the lock's version
#   NODES=4 tpu/gpu_slurm.sh submit airletters train/configs/airletters.py:paper --workdir /shared/runs/a \
#       --config.data_dir=/shared/tfds
#
# `submit` hands this script to sbatch; inside the job it runs `jaxlab train ...` under srun. Tasks:
# TASKS=node (default) is one task per node driving all its GPUS_PER_NODE (8) GPUs; TASKS=gpu is one task per
# GPU. jaxlab.parallel.initialize() reads SLURM's variables either way. Every step prints the command it runs
# first; `--dry-run` (before the step) prints and runs nothing. SBATCH_ARGS adds sbatch options
# ('--partition=gpu --time=24:00:00'); job logs go to LOG_DIR (runs/slurm). Resubmitting with the same --workdir
# resumes from the latest checkpoint.
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
STEP=${1:?"usage: tpu/gpu_slurm.sh [--dry-run] install|submit METHOD CONFIG ARGS..."}
shift
REPO=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
case "${TASKS:-node}" in
  node) TASKS_PER_NODE=1 ;;
  gpu) TASKS_PER_NODE=$GPUS_PER_NODE ;;
  *) echo "TASKS must be node (one task per node, all its GPUs) or gpu (one task per GPU)" >&2; exit 2 ;;
esac

run() {  # prints a command, shell-quoted, then runs it (unless --dry-run)
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $DRY_RUN == 0 ]]; then "$@"; fi
}

case "$STEP" in
  install)
    JAX_VERSION=$(grep '^jax==' "$REPO/requirements.lock" | cut -d= -f3)
    [[ -x "$REPO/.venv/bin/python" ]] || run python3 -m venv "$REPO/.venv"
    run "$REPO/.venv/bin/pip" install -q -r "$REPO/requirements.lock"
    run "$REPO/.venv/bin/pip" install -q "jax[cuda13]==$JAX_VERSION"
    run "$REPO/.venv/bin/pip" install -q --no-deps -e "$REPO" ;;
  submit)
    (( $# >= 2 )) || { echo "usage: tpu/gpu_slurm.sh submit METHOD CONFIG [--workdir DIR] [--config.KEY=VALUE ...]" >&2; exit 2; }
    LOG_DIR=${LOG_DIR:-$REPO/runs/slurm}
    run mkdir -p "$LOG_DIR"
    run sbatch --nodes "${NODES:-1}" --gpus-per-node "$GPUS_PER_NODE" --ntasks-per-node "$TASKS_PER_NODE" \
      --exclusive --job-name "jaxlab-$1" --output "$LOG_DIR/%x-%j.log" \
      ${SBATCH_ARGS:-} "$REPO/tpu/gpu_slurm.sh" job "$@" ;;
  job)  # inside the allocation (sbatch runs this)
    cd "$REPO"
    export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
    run srun --kill-on-bad-exit=1 "$REPO/.venv/bin/jaxlab" train "$@" ;;
  *)
    echo "unknown step $STEP: install or submit" >&2; exit 2 ;;
esac
