"""The params-only export of a pretrained model: written at the end of pretraining, read by
every transfer.

An export directory holds only the spectral model's parameters (no optimiser state, no BYOL
heads, no EMA target) as an orbax tree, `config.json` (the full pretraining config; `model`
rebuilds the network, `data` gives its input grid), `export.json` (format, step, metrics and
provenance) and `sha256sums.json`, the checksum manifest of every other file, written last.
`load_export` verifies the manifest and rebuilds a `SpectralModel` from it on one device.

The manifest helpers (`write_manifest`, `check_manifest`) also guard the pretraining checkpoints
(`caltransfer_jax.pretrain.checkpointing`): orbax's files carry no checksum of their own, so a
flipped bit in a parameter file otherwise restores silently as a wrong value.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from caltransfer_jax.models.model import SpectralModel, build_model

EXPORT_FORMAT = 1
# `init = "bundled"` names the small pretrained export shipped with the package.
BUNDLED = "bundled"
# The checksum manifest at the top of a guarded directory: {"format", "files": {path: sha256}}.
MANIFEST = "sha256sums.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_digests(directory: pathlib.Path) -> dict[str, str]:
    """{path relative to `directory` (POSIX): sha256} of every file under it but the manifest
    (and the manifest's temporary files)."""
    out = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if relative.startswith(MANIFEST) or not path.is_file():
            continue
        out[relative] = _sha256(path)
    return out


def write_manifest(directory: pathlib.Path) -> None:
    """Writes `directory/sha256sums.json` for the files now under `directory`, atomically (a
    temporary file, flushed to disk, then renamed over the manifest)."""
    manifest = directory / MANIFEST
    text = json.dumps(
        {"format": MANIFEST_FORMAT, "files": file_digests(directory)}, indent=1, sort_keys=True
    )
    temporary = directory / f"{MANIFEST}.tmp-{os.getpid()}"
    with temporary.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, manifest)


def check_manifest(directory: pathlib.Path) -> list[str] | None:
    """Checks the files under `directory` against its manifest.

    Files not in the manifest are ignored.

    Returns:
        None when there is no manifest (the directory is unverified); otherwise the problems
        found, each naming its file (a changed checksum, a missing file, an unreadable
        manifest), empty when every file listed matches.
    """
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return None
    try:
        listed = json.loads(manifest.read_text())["files"]
        if not isinstance(listed, dict):
            raise TypeError(f"'files' is a {type(listed).__name__}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [f"{manifest}: unreadable manifest ({type(e).__name__}: {e})"]
    problems = []
    for relative, expected in sorted(listed.items()):
        path = directory / relative
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        actual = _sha256(path)
        if actual != expected:
            problems.append(f"{path}: sha256 {actual} differs from {expected} in {manifest}")
    return problems


def export_params(
    directory: pathlib.Path,
    model_params: dict,
    config: ml_collections.ConfigDict,
    metadata: dict[str, Any],
) -> None:
    """Writes the params-only export (every process calls it; process 0 writes the JSON and the
    checksum manifest, last).

    Args:
        directory: export directory (replaced if it exists).
        model_params: the SpectralModel's parameters as a nested dict of arrays.
        config: the full pretraining config (`config.model` rebuilds the model).
        metadata: step, metrics and anything else worth keeping (JSON-able).
    """
    # A previous export's manifest stays until the new one replaces it: an export interrupted
    # half-way fails verification instead of loading unverified.
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / "params", model_params, force=True)
        checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        (directory / "config.json").write_text(config.to_json_best_effort(sort_keys=True, indent=2))
        info = {"format": EXPORT_FORMAT, "contents": "SpectralModel parameters", **metadata}
        (directory / "export.json").write_text(json.dumps(info, indent=2, sort_keys=True))
        write_manifest(directory)


def load_export(directory: str | pathlib.Path) -> tuple[SpectralModel, ml_collections.ConfigDict]:
    """Loads an export into a fresh `SpectralModel` (on the default device).

    Args:
        directory: the export directory (holding params/, config.json, export.json and the
            checksum manifest; an export without a manifest, from before it was written, loads
            unverified with a warning).

    Returns:
        (model, config): the model with the exported parameters (in train mode, as built; call
        `model.eval()` for deterministic inference) and the full pretraining config.

    Raises:
        ValueError: naming the file, when a file differs from the manifest or is missing,
            `config.json` is missing or not JSON, or the parameters cannot be read.
    """
    directory = resolve(str(directory)).resolve()
    problems = check_manifest(directory)
    if problems:
        raise ValueError(f"corrupt export {directory}: " + "; ".join(problems))
    if problems is None:
        logging.warning("export %s has no %s: loading it unverified", directory, MANIFEST)
    config_path = directory / "config.json"
    try:
        config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
    except FileNotFoundError as e:
        raise ValueError(f"{config_path} is missing: {directory} is not a complete export") from e
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{config_path} is corrupt ({type(e).__name__}: {e})") from e
    model = build_model(config.model, config.seed)
    state = nnx.state(model, nnx.Param)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        nnx.to_pure_dict(state),
    )
    with ocp.StandardCheckpointer() as checkpointer:
        params = checkpointer.restore(directory / "params", abstract)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    return model, config


def resolve(init: str) -> pathlib.Path:
    """The export directory `init` names: a path, or `BUNDLED` for the shipped export."""
    if init == BUNDLED:
        path = pathlib.Path(str(importlib.resources.files("caltransfer_jax.models"))) / "bundled"
        if not (path / "export.json").exists():
            raise FileNotFoundError(f"{path}: the package ships no pretrained export")
        return path
    return pathlib.Path(init)


def corpora(config: ml_collections.ConfigDict) -> list[str]:
    """What a pretraining config trained on: 'simulated' and/or its tfds build directories."""
    data = config.data
    weights = list(data.get("weights", ())) or [1.0]
    names = ["simulated"] if weights[0] > 0 else []
    dirs = list(data.get("tfds_dirs", ()))
    names += [str(d) for d, w in zip(dirs, weights[1:] or [1.0] * len(dirs), strict=True) if w > 0]
    return names


def check_unseen(init: str, dataset: str) -> None:
    """Leave-one-dataset-out: refuses an export pretrained on a corpus naming `dataset`.

    Raises:
        ValueError: naming the export, the corpus and the data set.
    """
    path = resolve(init) / "config.json"
    try:
        config = ml_collections.ConfigDict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable export config ({error})") from None
    seen = [c for c in corpora(config) if dataset.lower() in c.lower()]
    if seen:
        raise ValueError(
            f"{path.parent} was pretrained on {seen}, which names the data set {dataset!r} being "
            "evaluated; use an export that never saw it (leave-one-dataset-out)"
        )
