"""Pretraining objectives, one module per family.

- `masking`: leak-free contiguous block masks.
- `reconstruction`: masked reconstruction (MSRP) and denoising.
- `byol`: BYOL between paired instrument views (projector, predictor, EMA target).
- `physics`: Beer–Lambert additivity under synthetic mixing; smoothness and peak shape.
- `alignment`: Sinkhorn divergence between instrument groups over matched populations.
- `invariance`: VIB KL, instrument from z_inst, gradient-reversal adversary on z_chem.
- `transfer`: the FNO head mapping a view onto the master instrument's spectrum.
- `pretrain`: all terms from one forward pass; the weighted total.
"""

from caltransfer_jax.objectives.pretrain import (
    TERMS,
    Learner,
    functional_learner,
    pretraining_terms,
    target_params,
    total_loss,
    with_target,
)

__all__ = [
    "TERMS",
    "Learner",
    "functional_learner",
    "pretraining_terms",
    "target_params",
    "total_loss",
    "with_target",
]
