"""The params-only export of a pretrained model: written at the end of pretraining, read by
every transfer.

An export directory holds only the spectral model's parameters (no optimiser state, no BYOL
heads, no EMA target) as an orbax tree, `config.json` (the full pretraining config; `model`
rebuilds the network, `data` gives its input grid) and `export.json` (format, step, metrics and
provenance). `load_export` rebuilds a `SpectralModel` from it on one device.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from caltransfer_jax.models.model import SpectralModel, build_model

EXPORT_FORMAT = 1


def export_params(
    directory: pathlib.Path,
    model_params: dict,
    config: ml_collections.ConfigDict,
    metadata: dict[str, Any],
) -> None:
    """Writes the params-only export (every process calls it; process 0 writes the JSON).

    Args:
        directory: export directory (replaced if it exists).
        model_params: the SpectralModel's parameters as a nested dict of arrays.
        config: the full pretraining config (`config.model` rebuilds the model).
        metadata: step, metrics and anything else worth keeping (JSON-able).
    """
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / "params", model_params, force=True)
        checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        (directory / "config.json").write_text(config.to_json_best_effort(sort_keys=True, indent=2))
        info = {"format": EXPORT_FORMAT, "contents": "SpectralModel parameters", **metadata}
        (directory / "export.json").write_text(json.dumps(info, indent=2, sort_keys=True))


def load_export(directory: str | pathlib.Path) -> tuple[SpectralModel, ml_collections.ConfigDict]:
    """Loads an export into a fresh `SpectralModel` (on the default device).

    Args:
        directory: the export directory (holding params/, config.json, export.json).

    Returns:
        (model, config): the model with the exported parameters (in train mode, as built; call
        `model.eval()` for deterministic inference) and the full pretraining config.
    """
    directory = pathlib.Path(directory).resolve()
    config = ml_collections.ConfigDict(json.loads((directory / "config.json").read_text()))
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
