"""The JAX DWT equals pywt.wavedec (periodization) and assigns every coefficient to one patch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt

from caltransfer_jax.models import wavelets


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.mark.filterwarnings(
    "ignore:Level value"
)  # deep levels of short inputs are tested on purpose
@pytest.mark.parametrize(
    "wavelet,length,levels",
    [("db4", 2048, 4), ("db4", 16, 3), ("haar", 64, 6), ("db2", 24, 3), ("sym5", 128, 2)],
)
def test_wavedec_matches_pywt_periodization(wavelet, length, levels):
    x = np.random.default_rng(0).normal(size=(3, length)).astype(np.float32)
    ours = jax.jit(wavelets.wavedec, static_argnums=(1, 2))(x, wavelet, levels)
    reference = pywt.wavedec(x.astype(np.float64), wavelet, mode="periodization", level=levels)
    assert [c.shape for c in ours] == [c.shape for c in reference]
    for got, want in zip(ours, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


def test_coefficients_per_patch_uses_every_coefficient_once_on_its_patch():
    x = np.random.default_rng(1).normal(size=(2, 64)).astype(np.float32)
    per_patch = wavelets.coefficients_per_patch(x, "db4", 3, 8)
    assert per_patch.shape == (2, 8, 8)
    # Orthogonal transform: all coefficients kept means the energy is kept.
    np.testing.assert_allclose(jnp.sum(per_patch**2), np.sum(x**2), rtol=1e-5)
    coeffs = pywt.wavedec(x.astype(np.float64), "db4", mode="periodization", level=3)
    # Patch 5 holds cA3[5], cD3[5], cD2[10:12], cD1[20:24] (coarsest first).
    expected = np.concatenate(
        [coeffs[0][:, 5:6], coeffs[1][:, 5:6], coeffs[2][:, 10:12], coeffs[3][:, 20:24]], axis=-1
    )
    np.testing.assert_allclose(per_patch[:, 5], expected, rtol=1e-5, atol=2e-6)


def test_dwt_is_differentiable_and_linear():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 32)), jnp.float32)
    grad = jax.grad(lambda v: jnp.sum(wavelets.coefficients_per_patch(v, "db4", 2, 4) ** 2))(x)
    # d/dx ‖Wx‖² = 2 Wᵀ W x = 2x for an orthogonal W.
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-4, atol=1e-5)


def test_bad_lengths_and_wavelets_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        wavelets.wavedec(jnp.zeros((1, 12)), "db4", 3)
    with pytest.raises(ValueError, match="patch_size"):
        wavelets.coefficients_per_patch(jnp.zeros((1, 32)), "db4", 3, 4)
    with pytest.raises(ValueError, match="not orthogonal"):
        wavelets.analysis_filters("bior2.2")
