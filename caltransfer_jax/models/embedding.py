"""Spectrum → tokens: patches fused with wavelet coefficients, placed by their true wavenumber.

A spectrum arrives on its physical axis: values (b, l), wavenumber (b, l) in cm⁻¹, a validity
mask (b, l) for padding, and a modality index (b,). Optionally a point mask (b, l) marks points
hidden for masked pretraining. The embedding

1. hides points in the **signal domain**, before every feature path: a hidden or padded point's
   value becomes 0 and two indicator channels (hidden, valid) tell the model so; nothing
   downstream reads the original value of a hidden point (a gradient test holds this exactly);
2. cuts the signal into non-overlapping patches of p points (a Conv1d with kernel = stride = p,
   written as one matmul over the reshaped patches);
3. takes a multi-level DWT of the same masked signal and gives each patch all the coefficients
   whose position falls in it (p coefficients per patch over all scales; `wavelets.py`);
4. adds a positional code computed from each patch's mean wavenumber on a fixed log scale (and
   its point spacing), so the same token index means the same physics only when the axis agrees;
5. prepends a learned [CLS] token and a [DOMAIN] token embedding the modality.

Shapes: b batch, l points, P = l / p patches, T = P + 2 tokens, d model width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from caltransfer_jax.models import wavelets

NUM_SPECIAL_TOKENS = 2  # [CLS], [DOMAIN]
# Fourier frequencies of the positional code, in cycles over the unit log-wavenumber interval.
# The finest must separate adjacent tokens of a dense NIR spectrum (2048 points over 4000–9100
# cm⁻¹ are ~1.1e-3 apart per 16-point token on the 50–15000 cm⁻¹ log scale); the coarsest
# varies once over the whole range.
_MIN_CYCLES = 0.5
_MAX_CYCLES = 1024.0


def hide_points(
    values: Float[Array, "b l"],
    valid: Bool[Array, "b l"],
    hidden: Bool[Array, "b l"] | None,
) -> tuple[Float[Array, "b l"], Bool[Array, "b l"]]:
    """Returns (visible values with hidden and padded points set to 0, hidden mask).

    `jnp.where` (not a multiplication) so that the derivative with respect to a hidden value is
    exactly 0 and a NaN/inf at a hidden or padded point cannot propagate.
    """
    if hidden is None:
        hidden = jnp.zeros_like(valid)
    hidden = hidden & valid
    visible = valid & ~hidden
    return jnp.where(visible, values, 0.0), hidden


class WavenumberEncoding(nnx.Module):
    """Fourier features of each patch's log wavenumber and point spacing, projected to d."""

    def __init__(
        self,
        d_model: int,
        num_frequencies: int,
        wavenumber_range: tuple[float, float],
        *,
        rngs: nnx.Rngs,
    ):
        low, high = wavenumber_range
        if not 0 < low < high:
            raise ValueError(f"wavenumber_range must be 0 < low < high, got {wavenumber_range}")
        self.log_low = float(np.log(low))
        self.log_span = float(np.log(high) - np.log(low))
        self.cycles = tuple(np.geomspace(_MIN_CYCLES, _MAX_CYCLES, num_frequencies).tolist())
        self.proj = nnx.Linear(2 * num_frequencies + 1, d_model, rngs=rngs)

    def __call__(
        self, wavenumber: Float[Array, "b P p"], valid: Bool[Array, "b P p"]
    ) -> Float[Array, "b P d"]:
        """Encodes patches from their points' wavenumbers (cm⁻¹) and validity."""
        count = valid.sum(-1)
        # Padded points may hold anything (even NaN); fully padded patches get the low end of the
        # range (their token is masked out anyway), so every feature stays finite.
        fill = float(np.exp(self.log_low))
        total = jnp.where(valid, wavenumber, 0.0).sum(-1)
        center = jnp.where(count > 0, total / jnp.maximum(count, 1), fill)
        t = (jnp.log(jnp.maximum(center, fill)) - self.log_low) / self.log_span
        angles = 2 * jnp.pi * t[..., None] * jnp.asarray(self.cycles, jnp.float32)
        # Resolution cue: log10 of the mean spacing between valid points (cm⁻¹ per point), halved
        # to keep it near [−1, 1] for 0.01–100 cm⁻¹ per point.
        span = jnp.max(jnp.where(valid, wavenumber, -jnp.inf), -1) - jnp.min(
            jnp.where(valid, wavenumber, jnp.inf), -1
        )
        span = jnp.where(count > 1, span, 0.0)
        spacing = jnp.log10(jnp.maximum(span / jnp.maximum(count - 1, 1), 1e-2)) / 2.0
        features = jnp.concatenate([jnp.sin(angles), jnp.cos(angles), spacing[..., None]], -1)
        return self.proj(features)


class SpectralEmbedding(nnx.Module):
    """Turns spectra on their physical axis into [CLS, DOMAIN, patch…] tokens."""

    def __init__(
        self,
        d_model: int,
        patch_size: int,
        wavelet: str,
        wavelet_levels: int,
        num_modalities: int,
        pe_frequencies: int,
        wavenumber_range: tuple[float, float],
        dropout: float,
        *,
        rngs: nnx.Rngs,
    ):
        if patch_size % (2**wavelet_levels):
            raise ValueError(
                f"patch_size {patch_size} must be divisible by 2**wavelet_levels "
                f"= {2**wavelet_levels} so every scale maps onto whole patches"
            )
        wavelets.analysis_filters(wavelet)  # fail early on an unknown or biorthogonal wavelet
        self.patch_size = patch_size
        self.wavelet = wavelet
        self.wavelet_levels = wavelet_levels
        # 3 channels per point: visible value, hidden flag, valid flag.
        self.patch_proj = nnx.Linear(3 * patch_size, d_model, rngs=rngs)
        self.wavelet_proj = nnx.Linear(patch_size, d_model, rngs=rngs)
        self.fuse = nnx.Linear(2 * d_model, d_model, rngs=rngs)
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.position = WavenumberEncoding(d_model, pe_frequencies, wavenumber_range, rngs=rngs)
        self.cls = nnx.Param(0.02 * jax.random.normal(rngs.params(), (d_model,)))
        self.domain = nnx.Embed(num_modalities, d_model, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(
        self,
        values: Float[Array, "b l"],
        wavenumber: Float[Array, "b l"],
        valid: Bool[Array, "b l"],
        modality: Int[Array, " b"],
        hidden: Bool[Array, "b l"] | None = None,
    ) -> tuple[Float[Array, "b T d"], Bool[Array, "b T"]]:
        """Embeds a batch of spectra.

        Args:
            values: (b, l) intensities (e.g. SNV-normalised absorbance).
            wavenumber: (b, l) axis positions in cm⁻¹.
            valid: (b, l) True for real points, False for padding.
            modality: (b,) index into `caltransfer_jax.data.spectra.MODALITIES`.
            hidden: (b, l) True for points hidden from the encoder, or None.

        Returns:
            tokens: (b, P + 2, d) as [CLS, DOMAIN, patch_1 … patch_P].
            token_mask: (b, P + 2) True for CLS, DOMAIN and patches with ≥ 1 valid point.
        """
        batch, length = values.shape
        p = self.patch_size
        if length % p:
            raise ValueError(f"spectrum length {length} is not a multiple of patch_size {p}")
        patches = length // p
        visible, hidden = hide_points(values, valid, hidden)

        def by_patch(x):
            return x.reshape(batch, patches, p)

        channels = jnp.concatenate(
            [
                by_patch(visible),
                by_patch(hidden).astype(visible.dtype),
                by_patch(valid).astype(visible.dtype),
            ],
            axis=-1,
        )
        conv_features = jax.nn.gelu(self.patch_proj(channels))
        coefficients = wavelets.coefficients_per_patch(
            visible, self.wavelet, self.wavelet_levels, p
        )
        wavelet_features = jax.nn.gelu(self.wavelet_proj(coefficients))
        tokens = self.norm(self.fuse(jnp.concatenate([conv_features, wavelet_features], -1)))
        tokens = tokens + self.position(by_patch(wavenumber), by_patch(valid))

        special = jnp.stack(
            [jnp.broadcast_to(self.cls[...], (batch, tokens.shape[-1])), self.domain(modality)],
            axis=1,
        )
        tokens = self.dropout(jnp.concatenate([special, tokens], axis=1))
        token_mask = jnp.concatenate(
            [jnp.ones((batch, NUM_SPECIAL_TOKENS), bool), by_patch(valid).any(-1)], axis=1
        )
        return tokens, token_mask
