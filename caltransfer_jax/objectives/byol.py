"""BYOL between paired instrument views of the same sample.

The two views of a sample are its spectra on two different instruments, so the "augmentation"
is the instrument itself (axis error, resolution, stray light, baseline, noise …) and BYOL teaches
z_chem to be the same whichever instrument measured the sample.

- Online branch: encoder → z_chem → projector → predictor.
- Target branch: an exponential moving average (EMA) of the encoder and projector, run without
  dropout or latent sampling, under `stop_gradient`: no gradient ever reaches it.
- Loss, symmetric over the two views: 2 − 2·cos(q(v₁), sg(z'(v₂))) + 2 − 2·cos(q(v₂), sg(z'(v₁))),
  averaged over samples (Grill et al., 2020).
- The EMA rate follows BYOL's schedule τ_k = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2, rising from
  τ_base to 1 over the K training steps.

Shapes: b batch, c z_chem, h hidden width, o projection width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float


class MLP(nnx.Module):
    """Linear → LayerNorm → GELU → Linear (BYOL's projector/predictor shape, LN for BN)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(d_in, hidden, rngs=rngs)
        self.norm = nnx.LayerNorm(hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, d_out, rngs=rngs)

    def __call__(self, x: Float[Array, "b c"]) -> Float[Array, "b o"]:
        """Returns the (b, d_out) projection."""
        return self.out(jax.nn.gelu(self.norm(self.hidden(x))))


class BYOLHeads(nnx.Module):
    """The projector (shared by online and target) and the online predictor."""

    def __init__(self, z_chem: int, hidden: int, projection: int, *, rngs: nnx.Rngs):
        self.projector = MLP(z_chem, hidden, projection, rngs=rngs)
        self.predictor = MLP(projection, hidden, projection, rngs=rngs)


def _cosine_distance(p: Float[Array, "b o"], z: Float[Array, "b o"]) -> Float[Array, " b"]:
    p = p / jnp.maximum(jnp.linalg.norm(p, axis=-1, keepdims=True), 1e-6)
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-6)
    return 2.0 - 2.0 * jnp.sum(p * z, axis=-1)


def byol_loss(
    online_predictions: tuple[Float[Array, "b o"], Float[Array, "b o"]],
    target_projections: tuple[Float[Array, "b o"], Float[Array, "b o"]],
    weight: Float[Array, " b"],
) -> Float[Array, ""]:
    """Symmetric BYOL loss of view 1 ↔ view 2, a weighted mean over samples (in [0, 8]).

    Args:
        online_predictions: predictor outputs q(v₁), q(v₂), each (b, o).
        target_projections: target projector outputs z'(v₁), z'(v₂), each (b, o); gradients
            to them are stopped here.
        weight: (b,) weight of each sample (0 for samples without a second instrument view).
    """
    q1, q2 = online_predictions
    z1, z2 = (jax.lax.stop_gradient(z) for z in target_projections)
    per_sample = _cosine_distance(q1, z2) + _cosine_distance(q2, z1)
    return jnp.sum(weight * per_sample) / jnp.maximum(weight.sum(), 1.0)


def ema_decay(step: Array, total_steps: int, base: float) -> Array:
    """BYOL's EMA rate at `step`: base at the start, 1 at `total_steps`."""
    progress = jnp.clip(step / max(total_steps, 1), 0.0, 1.0)
    return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


def ema_update(target, online, decay: Array):
    """target ← decay·target + (1 − decay)·online, leaf by leaf (same tree structure)."""
    return jax.tree.map(lambda t, o: decay * t + (1.0 - decay) * o, target, online)
