#!/usr/bin/env bash
# One pretraining process: the command every launcher runs (one process per host).
#
#   launch/run.sh --config=configs/pretrain.py --workdir=DIR [--config.field=value ...]
#
# Activates the repository's virtual environment when there is one (VENV overrides its path),
# then runs `python -m caltransfer_jax.main "$@"` from the repository root. On a cluster the
# entry point joins the other processes itself (jax.distributed; SLURM and TPU VMs are detected
# from the environment, CALTRANSFER_DISTRIBUTED=1 forces it).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [[ -f "$VENV/bin/activate" ]]; then
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
fi
# glibc malloc: one arena and no returning of freed memory to the OS. On CPU the step's many
# short-lived host buffers otherwise cost 20 % of its time (BENCHMARKS.md §2). Override any of
# them from the environment.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-1}"
export MALLOC_MMAP_MAX_="${MALLOC_MMAP_MAX_:-0}"
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-100000000000}"
exec python -m caltransfer_jax.main "$@"
