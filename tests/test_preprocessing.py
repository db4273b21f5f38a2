"""Spectral preprocessing: SNV, MSC, Savitzky–Golay derivatives and the spec parser."""

import numpy as np
import pytest

from caltransfer_jax.methods.classical.preprocessing import (
    MSC,
    SNV,
    SavitzkyGolay,
    make_preprocessing,
)

AXIS = np.linspace(0, 1, 101)


def _spectra():
    rng = np.random.default_rng(0)
    base = np.exp(-0.5 * ((AXIS - 0.4) / 0.05) ** 2) + 0.5 * np.exp(
        -0.5 * ((AXIS - 0.7) / 0.1) ** 2
    )
    gains, offsets = rng.uniform(0.5, 2.0, 6), rng.uniform(-1, 1, 6)
    return gains[:, None] * base + offsets[:, None], base


def test_snv_removes_gain_and_offset():
    X, base = _spectra()
    out = SNV().fit_transform(X)
    np.testing.assert_allclose(out, np.broadcast_to(out[0], out.shape), atol=1e-12)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=1, ddof=1), 1)
    with pytest.raises(ValueError, match="constant"):
        SNV().transform(np.ones((2, 5)))


def test_msc_maps_scatter_variants_onto_the_reference():
    X, _ = _spectra()
    msc = MSC().fit(X)
    out = msc.transform(X)
    np.testing.assert_allclose(out, np.broadcast_to(msc.reference_, out.shape), atol=1e-10)


def test_savitzky_golay_derivative_of_a_quadratic():
    X = np.stack([3 * AXIS**2 + AXIS, -(AXIS**2)])
    step = AXIS[1] - AXIS[0]
    d1 = SavitzkyGolay(window=7, polyorder=2, deriv=1).transform(X) / step
    np.testing.assert_allclose(d1[0], 6 * AXIS + 1, atol=1e-8)
    np.testing.assert_allclose(d1[1], -2 * AXIS, atol=1e-8)


def test_spec_parser():
    X, _ = _spectra()
    np.testing.assert_allclose(make_preprocessing("none").fit_transform(X), X)
    chained = make_preprocessing("snv+sg1(15)").fit_transform(X)
    expected = SavitzkyGolay(15, 2, 1).transform(SNV().transform(X))
    np.testing.assert_allclose(chained, expected)
    with pytest.raises(ValueError, match="unknown preprocessing step 'wavelet'"):
        make_preprocessing("snv+wavelet")
