"""Reconstruction objectives: masked spectrum reconstruction (MSRP) and denoising.

Both train the model's reconstruction head, which predicts a value at every point.

- **MSRP**: the model sees a spectrum with contiguous blocks hidden (`masking.block_mask`); the
  loss is the mean squared error over hidden valid points only. Visible points are not scored
  (their values were seen, so scoring them would reward copying).
- **Denoising**: the model sees a noised copy of a spectrum (nothing hidden) and must return the
  spectrum without the added noise; the loss is the mean squared error over all valid points.
  The added noise is white and Gaussian with a per-spectrum level drawn uniformly in
  [0, max_std], in units of the spectrum's own standard deviation over its valid points, so it
  means the same on standardised and raw inputs.

Shapes: b batch, l points.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float


def masked_mse(
    prediction: Float[Array, "b l"], target: Float[Array, "b l"], where: Bool[Array, "b l"]
) -> Float[Array, ""]:
    """Mean of (prediction − target)² over the points where `where` is True (0 if none)."""
    weight = where.astype(prediction.dtype)
    # jnp.where, not a product: a NaN in an unscored target (padding) must not leak in.
    error = jnp.where(where, jnp.square(prediction - target), 0.0)
    return error.sum() / jnp.maximum(weight.sum(), 1.0)


def msrp_loss(
    reconstruction: Float[Array, "b l"], values: Float[Array, "b l"], hidden: Bool[Array, "b l"]
) -> Float[Array, ""]:
    """Masked reconstruction error on hidden points (`hidden` must already exclude padding)."""
    return masked_mse(reconstruction, values, hidden)


def spectrum_std(values: Float[Array, "b l"], valid: Bool[Array, "b l"]) -> Float[Array, " b"]:
    """Standard deviation of each spectrum over its valid points."""
    weight = valid.astype(values.dtype)
    count = jnp.maximum(weight.sum(-1), 1.0)
    mean = jnp.where(valid, values, 0.0).sum(-1) / count
    var = jnp.where(valid, jnp.square(values - mean[:, None]), 0.0).sum(-1) / count
    return jnp.sqrt(var)


def standardize(
    raw: Float[Array, "b l"], valid: Bool[Array, "b l"], normalize: str
) -> Float[Array, "b l"]:
    """The pipeline's per-spectrum normalisation in JAX: 'snv' over valid points, or 'none'.

    Padded points become 0. A flat spectrum is only centred (as in the pipeline).
    """
    if normalize == "none":
        return jnp.where(valid, raw, 0.0)
    count = jnp.maximum(valid.sum(-1, keepdims=True), 1)
    mean = jnp.where(valid, raw, 0.0).sum(-1, keepdims=True) / count
    std = spectrum_std(raw, valid)[:, None]
    std = jnp.where(std > 1e-8, std, 1.0)
    return jnp.where(valid, (raw - mean) / std, 0.0)


def add_noise(
    key: Array, values: Float[Array, "b l"], valid: Bool[Array, "b l"], max_std: float
) -> Float[Array, "b l"]:
    """Adds white Gaussian noise at a random level in [0, max_std] × each spectrum's std."""
    level_key, noise_key = jax.random.split(key)
    level = jax.random.uniform(level_key, (values.shape[0], 1), maxval=max_std)
    scale = level * jax.lax.stop_gradient(spectrum_std(values, valid))[:, None]
    return values + scale * jax.random.normal(noise_key, values.shape, values.dtype)


def denoising_loss(
    reconstruction: Float[Array, "b l"], clean: Float[Array, "b l"], valid: Bool[Array, "b l"]
) -> Float[Array, ""]:
    """Error of the spectrum reconstructed from the noised copy against the clean one."""
    return masked_mse(reconstruction, clean, valid)
