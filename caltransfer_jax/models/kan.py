"""Kolmogorov–Arnold (KAN) layers with a B-spline basis, stacked over experts.

A KAN layer maps x ∈ R^i to y ∈ R^o as y_o = Σ_i w_oi·silu(x_i) + Σ_i Σ_k c_oik·B_k(tanh(x_i)):
a linear "base" term plus a learned univariate spline per (input, output) pair. The inputs are
squashed by tanh onto the spline grid [−1, 1]; the uniform knot vector is extended by
`spline_order` knots on each side, giving grid_size + spline_order cubic (order 3) basis
functions that sum to 1 on [−1, 1].

Shapes: t tokens, e experts, i inputs, o outputs, k basis functions.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float


def bspline_basis(x: Float[Array, "*shape"], grid_size: int, spline_order: int) -> Array:
    """Evaluates the uniform B-spline basis on [−1, 1] by the Cox–de Boor recursion.

    Args:
        x: values in [−1, 1], any shape.
        grid_size: number of grid intervals on [−1, 1].
        spline_order: polynomial degree (3 for cubic).

    Returns:
        x.shape + (grid_size + spline_order,) basis values.
    """
    h = 2.0 / grid_size
    knots = jnp.asarray(
        -1.0 + h * np.arange(-spline_order, grid_size + spline_order + 1), jnp.float32
    )
    x = x[..., None]
    # Degree 0: indicators of [t_j, t_{j+1}). The knots extend past ±1, so the basis sums to 1 on
    # the closed interval [−1, 1].
    basis = ((x >= knots[:-1]) & (x < knots[1:])).astype(jnp.float32)
    for degree in range(1, spline_order + 1):
        left = (x - knots[: -(degree + 1)]) / (degree * h) * basis[..., :-1]
        right = (knots[degree + 1 :] - x) / (degree * h) * basis[..., 1:]
        basis = left + right
    return basis


class KANExperts(nnx.Module):
    """A KAN layer per expert, stacked: (t, i) or (e, t, i) → (e, t, o)."""

    def __init__(
        self,
        num_experts: int,
        in_features: int,
        out_features: int,
        grid_size: int,
        spline_order: int,
        *,
        rngs: nnx.Rngs,
    ):
        self.grid_size = grid_size
        self.spline_order = spline_order
        num_basis = grid_size + spline_order
        scale = 1.0 / math.sqrt(in_features)
        self.base = nnx.Param(
            scale * jax.random.normal(rngs.params(), (num_experts, in_features, out_features))
        )
        # Splines start small so the layer begins close to its linear base term.
        self.spline = nnx.Param(
            0.1
            * scale
            * jax.random.normal(rngs.params(), (num_experts, in_features, num_basis, out_features))
        )

    def __call__(self, x: Float[Array, "*e t i"], *, shared_input: bool) -> Float[Array, "e t o"]:
        """Applies every expert's layer.

        Args:
            x: (t, i) when `shared_input` (the same input for all experts) else (e, t, i).
            shared_input: whether x lacks the leading expert axis.

        Returns:
            (e, t, o) outputs.
        """
        basis = bspline_basis(jnp.tanh(x), self.grid_size, self.spline_order)
        prefix = "" if shared_input else "e"
        base = jnp.einsum(f"{prefix}ti,eio->eto", jax.nn.silu(x), self.base[...])
        return base + jnp.einsum(f"{prefix}tik,eiko->eto", basis, self.spline[...])
