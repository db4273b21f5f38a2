"""Device mesh, parameter sharding rules and batch sharding.

- The mesh comes from the config: `config.mesh` is "name:size,…" with at most one size −1 (the
  remaining devices); axes are `AxisType.Auto` (GSPMD-style propagation; `jax.make_mesh`
  defaults to Explicit axes in this JAX version).
- Data parallel by default: the batch is split over `config.batch_axis`, and parameters are
  replicated unless a rule of `config.sharding_rules` ("regex=tactic;…") matches. A rule applies
  to the "/"-joined path of every leaf of the train state (so optimiser moments and the EMA
  target follow their parameter). Its tactic is one mesh axis or "-" (not split) per dimension,
  comma-separated (a PartitionSpec, e.g. "-,data"), or "fsdp": split the largest dimension that
  the batch axis divides (ZeRO-3 style; replicated if none does). The first matching rule wins.
  (Strings, so that `--config.mesh=data:4,model:2` works on the command line.)

Shapes: trees of arrays or `jax.ShapeDtypeStruct`s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

Rule = tuple[str, str | tuple[str | None, ...]]


def parse_mesh(text: str) -> list[tuple[str, int]]:
    """ "data:-1,model:2" → [("data", -1), ("model", 2)]."""
    axes = []
    for part in text.split(","):
        name, _, size = part.strip().partition(":")
        if not name or not size.lstrip("-").isdigit():
            raise ValueError(f"mesh axis {part!r} of {text!r} is not 'name:size'")
        axes.append((name, int(size)))
    return axes


def parse_rules(text: str) -> list[Rule]:
    """ "re1=fsdp;re2=-,data" → [("re1", "fsdp"), ("re2", (None, "data"))]."""
    rules: list[Rule] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        pattern, sep, tactic = part.rpartition("=")
        if not sep or not pattern:
            raise ValueError(f"sharding rule {part!r} is not 'regex=tactic'")
        re.compile(pattern)
        if tactic == "fsdp":
            rules.append((pattern, tactic))
        else:
            rules.append((pattern, tuple(None if a in ("-", "") else a for a in tactic.split(","))))
    return rules


def make_mesh(axes: Sequence[tuple[str, int]], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a mesh over all (or the given) devices from (name, size) pairs, one size −1 allowed."""
    devices = list(jax.devices() if devices is None else devices)
    names = tuple(name for name, _ in axes)
    sizes = [int(size) for _, size in axes]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may have size -1, got {list(axes)}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not split into mesh {list(axes)}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(
            f"mesh {dict(zip(names, sizes, strict=True))} needs {math.prod(sizes)} "
            f"devices, found {len(devices)}"
        )
    return jax.make_mesh(
        tuple(sizes), names, axis_types=(AxisType.Auto,) * len(names), devices=devices
    )


def path_name(path: tuple[Any, ...]) -> str:
    """'/'-joined names of a tree path (dict keys, attributes, sequence indices)."""
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _fsdp_spec(shape: tuple[int, ...], axis: str, mesh: Mesh) -> PartitionSpec:
    size = mesh.shape[axis]
    candidates = [d for d in np.argsort(shape)[::-1] if shape[d] % size == 0 and shape[d] >= size]
    if not candidates or size == 1:
        return PartitionSpec()
    spec = [None] * len(shape)
    spec[int(candidates[0])] = axis
    return PartitionSpec(*spec)


def leaf_spec(
    name: str, shape: tuple[int, ...], rules: Sequence[Rule], mesh: Mesh, batch_axis: str
) -> PartitionSpec:
    """The PartitionSpec of one leaf: the first matching rule, else replicated."""
    for pattern, tactic in rules:
        if not re.search(pattern, name):
            continue
        if tactic == "fsdp":
            return _fsdp_spec(shape, batch_axis, mesh)
        spec = PartitionSpec(*tactic)
        if len(spec) > len(shape):
            raise ValueError(
                f"sharding rule {pattern!r} → {tactic} has more axes than {name} {shape}"
            )
        for dim, axes in zip(shape, spec, strict=False):
            names = (axes,) if isinstance(axes, str) else (axes or ())
            parts = math.prod(mesh.shape[a] for a in names)
            if dim % parts:
                raise ValueError(
                    f"sharding rule {pattern!r} → {tactic}: {name} {shape} does not split over "
                    f"{parts} devices"
                )
        return spec
    return PartitionSpec()


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[Rule], batch_axis: str) -> Any:
    """NamedShardings for every leaf of `tree` (arrays or ShapeDtypeStructs) by the rules."""

    def one(path, leaf):
        spec = leaf_spec(path_name(path), tuple(leaf.shape), rules, mesh, batch_axis)
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(one, tree)


def batch_sharding(mesh: Mesh, batch_axis: str) -> NamedSharding:
    """Leading (batch) dimension split over `batch_axis`, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(batch_axis))


def replicated(mesh: Mesh) -> NamedSharding:
    """Fully replicated over the mesh."""
    return NamedSharding(mesh, PartitionSpec())
