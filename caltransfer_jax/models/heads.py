"""Per-point masked reconstruction head and the property regression head.

The reconstruction head predicts all p point values of each patch from that patch's token, so
with non-overlapping patches every point is predicted exactly once; the objective counts only
hidden points. Its tokens are conditioned on (z_chem, z_inst), so the bottleneck codes must carry
what reconstruction needs (in the seed nothing made them informative).

Shapes: b batch, P patches, p patch size, l = P·p points, d model width, c/i latent sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx
from jaxtyping import Array, Float


class ReconstructionHead(nnx.Module):
    """Patch tokens + projected (z_chem, z_inst) → LN → MLP → p values per patch."""

    def __init__(
        self, d_model: int, latent_dim: int, hidden: int, patch_size: int, *, rngs: nnx.Rngs
    ):
        self.latent_proj = nnx.Linear(latent_dim, d_model, rngs=rngs)
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.hidden = nnx.Linear(d_model, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, patch_size, rngs=rngs)

    def __call__(
        self, patch_tokens: Float[Array, "b P d"], latent: Float[Array, "b z"]
    ) -> Float[Array, "b l"]:
        """Predicts every point's value.

        Args:
            patch_tokens: (b, P, d) encoder outputs of the patch tokens.
            latent: (b, c + i) concatenated z_chem and z_inst.

        Returns:
            (b, P·p) predicted values on the input grid.
        """
        h = self.norm(patch_tokens + self.latent_proj(latent)[:, None, :])
        out = self.out(jax.nn.gelu(self.hidden(h)))
        return out.reshape(out.shape[0], -1)


class RegressionHead(nnx.Module):
    """MLP from z_chem to the calibrated properties."""

    def __init__(
        self,
        z_chem: int,
        hidden: Sequence[int],
        num_targets: int,
        dropout: float,
        *,
        rngs: nnx.Rngs,
    ):
        widths = [z_chem, *hidden]
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(widths[-1], num_targets, rngs=rngs)

    def __call__(self, z_chem: Float[Array, "b c"]) -> Float[Array, "b t"]:
        """Returns (b, num_targets) predictions (in the standardised label units)."""
        h = z_chem
        for layer in self.layers:
            h = self.dropout(jax.nn.gelu(layer(h)))
        return self.out(h)
