"""Checkpoints, the run's config guard, and the params-only export.

Layout of a workdir:

    config.json          the run's config (written once; a different run is refused)
    checkpoints/<step>/  orbax: `state` (the sharded train state), `data` (input position, JSON)
    export/              params-only export: params/ (orbax), config.json, export.json
    metrics.jsonl, tensorboard/

Checkpoints go through one orbax `CheckpointManager`: asynchronous saves, the latest
`checkpoint.keep` kept plus the best by held-out masked-reconstruction error, unfinished
(temporary) directories of a killed run cleaned up at start, restore into sharded abstract
targets. A directory only becomes a checkpoint step once orbax has committed it, so a run killed
mid-save leaves the previous checkpoints intact.

The params-only export is written and read by `caltransfer_jax.models.export`.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

BEST_METRIC = "eval/msrp"
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


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as plain JSON data (tuples become lists)."""
    return json.loads(config.to_json_best_effort(sort_keys=True))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


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
    old = _identity(_flatten(json.loads(path.read_text())))
    new = _identity(_flatten(config_to_dict(config)))
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

    def latest_step(self) -> int | None:
        """The newest committed step, or None."""
        return self.manager.latest_step()

    def save(
        self, step: int, state: Any, data_state: dict[str, Any], metrics: dict[str, float] | None
    ) -> None:
        """Starts saving `state` and the input position at `step` (asynchronously)."""
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
            ),
            metrics=metrics,
            force=True,
        )

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """Restores (state, input position) of `step` into the abstract state's shardings."""
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["data"]

    def wait(self) -> None:
        """Blocks until pending saves are committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.manager.close()
