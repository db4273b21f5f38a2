"""LoRA adapters as a variable type (`nnx.LoRAParam`), counted, saved and restored on their own.

`add_lora` swaps every `nnx.Linear` whose path matches a regular expression for a
`ScaledLoRALinear`: the same frozen kernel and bias plus `nnx.LoRA` (A he-uniform, B zero, so the
adapted model starts equal to the base) scaled by alpha / rank. Training selects the adapters by
type (`nnx.LoRAParam`); the base `nnx.Param`s are never handed to an optimiser.

Adapter checkpoints hold only the LoRA variables (orbax) plus `adapter.json` with the rank, alpha,
target pattern, adapted module paths and whatever the caller adds.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx


class ScaledLoRALinear(nnx.Linear):
    """`nnx.Linear` plus a low-rank update: y = x W + b + (alpha / rank) · x A B."""

    def __init__(self, base: nnx.Linear, rank: int, alpha: float, *, rngs: nnx.Rngs):
        super().__init__(
            base.in_features,
            base.out_features,
            use_bias=base.use_bias,
            rngs=nnx.Rngs(0),  # replaced by the base's parameters below
        )
        self.kernel = nnx.Param(base.kernel.get_value())
        if base.use_bias:
            self.bias = nnx.Param(base.bias.get_value())
        self.lora = nnx.LoRA(base.in_features, rank, base.out_features, rngs=rngs)
        self.lora_scale = alpha / rank

    def __call__(self, x: jax.Array) -> jax.Array:
        return super().__call__(x) + self.lora_scale * self.lora(x)


def add_lora(model: nnx.Module, targets: str, rank: int, alpha: float, seed: int = 0) -> list[str]:
    """Replaces the matching `nnx.Linear` layers of `model` in place by `ScaledLoRALinear`.

    Args:
        model: the module to adapt.
        targets: regular expression searched in each layer's "/"-joined path.
        rank: adapter rank r.
        alpha: scale numerator (update scaled by alpha / r).
        seed: initialises the A matrices.

    Returns:
        The adapted paths, sorted.

    Raises:
        ValueError: if no layer matches.
    """
    pattern = re.compile(targets)
    rngs = nnx.Rngs(params=seed)
    found = [
        (path, module)
        for path, module in nnx.iter_graph(model)
        if type(module) is nnx.Linear and pattern.search("/".join(map(str, path)))
    ]
    if not found:
        raise ValueError(f"no Linear layer matches the LoRA targets {targets!r}")
    for path, module in found:
        parent = model
        for key in path[:-1]:
            parent = parent[key] if isinstance(key, int) else getattr(parent, key)
        adapted = ScaledLoRALinear(module, rank, alpha, rngs=rngs)
        if isinstance(path[-1], int):
            parent[path[-1]] = adapted
        else:
            setattr(parent, path[-1], adapted)
    return sorted("/".join(map(str, p)) for p, _ in found)


def count_params(model: nnx.Module) -> dict[str, int]:
    """Numbers of adapter (trainable) and base parameters."""

    def size(state) -> int:
        return int(sum(x.size for x in jax.tree.leaves(state)))

    adapters = size(nnx.state(model, nnx.LoRAParam))
    return {"adapter": adapters, "base": size(nnx.state(model, nnx.Param)) - adapters}


def save_adapters(directory: str | pathlib.Path, adapters: Any, metadata: dict) -> None:
    """Writes an adapter-only checkpoint: `adapters/` (orbax) and `adapter.json`.

    Args:
        directory: created (replaced if it holds an earlier save).
        adapters: the LoRA variables as a pure dict of arrays (`nnx.to_pure_dict`).
        metadata: rank, alpha, targets, adapted paths and anything else (JSON-able).
    """
    directory = pathlib.Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / "adapters", jax.tree.map(jnp.asarray, adapters), force=True)
        checkpointer.wait_until_finished()
    (directory / "adapter.json").write_text(json.dumps(metadata, indent=2, sort_keys=True))


def load_adapters(directory: str | pathlib.Path, model: nnx.Module) -> dict:
    """Restores an adapter checkpoint into a model that `add_lora` prepared the same way.

    Returns:
        The checkpoint's metadata.

    Raises:
        ValueError: if the model's adapted layers differ from the checkpoint's.
    """
    directory = pathlib.Path(directory).resolve()
    metadata = json.loads((directory / "adapter.json").read_text())
    state = nnx.state(model, nnx.LoRAParam)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nnx.to_pure_dict(state)
    )
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(directory / "adapters", abstract)
    except ValueError as e:
        raise ValueError(
            f"{directory}: adapters for {metadata.get('paths')} do not fit this model's LoRA "
            f"layers ({e}); prepare it with the checkpoint's targets and rank"
        ) from e
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(model, state)
    return metadata


def read_adapters(directory: str | pathlib.Path, template: dict) -> dict:
    """The adapter weights of a `save_adapters` checkpoint as a pure dict shaped like `template`
    (e.g. `AdaptableModel.initial`)."""
    directory = pathlib.Path(directory).resolve()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            return checkpointer.restore(directory / "adapters", abstract)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"{directory}: adapters do not fit this model's LoRA layers ({e})") from e
