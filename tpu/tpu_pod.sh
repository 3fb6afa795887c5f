#!/usr/bin/env bash
# Train a jaxlab method on a Cloud TPU VM pod slice.
#
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a WORKDIR=/gcs/bucket/runs/airletters \
#     tpu/tpu_pod.sh airletters train/configs/airletters.py:paper --config.data_dir=/gcs/bucket/tfds
#
# WORKDIR and the data dir must be visible from every worker (gcsfuse mount or NFS).
set -euo pipefail
METHOD=${1:?method}; CONFIG=${2:?config file:variant}; shift 2
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${WORKDIR:?set WORKDIR}"
REPO=${REPO:-$(git rev-parse --show-toplevel)}
REMOTE_DIR=${REMOTE_DIR:-jaxlab}

gcloud compute tpus tpu-vm scp --recurse --zone "$ZONE" --worker=all "$REPO" "$TPU_NAME:~/$REMOTE_DIR"
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
  set -e
  cd ~/$REMOTE_DIR
  test -x .venv/bin/python || python3 -m venv .venv
  .venv/bin/pip install -q -r requirements.lock && .venv/bin/pip install -q --no-deps -e '.[tpu]'
  .venv/bin/pip install -q 'jax[tpu]==$(grep '^jax==' requirements.lock | cut -d= -f3)'
  .venv/bin/jaxlab train $METHOD --config $CONFIG --workdir $WORKDIR $*
"
