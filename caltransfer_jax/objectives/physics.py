"""Physics objectives: Beer–Lambert additivity under synthetic mixing; smoothness and peak shape.

**Beer–Lambert additivity.** Absorbance before any instrument effect is linear in
concentration × path, A = path · Σ_c conc_c · ε_c. Mixing two samples of the same modality in
fractions (α, 1 − α) at the same path gives A_mix = α·A₁ + (1 − α)·A₂, whose concentrations are
α·c₁ + (1 − α)·c₂ — so every *linear* read-out of the chemistry (the ridge probe of the
evaluation, the regression head's first layer) must mix the same way. The term asks the z_chem
posterior means to do so:

    L_BL = Σ_i ‖z(A_mix,i) − (α_i z(A_i) + (1 − α_i) z(A_j(i)))‖² / Σ_i ‖z(A_i) − z(A_j(i))‖²

The mixtures are formed from spectra *before* instrument effects (the pipeline's master view,
measured without axis error, line shape, stray light, non-linearity, baseline or noise), where
the physics is linear; after them (transmittance convolution, stray light, log) it is not, and
mixing measured spectra would teach a false law. The ratio makes the term invariant to the scale
of z, so shrinking the latent cloud does not lower it. Partners are drawn among samples of the
same modality on the same axis (a mixture is only defined point by point on a common grid).

**Smoothness and peak shape** act on the masked reconstruction at hidden points, in the
derivative domain: the Savitzky–Golay first derivative (slope) and second derivative (curvature,
the band-resolving transform of NIR practice) of the reconstruction must match those of the
true spectrum, each as a relative squared error over windows lying wholly in hidden valid points.
Their minimiser is the true spectrum, so they penalise exactly the artefacts of a patch decoder
(steps at patch seams, ringing, bands too broad or split) without flattening real bands, as an
absolute roughness penalty would. There is no non-negativity term: standardised spectra are
zero-mean by construction.

Shapes: b batch, l points, c z_chem.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int
from scipy.signal import savgol_coeffs


def mixing_partners(
    key: Array,
    wavenumber: Float[Array, "b l"],
    valid: Bool[Array, "b l"],
    modality: Int[Array, " b"],
) -> tuple[Int[Array, " b"], Bool[Array, " b"]]:
    """A random partner per spectrum among the others of the same modality on the same axis.

    Returns:
        partner (b,) indices and has_partner (b,) (False where no compatible spectrum exists).
    """
    same_valid = jnp.all(valid[:, None] == valid[None], axis=-1)
    close = jnp.abs(wavenumber[:, None] - wavenumber[None]) <= 1e-3 * jnp.abs(wavenumber[:, None])
    same_axis = jnp.all(close | ~valid[:, None], axis=-1)
    compatible = (
        (modality[:, None] == modality[None]) & same_valid & same_axis & valid.any(-1)[:, None]
    )
    compatible = compatible & ~jnp.eye(modality.shape[0], dtype=bool)
    scores = jnp.where(compatible, jax.random.uniform(key, compatible.shape), -1.0)
    return jnp.argmax(scores, axis=-1), compatible.any(-1)


def mix(
    key: Array,
    absorbance: Float[Array, "b l"],
    partner: Int[Array, " b"],
    alpha_range: tuple[float, float],
) -> tuple[Float[Array, "b l"], Float[Array, " b"]]:
    """Beer–Lambert mixtures α·A_i + (1 − α)·A_partner(i), α uniform in `alpha_range`."""
    alpha = jax.random.uniform(
        key, (absorbance.shape[0],), minval=alpha_range[0], maxval=alpha_range[1]
    )
    mixed = alpha[:, None] * absorbance + (1.0 - alpha[:, None]) * absorbance[partner]
    return mixed, alpha


def beer_lambert_loss(
    z_mix: Float[Array, "b c"],
    z: Float[Array, "b c"],
    partner: Int[Array, " b"],
    alpha: Float[Array, " b"],
    weight: Bool[Array, " b"],
) -> Float[Array, ""]:
    """Relative deviation of z(mixture) from the same mixture of the components' z.

    Args:
        z_mix: (b, c) latent of each mixture.
        z: (b, c) latent of each unmixed spectrum; row partner[i] is the second component.
        partner: (b,) second component of mixture i.
        alpha: (b,) fraction of spectrum i in mixture i.
        weight: (b,) mixtures that count (those with a compatible partner).
    """
    w = weight.astype(z.dtype)
    linear = alpha[:, None] * z + (1.0 - alpha[:, None]) * z[partner]
    deviation = jnp.sum(w * jnp.sum(jnp.square(z_mix - linear), -1))
    spread = jnp.sum(w * jnp.sum(jnp.square(z - z[partner]), -1))
    return deviation / jnp.maximum(spread, 1e-6)


@functools.cache
def _savgol(window: int, order: int, deriv: int) -> np.ndarray:
    # Correlation order (use="dot"): coefficient k multiplies x[i + k] of the window.
    return savgol_coeffs(window, order, deriv=deriv, use="dot").astype(np.float32)


def _windows(x: Array, window: int) -> Array:
    """(b, l) → (b, l − window + 1, window) sliding windows."""
    length = x.shape[-1] - window + 1
    return jnp.stack([x[:, k : k + length] for k in range(window)], axis=-1)


def derivative_loss(
    reconstruction: Float[Array, "b l"],
    target: Float[Array, "b l"],
    hidden: Bool[Array, "b l"],
    window: int,
    order: int,
    deriv: int,
) -> Float[Array, ""]:
    """Relative squared error of the Savitzky–Golay derivative over wholly hidden windows.

    Args:
        reconstruction: (b, l) reconstruction of a masked spectrum.
        target: (b, l) the true spectrum.
        hidden: (b, l) hidden valid points (the only points where the reconstruction is a
            prediction).
        window: odd Savitzky–Golay window (points).
        order: polynomial order (> deriv).
        deriv: 1 (slope: smoothness) or 2 (curvature: peak shape).

    Returns:
        Σ (D ŷ − D y)² / Σ (D y)² over windows of `window` hidden points (0 if none).
    """
    coeffs = jnp.asarray(_savgol(window, order, deriv))
    inside = _windows(hidden, window).all(-1)
    safe_target = jnp.where(hidden, target, 0.0)
    d_pred = _windows(reconstruction, window) @ coeffs
    d_true = _windows(safe_target, window) @ coeffs
    error = jnp.sum(jnp.where(inside, jnp.square(d_pred - d_true), 0.0))
    scale = jnp.sum(jnp.where(inside, jnp.square(d_true), 0.0))
    return error / jnp.maximum(scale, 1e-12)
