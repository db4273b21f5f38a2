#!/usr/bin/env bash
# TPU VM (single- or multi-host slice): copy the repository to every worker, set it up once,
# and start one process per worker.
#
#   launch/tpu_vm.sh TPU_NAME ZONE gs://BUCKET/runs/pretrain --config=configs/pretrain.py [...]
#
# The workdir must be reachable from every worker (a gs:// path works with orbax). Rerunning the
# same command resumes from the latest checkpoint. On a TPU VM, jax.distributed.initialize()
# finds the other workers itself (CALTRANSFER_DISTRIBUTED=1 asks the entry point to call it).
#
# The remote command is one string run by each worker's shell (bash): the workdir and the other
# arguments enter it quoted with printf %q, so spaces, ';', '$' or quotes in them stay part of
# the argument; control characters (a newline above all) are refused.
set -euo pipefail
if (( $# < 3 )); then
  echo "usage: $0 TPU_NAME ZONE WORKDIR [--config=... ...]" >&2
  exit 2
fi
NAME="$1"; ZONE="$2"; WORKDIR="$3"; shift 3
if [[ -z "$WORKDIR" ]]; then
  echo "$0: the workdir is empty; pass a path every worker reaches (e.g. gs://BUCKET/runs/x)" >&2
  exit 2
fi
if [[ "$WORKDIR" =~ [[:cntrl:]] ]]; then
  echo "$0: the workdir $(printf %q "$WORKDIR") contains a newline or another control" \
    "character; choose a path without one" >&2
  exit 2
fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORKDIR_ARG="$(printf %q "--workdir=$WORKDIR")"
ARGS="$(printf ' %q' "$@")"
gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" --worker=all \
  "$REPO" "$NAME":caltransfer_jax
gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all --command "
  set -e; cd caltransfer_jax
  if [[ ! -d .venv ]]; then
    python3.11 -m venv .venv && . .venv/bin/activate && pip install -q -e . 'jax[tpu]==0.10.2'
  fi
  CALTRANSFER_DISTRIBUTED=1 launch/run.sh $WORKDIR_ARG$ARGS"
