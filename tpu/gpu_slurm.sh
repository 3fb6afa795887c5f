#!/usr/bin/env bash
# Train a jaxlab method on a SLURM GPU cluster: one task per node, each task drives all GPUs of its node.
#
#   sbatch --nodes=4 --gpus-per-node=8 tpu/gpu_slurm.sh airletters train/configs/airletters.py:paper \
#     /shared/runs/airletters --config.data_dir=/shared/tfds
#
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
set -euo pipefail
METHOD=${1:?method}; CONFIG=${2:?config file:variant}; WORKDIR=${3:?workdir}; shift 3
REPO=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$REPO"
# Once per cluster: python3 -m venv .venv && .venv/bin/pip install -r requirements.lock \
#   && .venv/bin/pip install --no-deps -e '.[gpu]' && .venv/bin/pip install 'jax[cuda13]'
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
# jax.distributed.initialize() reads SLURM's variables (SLURM_NTASKS, SLURM_PROCID, node list) by itself.
srun --kill-on-bad-exit=1 .venv/bin/jaxlab train "$METHOD" --config "$CONFIG" --workdir "$WORKDIR" "$@"
