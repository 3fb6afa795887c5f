#!/usr/bin/env bash
# jaxlab on a Cloud TPU VM pod slice: every worker gets the same copy of the repository and runs the same
# command; jaxlab.parallel.initialize() finds the other workers through the TPU metadata server.
#
#   export TPU_NAME=my-v5p-32 ZONE=us-east5-a
#   tpu/tpu_pod.sh create                       # ACCELERATOR_TYPE (v5p-32), RUNTIME_VERSION (v2-alpha-tpuv5)
#   tpu/tpu_pod.sh copy                         # this checkout, without .venv/ runs/ .git/, replacing the last copy
#   tpu/tpu_pod.sh install                      # requirements.lock, then jax[tpu] at the lock's jax version
#   tpu/tpu_pod.sh train airletters train/configs/airletters.py:paper --workdir gs://bucket/runs/a \
#       --config.data_dir=gs://bucket/tfds     # in the background on every worker
#   tpu/tpu_pod.sh logs                         # the end of every worker's log (LOG_LINES=50; not LINES, which shells set to the terminal height)
#   tpu/tpu_pod.sh delete
#
# Every step prints the command it runs first; `--dry-run` (before the step) prints and runs nothing. The
# workdir and data must be shared by the workers (gs://, or a gcsfuse/NFS mount). A preempted slice: create
# it again, copy, install, train with the same --workdir; training resumes from the latest checkpoint.
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
STEP=${1:?"usage: tpu/tpu_pod.sh [--dry-run] create|copy|install|train METHOD CONFIG ARGS...|logs|delete"}
shift
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}
REMOTE=jaxlab                       # the copy, replaced by every `copy`
VENV=jaxlab-venv                    # beside it, so that a new copy keeps the installed environment
LOG=jaxlab-train.log
TARBALL=${TMPDIR:-/tmp}/jaxlab-$TPU_NAME.tar.gz

# Prints a command, shell-quoted, then runs it (unless --dry-run).
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $DRY_RUN == 0 ]]; then "$@"; fi
}

on_workers() {  # a shell command line on every worker
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$1"
}

case "$STEP" in
  create)
    run gcloud compute tpus tpu-vm create "$TPU_NAME" --zone "$ZONE" \
      --accelerator-type "${ACCELERATOR_TYPE:?set ACCELERATOR_TYPE, e.g. v5p-32}" \
      --version "${RUNTIME_VERSION:-v2-alpha-tpuv5}" ${SPOT:+--spot} ;;
  copy)
    run tar -czf "$TARBALL" -C "$REPO" --exclude=./.venv --exclude=./runs --exclude=./.git \
      --exclude=__pycache__ .
    run gcloud compute tpus tpu-vm scp "$TARBALL" "$TPU_NAME:jaxlab.tar.gz" --zone "$ZONE" --worker=all
    on_workers "rm -rf ~/$REMOTE && mkdir ~/$REMOTE && tar -xzf ~/jaxlab.tar.gz -C ~/$REMOTE" ;;
  install)
    JAX_VERSION=$(grep '^jax==' "$REPO/requirements.lock" | cut -d= -f3)
    PIP="~/$VENV/bin/pip install -q"
    on_workers "set -e; cd ~/$REMOTE; test -x ~/$VENV/bin/python || python3 -m venv ~/$VENV; \
$PIP -r requirements.lock; $PIP 'jax[tpu]==$JAX_VERSION'; $PIP --no-deps -e ." ;;
  train)
    (( $# >= 2 )) || { echo "usage: tpu/tpu_pod.sh train METHOD CONFIG [--workdir DIR] [--config.KEY=VALUE ...]" >&2; exit 2; }
    printf -v ARGS ' %q' "$@"  # each argument quoted once more, for the remote shell
    on_workers "cd ~/$REMOTE && nohup ~/$VENV/bin/jaxlab train$ARGS > ~/$LOG 2>&1 < /dev/null &" ;;
  logs)
    on_workers "tail -n ${LOG_LINES:-50} ~/$LOG" ;;
  delete)
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone "$ZONE" --quiet ;;
  *)
    echo "unknown step $STEP: create, copy, install, train, logs or delete" >&2; exit 2 ;;
esac
