#!/usr/bin/env bash
# Pretraining on this machine's CPU split into 8 fake devices (exercises the sharded path).
#
#   launch/local_cpu.sh [WORKDIR] [extra flags ...]
#
# Default: the tiny config into runs/local_tiny. Any flag overrides, e.g.
#   launch/local_cpu.sh runs/q --config=configs/pretrain.py:quick
set -euo pipefail
cd "$(dirname "$0")/.."
WORKDIR="${1:-runs/local_tiny}"
shift || true
export JAX_PLATFORMS=cpu
export XLA_FLAGS="--xla_force_host_platform_device_count=8 ${XLA_FLAGS:-}"
exec launch/run.sh --config=configs/pretrain.py:tiny --workdir="$WORKDIR" "$@"
