"""Bidirectional Mamba (selective SSM) blocks.

A spectrum has no causal direction, and [CLS] sits at position 0, so every block scans the token
sequence both ways and adds the two outputs (Vision-Mamba style). Each direction has its own
causal depthwise convolution, x/Δ projections, A and D: the backward direction is the forward
one applied to the reversed sequence, so a token's conv window only reaches the tokens that the
same direction's scan has already read and the two halves stay mirror images. (A single centred
non-causal conv would let each direction see one or two tokens "ahead" of its scan and break that
symmetry for no gain.) The input projection, gate and output projection are shared. Both
directions run in one scan call (`jax.vmap` over a leading direction axis).

Padding: padded tokens get Δ = 0 and a zeroed input, which makes them exact no-ops on the state
(Ā = 1, B̄ = 0), so valid tokens' outputs do not depend on them in either direction.

Shapes: b batch, l tokens, d model width, e = expand·d inner width, n state size, r dt rank.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float

from caltransfer_jax.models.scan import selective_scan

_DIRECTIONS = 2


def _dt_bias_init(key: Array, shape: tuple[int, ...], dt_min: float, dt_max: float) -> Array:
    """Mamba's Δ bias: softplus⁻¹(dt) with dt log-uniform in [dt_min, dt_max] (floored 1e-4)."""
    log_dt = jax.random.uniform(key, shape, minval=math.log(dt_min), maxval=math.log(dt_max))
    dt = jnp.maximum(jnp.exp(log_dt), 1e-4)
    return dt + jnp.log(-jnp.expm1(-dt))


class BiMambaBlock(nnx.Module):
    """Pre-norm residual block x + Dropout(BiMamba(LayerNorm(x)))."""

    def __init__(
        self,
        d_model: int,
        d_state: int,
        d_conv: int,
        expand: int,
        dt_rank: int,
        dt_min: float,
        dt_max: float,
        discretization: str,
        scan_impl: str,
        dropout: float,
        *,
        rngs: nnx.Rngs,
    ):
        inner = expand * d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = dt_rank
        self.discretization = discretization
        self.scan_impl = scan_impl
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.in_proj = nnx.Linear(d_model, 2 * inner, use_bias=False, rngs=rngs)
        # Per-direction parameters carry a leading axis of size 2 (forward, backward).
        shape = (_DIRECTIONS,)
        bound = 1.0 / math.sqrt(d_conv)  # PyTorch's Conv1d default for a depthwise kernel
        uniform = jax.random.uniform
        self.conv_kernel = nnx.Param(
            uniform(rngs.params(), (*shape, d_conv, inner), minval=-bound, maxval=bound)
        )
        self.conv_bias = nnx.Param(
            uniform(rngs.params(), (*shape, inner), minval=-bound, maxval=bound)
        )
        x_bound = 1.0 / math.sqrt(inner)
        self.x_proj = nnx.Param(
            uniform(
                rngs.params(),
                (*shape, inner, dt_rank + 2 * d_state),
                minval=-x_bound,
                maxval=x_bound,
            )
        )
        dt_bound = dt_rank**-0.5  # Mamba's "random" dt_proj init with dt_scale 1
        self.dt_proj = nnx.Param(
            uniform(rngs.params(), (*shape, dt_rank, inner), minval=-dt_bound, maxval=dt_bound)
        )
        self.dt_bias = nnx.Param(_dt_bias_init(rngs.params(), (*shape, inner), dt_min, dt_max))
        # S4D-real init: A = −(1, 2, …, n) in every channel.
        a_init = jnp.log(jnp.arange(1, d_state + 1, dtype=jnp.float32))
        self.A_log = nnx.Param(jnp.broadcast_to(a_init, (*shape, inner, d_state)))
        self.D = nnx.Param(jnp.ones((*shape, inner)))
        self.out_proj = nnx.Linear(inner, d_model, use_bias=False, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def _causal_conv(self, x: Float[Array, "s b l e"]) -> Float[Array, "s b l e"]:
        """Depthwise causal conv per direction: out_t = Σ_k w_k x_{t−K+1+k} + bias."""
        length = x.shape[2]
        padded = jnp.pad(x, ((0, 0), (0, 0), (self.d_conv - 1, 0), (0, 0)))
        kernel = self.conv_kernel[...]
        out = sum(
            padded[:, :, k : k + length] * kernel[:, None, None, k] for k in range(self.d_conv)
        )
        return out + self.conv_bias[...][:, None, None]

    def __call__(
        self, x: Float[Array, "b l d"], token_mask: Bool[Array, "b l"]
    ) -> Float[Array, "b l d"]:
        """Applies the block; tokens where `token_mask` is False do not affect the others."""
        mask = token_mask[..., None].astype(x.dtype)
        u, gate = jnp.split(self.in_proj(self.norm(x)), 2, axis=-1)
        u = u * mask
        # (2, b, l, e): forward sequence and the reversed one.
        u = jnp.stack([u, u[:, ::-1]])
        directed_mask = jnp.stack([mask, mask[:, ::-1]])
        u = jax.nn.silu(self._causal_conv(u)) * directed_mask
        projected = jnp.einsum("sble,ser->sblr", u, self.x_proj[...])
        dt_in, B, C = jnp.split(projected, [self.dt_rank, self.dt_rank + self.d_state], axis=-1)
        delta = jax.nn.softplus(
            jnp.einsum("sblr,sre->sble", dt_in, self.dt_proj[...])
            + self.dt_bias[...][:, None, None]
        )
        delta = delta * directed_mask
        A = -jnp.exp(self.A_log[...])

        def scan(u, delta, A, B, C, D):
            return selective_scan(
                u, delta, A, B, C, D, discretization=self.discretization, impl=self.scan_impl
            )[0]

        y = jax.vmap(scan)(u, delta, A, B, C, self.D[...])
        y = (y[0] + y[1][:, ::-1]) * jax.nn.silu(gate)
        return x + self.dropout(self.out_proj(y))


class MambaBackbone(nnx.Module):
    """A stack of bidirectional Mamba blocks followed by a LayerNorm."""

    def __init__(self, num_layers: int, d_model: int, *, rngs: nnx.Rngs, **block_kwargs):
        self.blocks = nnx.List(
            [BiMambaBlock(d_model, rngs=rngs, **block_kwargs) for _ in range(num_layers)]
        )
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)

    def __call__(
        self, x: Float[Array, "b l d"], token_mask: Bool[Array, "b l"]
    ) -> Float[Array, "b l d"]:
        """Runs every block, then the final norm."""
        for block in self.blocks:
            x = block(x, token_mask)
        return self.norm(x)
