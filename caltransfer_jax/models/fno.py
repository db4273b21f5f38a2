"""Fourier-neural-operator transfer head: a spectrum on instrument A → the master's spectrum.

The head works on the sequence of patch tokens, which are evenly spaced along the input grid:
each token's field is lifted from its encoder features and its own p visible point values, passed
through Fourier layers (a learned complex multiplier on the lowest `modes` frequencies of an rFFT
along the tokens, plus a pointwise linear map that carries the higher frequencies), and projected
back to p values per token. The output is a correction added to the input, so the head maps a
spectrum to a spectrum on the same grid, for any number of patches (modes are clipped to P/2 + 1);
the per-token projection gives it the full point resolution. Working on the P = l/p tokens rather
than the l points costs 1/p of a point-level operator (the point-level version took ~13 % of a
training step on CPU) and loses nothing the token features do not already carry. Padded tokens
are zeroed before every Fourier layer so they cannot leak into valid ones through the FFT.

Shapes: b batch, P patches, p patch size, l = P·p points, d model width, w FNO width, m modes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float


class FNOTransferHead(nnx.Module):
    """Patch tokens + their point values → Fourier layers over tokens → per-point correction."""

    def __init__(
        self,
        d_model: int,
        width: int,
        modes: int,
        num_layers: int,
        patch_size: int,
        *,
        rngs: nnx.Rngs,
    ):
        self.modes = modes
        self.num_layers = num_layers
        self.patch_size = patch_size
        # Token features plus, per point of the patch, its visible value and observed flag.
        self.lift = nnx.Linear(d_model + 2 * patch_size, width, rngs=rngs)
        # Complex spectral weights as real and imaginary parts (optimisers and checkpoints stay
        # real); variance 1/width per output mode.
        std = 1.0 / math.sqrt(2 * width)
        shape = (num_layers, width, width, modes)
        self.spectral_real = nnx.Param(std * jax.random.normal(rngs.params(), shape))
        self.spectral_imag = nnx.Param(std * jax.random.normal(rngs.params(), shape))
        init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
        self.pointwise = nnx.Param(init(rngs.params(), (num_layers, width, width)))
        self.pointwise_bias = nnx.Param(jnp.zeros((num_layers, width)))
        self.proj_hidden = nnx.Linear(width, 2 * width, rngs=rngs)
        self.proj_out = nnx.Linear(2 * width, patch_size, rngs=rngs)

    def __call__(
        self,
        patch_tokens: Float[Array, "b P d"],
        patch_mask: Bool[Array, "b P"],
        visible: Float[Array, "b l"],
        observed: Bool[Array, "b l"],
    ) -> Float[Array, "b l"]:
        """Maps the input spectrum to the master instrument's spectrum on the same grid.

        Args:
            patch_tokens: (b, P, d) encoder outputs of the patch tokens.
            patch_mask: (b, P) True for patches with at least one valid point.
            visible: (b, l) input values with hidden and padded points set to 0.
            observed: (b, l) True where the value is visible to the model.

        Returns:
            (b, l) transferred spectrum (meaningless at padded points).
        """
        batch, patches, _ = patch_tokens.shape
        keep = patch_mask[..., None].astype(patch_tokens.dtype)
        points = jnp.concatenate(
            [
                visible.reshape(batch, patches, self.patch_size),
                observed.reshape(batch, patches, self.patch_size).astype(visible.dtype),
            ],
            axis=-1,
        )
        field = self.lift(jnp.concatenate([patch_tokens, points], axis=-1)) * keep
        modes = min(self.modes, patches // 2 + 1)
        weights = jax.lax.complex(
            self.spectral_real[...][..., :modes], self.spectral_imag[...][..., :modes]
        )
        for layer in range(self.num_layers):
            spectrum = jnp.fft.rfft(field, axis=1)[:, :modes]
            mixed = jnp.einsum("bmi,iom->bmo", spectrum, weights[layer])
            # irfft zero-fills the frequencies above `modes`.
            update = jnp.fft.irfft(mixed, n=patches, axis=1)
            update = update + field @ self.pointwise[...][layer] + self.pointwise_bias[...][layer]
            if layer < self.num_layers - 1:
                update = jax.nn.gelu(update)
            field = update * keep
        correction = self.proj_out(jax.nn.gelu(self.proj_hidden(field)))
        return visible + correction.reshape(visible.shape)
