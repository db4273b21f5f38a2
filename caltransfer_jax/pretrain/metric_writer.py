"""Metrics and progress: JSONL + TensorBoard event files on process 0, steps/s and ETA.

`MetricWriter` appends one JSON object per call to `workdir/metrics.jsonl` (`{"step": s, ...}`)
and mirrors every scalar to TensorBoard event files in `workdir/tensorboard` (tensorboardX, no
TensorFlow needed). Other processes write nothing. On a resumed run the JSONL file is appended
to, so it holds the whole history (steps repeated after a crash are written again; readers keep
the last record of a step).

`Progress` measures training speed on the train loop alone: the clock starts after the first
step (which includes compilation) and stops during evaluations and checkpoint waits, so steps/s
and the ETA are those of steady-state training.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Mapping

import numpy as np
from tensorboardX import SummaryWriter


class MetricWriter:
    """Process-0 JSONL + TensorBoard writer.

    Args:
        workdir: run directory.
        enabled: False on processes other than 0 (every call is then a no-op).
    """

    def __init__(self, workdir: str | pathlib.Path, enabled: bool):
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if enabled:
            workdir = pathlib.Path(workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")
            self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Writes scalars of `step` (non-finite values are kept in JSON as null)."""
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in scalars.items()}
        record = {
            "step": int(step),
            **{k: (v if math.isfinite(v) else None) for k, v in clean.items()},
        }
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for name, value in clean.items():
            self._tb.add_scalar(name, value, int(step))
        self._tb.flush()

    def close(self) -> None:
        """Flushes and closes the files."""
        if self.enabled:
            self._jsonl.close()
            self._tb.close()


def read_metrics(path: str | pathlib.Path) -> dict[int, dict[str, float]]:
    """Reads a metrics.jsonl into {step: merged scalars} (the last record of a key wins)."""
    out: dict[int, dict[str, float]] = {}
    for line in pathlib.Path(path).read_text().splitlines():
        record = json.loads(line)
        step = record.pop("step")
        out.setdefault(step, {}).update(
            {k: (np.nan if v is None else v) for k, v in record.items()}
        )
    return out


class Progress:
    """Steady-state step time and ETA (compile time and pauses excluded).

    Args:
        total_steps: the step the run ends at.
        global_batch: examples per step (for examples/s).
    """

    def __init__(self, total_steps: int, global_batch: int):
        self.total_steps = total_steps
        self.global_batch = global_batch
        self._start_step: int | None = None  # set after the first (compiling) step
        self._start_time = 0.0
        self._paused = 0.0
        self._pause_began: float | None = None
        self.program_start = time.perf_counter()
        self.compile_seconds = math.nan

    def tick(self, step: int) -> None:
        """Call after finishing `step` steps (blocking on the result first)."""
        if self._start_step is None:
            now = time.perf_counter()
            self.compile_seconds = now - self.program_start
            self._start_step, self._start_time = step, now

    def pause(self) -> None:
        """Stops the clock (evaluation, checkpoint waits)."""
        self._pause_began = time.perf_counter()

    def resume(self) -> None:
        """Restarts the clock."""
        if self._pause_began is not None:
            self._paused += time.perf_counter() - self._pause_began
            self._pause_began = None

    def summary(self, step: int) -> dict[str, float]:
        """steps_per_s, step_time_s, examples_per_s, eta_s and first_step_s (with compile)."""
        if self._start_step is None or step <= self._start_step:
            return {"first_step_s": self.compile_seconds}
        elapsed = time.perf_counter() - self._start_time - self._paused
        rate = (step - self._start_step) / max(elapsed, 1e-9)
        return {
            "steps_per_s": rate,
            "step_time_s": 1.0 / rate,
            "examples_per_s": rate * self.global_batch,
            "eta_s": (self.total_steps - step) / rate,
            "first_step_s": self.compile_seconds,
        }

    @staticmethod
    def format(step: int, total: int, summary: Mapping[str, float]) -> str:
        """One human-readable progress line."""
        if "eta_s" not in summary:
            return f"step {step}/{total} (first step incl. compile {summary['first_step_s']:.1f}s)"
        eta = summary["eta_s"]
        return (
            f"step {step}/{total}: {summary['step_time_s']:.3f} s/step, "
            f"{summary['examples_per_s']:.1f} examples/s, ETA {int(eta // 3600)}h"
            f"{int(eta % 3600 // 60):02d}m{int(eta % 60):02d}s"
        )
