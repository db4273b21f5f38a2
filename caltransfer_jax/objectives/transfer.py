"""Transfer objective: the FNO head maps a spectrum onto the master instrument's spectrum.

For every paired view (a sample on some instrument) the target is the master (canonical)
instrument's spectrum of the same sample (`pretrain_data`), linearly interpolated onto the view's
own axis and normalised like the view (SNV over the same points, when the pipeline standardises):
"this window as the master would have measured it, in the same preprocessing". The loss is the
mean squared error over the view's valid points inside the master's range. This gives the FNO
head (dead in the seed) the job it exists for.

Shapes: b batch, l points of the view, m points of the master spectrum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from caltransfer_jax.objectives.reconstruction import standardize


def resample(
    values: Float[Array, " m"],
    axis: Float[Array, " m"],
    valid: Bool[Array, " m"],
    at: Float[Array, " l"],
) -> tuple[Float[Array, " l"], Bool[Array, " l"]]:
    """Linear interpolation of one spectrum at positions `at` (any axis direction).

    Returns the values (l,) and whether each position lies within the valid range (l,).
    """
    # Padded points go to +inf so that sorting leaves the valid ones first, in order.
    key = jnp.where(valid, axis, jnp.inf)
    order = jnp.argsort(key)
    xs, ys = key[order], jnp.where(valid, values, 0.0)[order]
    count = valid.sum()
    last = jnp.maximum(count - 1, 0)
    inside = (count > 1) & (at >= xs[0]) & (at <= xs[last])
    # Points past the valid prefix continue the axis, so jnp.interp sees it increasing.
    index = jnp.arange(xs.shape[0])
    xs = jnp.where(index <= last, xs, xs[last] + 1.0 + index)
    ys = jnp.where(index <= last, ys, ys[last])
    return jnp.interp(at, xs, ys), inside


def master_target(
    batch: dict[str, Array],
    wavenumber: Float[Array, "b l"],
    valid: Bool[Array, "b l"],
    normalize: str,
) -> tuple[Float[Array, "b l"], Bool[Array, "b l"]]:
    """The master spectrum of each sample on a view's axis, normalised like the view.

    Args:
        batch: holds master_values, master_wavenumber, master_valid (b, m), master_offset,
            master_scale (b,) (`pretrain_data`).
        wavenumber: (b, l) the view's axis.
        valid: (b, l) the view's valid points.
        normalize: the pipeline's normalisation ('snv' or 'none').

    Returns:
        target (b, l) and scored (b, l): valid points of the view inside the master's range.
    """
    raw = batch["master_values"] * batch["master_scale"][:, None] + batch["master_offset"][:, None]
    target, inside = jax.vmap(resample)(
        raw, batch["master_wavenumber"], batch["master_valid"], wavenumber
    )
    scored = valid & inside
    return standardize(target, scored, normalize), scored
