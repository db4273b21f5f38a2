"""Checkpoints, the run's config guard, and the params-only export.

Layout of a workdir:

    config.json          the run's config (written once; a different run is refused)
    checkpoints/<step>/  orbax: `state` (the sharded train state), `data` (input position, JSON),
                         and sha256sums.json, the checksum manifest of the step's files
    checkpoints/corrupt/<step>/  steps that failed verification, moved aside
    export/              params-only export: params/ (orbax), config.json, export.json
    metrics.jsonl, tensorboard/

Checkpoints go through one orbax `CheckpointManager`: asynchronous saves, the latest
`checkpoint.keep` kept plus the best by held-out masked-reconstruction error, unfinished
(temporary) directories of a killed run cleaned up at start, restore into sharded abstract
targets. A directory only becomes a checkpoint step once orbax has committed it, so a run killed
mid-save leaves the previous checkpoints intact.

Integrity: orbax stores no checksums, so a flipped bit in a data file restores silently as a wrong
parameter. Once orbax has committed a step (saves are asynchronous: at the next save, `wait` or
`close`, which wait for it anyway), process 0 writes the step's checksum manifest
(`models.export.write_manifest`, atomic). `restore_latest` checks the steps newest first: a step
whose files differ from its manifest is reported (a warning naming the step and the file) and,
once an intact step is found, moved to `checkpoints/corrupt/` so that orbax no longer sees it; the
run resumes from the newest intact step. A committed step without a manifest (the run was killed
before writing it) is restored unverified, and counts as corrupt if orbax cannot read it. With
checkpoints but none intact, `CorruptCheckpointError` names the directory and moves nothing: a
silent fresh start would discard the run's work.

The params-only export is written and read by `caltransfer_jax.models.export`.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

from caltransfer_jax.models import export
from caltransfer_jax.workdir import flatten

BEST_METRIC = "eval/msrp"
CORRUPT_DIR = "corrupt"  # under the checkpoint directory: steps moved aside
# Fields that may differ when a run resumes: cadence, devices and evaluation only. Anything
# else changes what is trained, so a workdir holding another setting is refused.
OPERATIONAL_FIELDS = (
    "log_every",
    "eval_every",
    "checkpoint",
    "mesh",
    "batch_axis",
    "sharding_rules",
    "data.prefetch",
    "eval",
)


class ConfigMismatchError(ValueError):
    """The workdir holds a run with another configuration."""


class CorruptCheckpointError(RuntimeError):
    """The checkpoint directory holds checkpoints, none of them intact."""


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as plain JSON data (tuples become lists)."""
    return json.loads(config.to_json_best_effort(sort_keys=True))


def _identity(flat: dict[str, Any]) -> dict[str, Any]:
    def operational(key: str) -> bool:
        return any(key == f or key.startswith(f + ".") for f in OPERATIONAL_FIELDS)

    return {k: v for k, v in flat.items() if not operational(k)}


def check_workdir_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> bool:
    """Refuses a workdir whose config.json describes another run.

    Args:
        workdir: the run directory.
        config: this run's config.

    Returns:
        Whether the workdir already held this run's config (a resume).

    Raises:
        ConfigMismatchError: naming the first differing fields, before anything is written.
    """
    path = workdir / "config.json"
    if not path.exists():
        return False
    old = _identity(flatten(json.loads(path.read_text())))
    new = _identity(flatten(config_to_dict(config)))
    differing = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if differing:
        shown = "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in differing[:8])
        more = f" and {len(differing) - 8} more" if len(differing) > 8 else ""
        raise ConfigMismatchError(
            f"{workdir} holds a run with another configuration ({shown}{more}). Resume it with "
            f"its own config ({path}) or use a new --workdir."
        )
    return True


def write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Writes config.json (process 0 only)."""
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(sort_keys=True, indent=2))


class Checkpointer:
    """The run's orbax CheckpointManager (train state + input position).

    Args:
        directory: checkpoint directory (created if missing).
        config: `config.checkpoint` (keep, async_save).
    """

    def __init__(self, directory: pathlib.Path, config: ml_collections.ConfigDict):
        policy = checkpoint_managers.AnyPreservationPolicy(
            [
                checkpoint_managers.LatestN(n=config.keep),
                # reverse=True sorts descending, so the n kept are the lowest errors.
                checkpoint_managers.BestN(
                    get_metric_fn=lambda metrics: metrics[BEST_METRIC],
                    reverse=True,
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=config.async_save,
            preservation_policy=policy,
            cleanup_tmp_directories=True,
            create=True,
        )
        self.directory = directory
        self.manager = ocp.CheckpointManager(
            directory, options=options, item_names=("state", "data")
        )
        self._pending: list[int] = []  # saved steps without a checksum manifest yet

    def latest_step(self) -> int | None:
        """The newest committed step, or None."""
        return self.manager.latest_step()

    def step_dir(self, step: int) -> pathlib.Path:
        """The directory of a committed step."""
        return self.directory / str(step)

    def save(
        self, step: int, state: Any, data_state: dict[str, Any], metrics: dict[str, float] | None
    ) -> None:
        """Starts saving `state` and the input position at `step` (asynchronously), after the
        previous save has finished (orbax waits for it anyway) and got its checksum manifest."""
        self._finish_pending()
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
            ),
            metrics=metrics,
            force=True,
        )
        self._pending.append(step)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """Restores (state, input position) of `step` into the abstract state's shardings (no
        verification: see `restore_latest`)."""
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["data"]

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """Restores the newest intact step, moving newer corrupt ones aside (module docstring).

        Args:
            abstract_state: the state's shapes, dtypes and shardings.

        Returns:
            (step, state, input position), or None when there is no checkpoint.

        Raises:
            CorruptCheckpointError: there are checkpoints but none is intact (nothing moved).
        """
        corrupt: list[tuple[int, str]] = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            problems = export.check_manifest(self.step_dir(step))
            if problems:
                logging.warning(
                    "checkpoint step %d in %s is corrupt: %s",
                    step,
                    self.directory,
                    "; ".join(problems),
                )
                corrupt.append((step, problems[0]))
                continue
            if problems is None:
                logging.warning(
                    "checkpoint step %d in %s has no %s (the run stopped before writing it): "
                    "restoring it unverified",
                    step,
                    self.directory,
                    export.MANIFEST,
                )
                try:
                    state, data_state = self.restore(step, abstract_state)
                except Exception as e:  # orbax/tensorstore raise many types on damaged files
                    logging.warning(
                        "checkpoint step %d in %s (unverified) cannot be restored: %s: %s",
                        step,
                        self.directory,
                        type(e).__name__,
                        e,
                    )
                    corrupt.append((step, f"{self.step_dir(step)}: unreadable ({e})"))
                    continue
            else:
                state, data_state = self.restore(step, abstract_state)
            self._move_aside([s for s, _ in corrupt])
            if corrupt:
                logging.warning(
                    "resuming from step %d, the newest intact checkpoint in %s",
                    step,
                    self.directory,
                )
            return step, state, data_state
        if corrupt:
            listed = "; ".join(f"step {s}: {problem}" for s, problem in corrupt)
            raise CorruptCheckpointError(
                f"no intact checkpoint in {self.directory} ({listed}). Not starting from scratch, "
                f"which would discard the run's work: repair or remove the corrupt steps (or move "
                f"them to {self.directory / CORRUPT_DIR}), or use a new --workdir."
            )
        return None

    def _move_aside(self, steps: list[int]) -> None:
        """Renames corrupt steps into CORRUPT_DIR (process 0) so orbax no longer lists them."""
        if not steps:
            return
        if jax.process_index() == 0:
            aside = self.directory / CORRUPT_DIR
            aside.mkdir(exist_ok=True)
            for step in steps:
                target, n = aside / str(step), 1
                while target.exists():  # the same step number moved aside before
                    target, n = aside / f"{step}.{n}", n + 1
                self.step_dir(step).rename(target)
                logging.warning(
                    "moved corrupt checkpoint step %d of %s to %s", step, self.directory, target
                )
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes("caltransfer_corrupt_checkpoints_moved")
        self.manager.reload()

    def _finish_pending(self) -> None:
        """Waits for pending saves; writes the checksum manifest of each one still kept."""
        self.manager.wait_until_finished()
        pending, self._pending = self._pending, []
        if jax.process_index() != 0:
            return
        committed = set(self.manager.all_steps())
        for step in pending:
            path = self.step_dir(step)
            if step in committed and path.is_dir():  # not removed by the retention policy
                export.write_manifest(path)

    def wait(self) -> None:
        """Blocks until pending saves are committed and have their checksum manifests."""
        self._finish_pending()

    def close(self) -> None:
        """Waits for pending saves (writing their manifests) and releases the manager."""
        try:
            self._finish_pending()
        finally:
            self.manager.close()
