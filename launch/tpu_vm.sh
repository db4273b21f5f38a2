#!/usr/bin/env bash
# TPU VM (single- or multi-host slice): copy the repository to every worker, set it up once,
# and start one process per worker.
#
#   launch/tpu_vm.sh TPU_NAME ZONE gs://BUCKET/runs/pretrain --config=configs/pretrain.py [...]
#
# The workdir must be reachable from every worker (a gs:// path works with orbax). Rerunning the
# same command resumes from the latest checkpoint. On a TPU VM, jax.distributed.initialize()
# finds the other workers itself (CALTRANSFER_DISTRIBUTED=1 asks the entry point to call it).
set -euo pipefail
NAME="$1"; ZONE="$2"; WORKDIR="$3"; shift 3
REPO="$(cd "$(dirname "$0")/.." && pwd)"
ARGS="$(printf ' %q' "$@")"
gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" --worker=all \
  "$REPO" "$NAME":caltransfer_jax
gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all --command "
  set -e; cd caltransfer_jax
  if [[ ! -d .venv ]]; then
    python3.11 -m venv .venv && . .venv/bin/activate && pip install -q -e . 'jax[tpu]==0.10.2'
  fi
  CALTRANSFER_DISTRIBUTED=1 launch/run.sh --workdir=$WORKDIR $ARGS"
