"""Leak-free masks for masked spectrum reconstruction (MSRP): contiguous blocks of points.

The mask marks *points* of the signal, and the model hides them before every feature path (the
`hidden` argument of `SpectralModel`), so no feature of a visible point is computed from a hidden
value and every hidden point is fully hidden. The loss then counts only hidden valid points.

Blocks sit on a grid of `block` points with a random phase per spectrum: a random subset of the
grid slots is hidden, which gives exactly `round(ratio · l / block)` blocks that never overlap
(the seed's overlapping random starts hid 17–18 % when it asked for 20 %). A random phase makes
block edges fall anywhere relative to the model's patches; a block pushed past the end wraps to
the start (two shorter blocks, same count of hidden points).

Shapes: b batch, l points.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool


def block_mask(
    key: Array, valid: Bool[Array, "b l"], ratio: float, block: int
) -> Bool[Array, "b l"]:
    """Hides contiguous blocks covering a fraction `ratio` of each spectrum's grid.

    Args:
        key: PRNG key.
        valid: (b, l) True for real points; padding is never hidden.
        ratio: fraction of the l points to hide, in (0, 1).
        block: points per block; l must be a multiple of it.

    Returns:
        (b, l) True at hidden valid points.
    """
    batch, length = valid.shape
    if length % block:
        raise ValueError(f"spectrum length {length} is not a multiple of the mask block {block}")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    slots = length // block
    num_hidden = max(1, round(ratio * slots))
    slot_key, phase_key = jax.random.split(key)
    # A random permutation per row: the slots ranked below num_hidden are hidden.
    ranks = jnp.argsort(jax.random.uniform(slot_key, (batch, slots)), axis=-1).argsort(axis=-1)
    hidden = jnp.repeat(ranks < num_hidden, block, axis=-1)
    phase = jax.random.randint(phase_key, (batch,), 0, block)
    hidden = jax.vmap(jnp.roll)(hidden, phase)
    return hidden & valid
