"""Variational bottleneck terms: KL, the instrument from z_inst, the gradient-reversal adversary.

- KL(q(z|x) ‖ N(0, I)) of z_chem and z_inst, averaged over spectra (weighted by β in the config).
- z_inst must predict the instrument: cross-entropy of the model's `inst_logits`.
- z_chem must not: the model's adversary reads the z_chem posterior mean through a
  gradient-reversal layer, so minimising the adversary's cross-entropy trains the adversary to
  find the instrument while the encoder receives the negated gradient and learns to remove it
  (the DANN min–max game; the seed's sign error and its "push to uniform" version are not a game
  at all).

Shapes: b batch, k instruments.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int


def instrument_cross_entropy(
    logits: Float[Array, "b k"], instrument: Int[Array, " b"]
) -> Float[Array, ""]:
    """Mean cross-entropy of instrument logits against the instrument ids."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, instrument).mean()


def accuracy(logits: Float[Array, "b k"], instrument: Int[Array, " b"]) -> Float[Array, ""]:
    """Fraction of spectra whose most likely instrument is the true one."""
    return jnp.mean(jnp.argmax(logits, -1) == instrument)


def vib_terms(out: dict[str, Array], instrument: Int[Array, " b"]) -> dict[str, Array]:
    """The bottleneck's loss terms from a model output dict.

    Args:
        out: `SpectralModel` outputs with kl_chem, kl_inst (b,), inst_logits, adv_logits (b, k).
        instrument: (b,) instrument id of every spectrum.

    Returns:
        kl_chem, kl_inst (mean KL per spectrum), instrument (CE of z_inst's classifier) and
        adversary (CE of the reversed-gradient classifier on the z_chem means).
    """
    return {
        "kl_chem": out["kl_chem"].mean(),
        "kl_inst": out["kl_inst"].mean(),
        "instrument": instrument_cross_entropy(out["inst_logits"], instrument),
        "adversary": instrument_cross_entropy(out["adv_logits"], instrument),
    }
