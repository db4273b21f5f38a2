"""A jittable, differentiable multi-level discrete wavelet transform (periodization mode).

The analysis filters come from PyWavelets; the transform itself is a pair of strided
convolutions per level, written in JAX, so it runs inside `jit` and passes gradients (it is
linear). In 'periodization' mode the transform of a length-N signal (N divisible by 2^levels) is
orthogonal and has exactly N coefficients: the detail coefficients of level j number N / 2^j, and
the approximation of the deepest level N / 2^levels. With patches of p points (p divisible by
2^levels) each patch therefore owns p / 2^j coefficients of level j and p / 2^levels of the
approximation: p in all, none dropped. `wavedec` matches `pywt.wavedec(x, wavelet,
mode="periodization", level=levels)` (tested).

Shapes: b batch, l points.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pywt
from jaxtyping import Array, Float


@functools.cache
def analysis_filters(wavelet: str) -> np.ndarray:
    """Returns the (2, filter_length) float32 stack [low-pass, high-pass] of reversed filters.

    Reversed so that a cross-correlation (what `lax.conv_general_dilated` computes) applies the
    convolution pywt defines.
    """
    w = pywt.Wavelet(wavelet)
    if not w.orthogonal:
        raise ValueError(f"wavelet {wavelet!r} is not orthogonal; periodization needs one")
    return np.stack([w.dec_lo[::-1], w.dec_hi[::-1]]).astype(np.float32)


def dwt_level(x: Float[Array, "b l"], wavelet: str) -> tuple[Array, Array]:
    """One analysis level: returns (approximation, detail), each (b, l / 2).

    pywt's periodization computes c[k] = Σ_j f[j] x[(2k + L/2 − j) mod l] for a filter f of even
    length L; with the reversed filter this is a stride-2 correlation of x extended periodically
    by L/2 − 1 points on each side.
    """
    filters = analysis_filters(wavelet)
    half = filters.shape[1] // 2
    length = x.shape[-1]
    if length % 2:
        raise ValueError(f"periodization DWT needs an even length, got {length}")
    # Periodic extension by L/2 − 1 points each side; modular indices stay exact even when the
    # filter is longer than the signal (deep levels of short inputs).
    index = np.arange(-(half - 1), length + half - 1) % length
    padded = jnp.take(x, index, axis=-1)
    out = jax.lax.conv_general_dilated(
        padded[:, None, :],
        jnp.asarray(filters)[:, None, :],
        window_strides=(2,),
        padding="VALID",
        dimension_numbers=("NCH", "OIH", "NCH"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return out[:, 0], out[:, 1]


def wavedec(x: Float[Array, "b l"], wavelet: str, levels: int) -> list[Array]:
    """Multi-level DWT in pywt's order: [cA_levels, cD_levels, …, cD_1].

    Args:
        x: (b, l) signals, l divisible by 2**levels.
        wavelet: a PyWavelets orthogonal wavelet name, e.g. "db4".
        levels: number of levels (≥ 1).

    Returns:
        A list of levels + 1 arrays; cA_levels and cD_levels are (b, l / 2**levels), cD_j is
        (b, l / 2**j).
    """
    if x.shape[-1] % (2**levels):
        raise ValueError(f"length {x.shape[-1]} is not divisible by 2**levels = {2**levels}")
    details = []
    approx = x
    for _ in range(levels):
        approx, detail = dwt_level(approx, wavelet)
        details.append(detail)
    return [approx, *details[::-1]]


def coefficients_per_patch(
    x: Float[Array, "b l"], wavelet: str, levels: int, patch_size: int
) -> Float[Array, "b P p"]:
    """All DWT coefficients of x, grouped by the patch their position falls in.

    Coefficient k of a level with stride s = 2^j sits at points [k·s, (k+1)·s): reshaping each
    level to (b, P, p / s) puts it on the token of that patch. Concatenated over levels (coarsest
    first), every token gets p coefficients and all l coefficients are used exactly once.

    Args:
        x: (b, l) signals, l = P · patch_size.
        wavelet: PyWavelets orthogonal wavelet name.
        levels: DWT levels; patch_size must be divisible by 2**levels.
        patch_size: points per patch p.

    Returns:
        (b, P, p) coefficients.
    """
    if patch_size % (2**levels):
        raise ValueError(f"patch_size {patch_size} is not divisible by 2**levels = {2**levels}")
    batch, length = x.shape
    patches = length // patch_size
    coeffs = wavedec(x, wavelet, levels)
    return jnp.concatenate([c.reshape(batch, patches, -1) for c in coeffs], axis=-1)
