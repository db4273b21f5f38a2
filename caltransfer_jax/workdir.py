"""Who owns a workdir: every command marks its workdir with its kind and configuration.

`claim(workdir, kind, identity)` runs before any work. It refuses a workdir that a command of
another kind owns (naming both), or one this kind owns under another configuration (naming the
differing fields); it refuses a non-empty folder that no command of this project marked; and it
checks that the folder can be written, so a run never fails after its compute. Then it writes
the mark, `caltransfer_workdir.json`.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

MARKER = "caltransfer_workdir.json"
# Files a claim in progress writes; another process of the same cluster job, claiming at the same
# moment, must not take them for a stranger's files.
_IN_FLIGHT = (MARKER + ".tmp", ".write_check")
KINDS = ("pretrain", "benchmark", "adapt", "transfer", "diagnose")


class WorkdirError(ValueError):
    """The workdir belongs to another run, or cannot be written."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {"a.b.c": leaf} (for naming the fields where two configs differ)."""
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def claim(
    workdir: str | os.PathLike,
    kind: str,
    identity: dict | None,
    *,
    adopt: tuple[str, ...] = (),
    write: bool = True,
) -> pathlib.Path:
    """Checks and marks `workdir` for a run of `kind`.

    Args:
        workdir: the run's directory (created if missing).
        kind: one of `KINDS`.
        identity: JSON data that must match for a rerun in the same workdir (the config without
            operational fields); None: any configuration of this kind (the command checks).
        adopt: files whose presence marks an unmarked folder as this kind's (a workdir written
            before marks existed).
        write: whether this process writes the mark (only one process of a cluster job does).

    Raises:
        WorkdirError: naming the workdir, its owner and what differs, before anything is written.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown workdir kind {kind!r}; one of {KINDS}")
    workdir = pathlib.Path(workdir)
    marker = workdir / MARKER
    identity = json.loads(json.dumps(identity)) if identity is not None else None
    if workdir.exists() and not workdir.is_dir():
        raise WorkdirError(f"{workdir} is a file, not a directory")
    # One listing decides: a mark is written before any other file of a run, so a listing
    # without it holds no finished file of a sibling process claiming at the same moment.
    entries = {p.name for p in workdir.iterdir()} if workdir.is_dir() else set()
    if MARKER in entries:
        try:
            owner = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise WorkdirError(f"{marker}: unreadable workdir mark ({error})") from None
        if owner.get("kind") != kind:
            raise WorkdirError(
                f"{workdir} belongs to a {owner.get('kind')} run; this {kind} run would overwrite "
                "its files — use another --workdir"
            )
        if identity is not None and owner.get("identity") != identity:
            old, new = flatten(owner.get("identity") or {}), flatten(identity)
            differing = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            shown = "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in differing[:6])
            raise WorkdirError(
                f"{workdir} holds a {kind} run with another configuration ({shown}); use "
                "another --workdir"
            )
    elif any(not name.startswith(_IN_FLIGHT) for name in entries):
        if not entries.intersection(adopt):
            raise WorkdirError(
                f"{workdir} is not empty and no command of this project marked it ({MARKER} "
                "is missing); use a new or empty --workdir"
            )
    _check_writable(workdir)
    if write:
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(json.dumps({"kind": kind, "identity": identity}, indent=1, sort_keys=True))
        os.replace(tmp, marker)
    return workdir


def _check_writable(workdir: pathlib.Path) -> None:
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=_IN_FLIGHT[1]):
            pass
    except OSError as error:
        raise WorkdirError(f"{workdir}: cannot write here ({error.strerror or error})") from None
