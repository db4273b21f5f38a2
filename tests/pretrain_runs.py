"""Helpers of the pretraining tests: tiny runs in subprocesses, with fault injection.

Subprocesses give each run a fresh JAX (so the fake CPU device count can be set before JAX
starts) and let a test kill a run. They share an XLA compilation cache (one compilation of the
tiny train step serves every test) and compile at XLA's lowest backend optimisation level,
which halves compile time on CPU.

Run as a script, this module trains with hooks in the input iterator, just before the batch of
a given step: `--sigterm_at` (the process sends itself SIGTERM: a preemption), `--kill_at`
(SIGKILL: a crash, possibly while a checkpoint is being written), `--nan_at` (the batch's master
spectra become NaN).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "pretrain.py"
CACHE = pathlib.Path(tempfile.gettempdir()) / "caltransfer_jax_test_xla_cache"
# Every test run uses these settings unless it overrides them: the same compiled programs.
TINY = ("--config.total_steps=4", "--config.log_every=1", "--config.eval_every=0")


def env(devices: int) -> dict[str, str]:
    """Environment of a CPU run with `devices` fake devices and the shared compile cache."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TPU_"))}
    out.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
        "--xla_backend_optimization_level=0",
        JAX_COMPILATION_CACHE_DIR=str(CACHE),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        PYTHONPATH=str(REPO),
    )
    return out


def main_command(workdir: pathlib.Path, *flags: str) -> list[str]:
    """`python -m caltransfer_jax.main` on the tiny config with the test defaults."""
    return [
        sys.executable,
        "-m",
        "caltransfer_jax.main",
        f"--config={CONFIG}:tiny",
        f"--workdir={workdir}",
        *TINY,
        *flags,
    ]


def hooked_command(workdir: pathlib.Path, *flags: str, **hooks: int) -> list[str]:
    """This module as a script: a tiny run with fault injection (`sigterm_at`, `kill_at`,
    `nan_at`)."""
    return [
        sys.executable,
        str(pathlib.Path(__file__).resolve()),
        json.dumps(hooks),
        f"--config={CONFIG}:tiny",
        f"--workdir={workdir}",
        *TINY,
        *flags,
    ]


def run(command: list[str], devices: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs a command to completion; output captured (stdout and stderr together)."""
    return subprocess.run(
        command,
        env=env(devices),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    """Asserts a zero exit status (showing the output's tail otherwise); returns the output."""
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout[-5000:]}"
    return result.stdout


def read_jsonl(path: pathlib.Path) -> list[dict]:
    """The records of a metrics.jsonl."""
    return [json.loads(line) for line in path.read_text().splitlines()]


@functools.cache
def reference_run() -> pathlib.Path:
    """An uninterrupted 4-step run on one device with one evaluation (once per test process)."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="caltransfer_reference_"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    ok(run(main_command(workdir, "--config.eval_every=4")))
    return workdir


def exported_params(workdir: pathlib.Path) -> dict:
    """The parameters of a run's export as numpy arrays (through `load_export`)."""
    import jax
    import numpy as np
    from flax import nnx

    from caltransfer_jax.models.export import load_export

    model, _ = load_export(workdir / "export")
    return jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def train_losses(workdir: pathlib.Path) -> dict[int, float]:
    """{step: train/loss} of a run (the last record of a step wins)."""
    return {
        r["step"]: r["train/loss"]
        for r in read_jsonl(workdir / "metrics.jsonl")
        if "train/loss" in r
    }


def _main() -> None:
    hooks = json.loads(sys.argv.pop(1))
    from absl import app

    from caltransfer_jax import main as entry
    from caltransfer_jax.pretrain import data as pretrain_data

    original = pretrain_data.PretrainData.__next__

    def hooked(self):
        step = self.pipeline.get_state().step + 1  # the step this batch is for (1-based)
        if step == hooks.get("sigterm_at"):
            os.kill(os.getpid(), signal.SIGTERM)
        if step == hooks.get("kill_at"):
            os.kill(os.getpid(), signal.SIGKILL)
        batch = original(self)
        if step == hooks.get("nan_at"):
            batch["master_values"] = batch["master_values"] * float("nan")
        return batch

    pretrain_data.PretrainData.__next__ = hooked
    app.run(entry.main)


if __name__ == "__main__":
    _main()
