r"""Pretraining entry point.

    python -m caltransfer_jax.main --config=configs/pretrain.py --workdir=DIR
    python -m caltransfer_jax.main --config=configs/pretrain.py:quick --workdir=DIR \
        --config.total_steps=300

Parses the flags, joins the cluster when there is one, and calls
`caltransfer_jax.pretrain.train.train_and_evaluate`. On a cluster (SLURM with several tasks, TPU VMs, or
an explicit `--coordinator_address`), `jax.distributed.initialize()` runs first; it detects the
peers from the environment on SLURM and TPU VMs. `launch/` holds the wrappers.
"""

from __future__ import annotations

import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from caltransfer_jax import runtime
from caltransfer_jax.pretrain import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Pretraining config file (configs/pretrain.py[:variant]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (clusters without auto-detection)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_CPU_COLLECTIVES = flags.DEFINE_string(
    "cpu_collectives", None, "Cross-process CPU collectives ('gloo'); CPU-only clusters and tests."
)


# Devices are counted later; here the bounds and the device-free constraints.
flags.register_validator(
    "config", runtime.config_validator(lambda c: train.validate(c, num_devices=1, num_processes=1))
)


def _on_cluster() -> bool:
    """Whether this process is one of several (explicit flags, SLURM, TPU VM or env request)."""
    return bool(
        _COORDINATOR.value
        or int(os.environ.get("SLURM_NTASKS", "1")) > 1
        or os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0
        or os.environ.get("CALTRANSFER_DISTRIBUTED") == "1"
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.configure()
    if _CPU_COLLECTIVES.value:
        jax.config.update("jax_cpu_collectives_implementation", _CPU_COLLECTIVES.value)
    joined = _on_cluster() and not jax.distributed.is_initialized()
    if joined:
        jax.distributed.initialize(
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
        )
    logging.info(
        "process %d of %d: %d local of %d devices (%s)",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices()[0].device_kind,
    )
    try:
        train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    finally:
        if joined:  # leave together (a process left behind waits for the others at exit)
            jax.distributed.shutdown()


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
