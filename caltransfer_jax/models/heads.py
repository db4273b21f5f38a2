"""Per-point masked reconstruction head.

The reconstruction head predicts all p point values of each patch from that patch's token, so
with non-overlapping patches every point is predicted exactly once; the objective counts only
hidden points. Its tokens are conditioned on (z_chem, z_inst), so the bottleneck codes must carry
what reconstruction needs (in the seed nothing made them informative).

Shapes: b batch, P patches, p patch size, l = P·p points, d model width, c/i latent sizes.
"""

from __future__ import annotations

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
