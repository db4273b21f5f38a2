"""The real-vs-simulated statistics recover known offsets, shifts, widths and noise."""

import numpy as np
import pytest

from caltransfer_jax.simulate import stats


def _bands(x, centers, fwhm):
    return sum(np.exp(-4 * np.log(2) * ((x - c) / fwhm) ** 2) for c in centers)


def test_pair_statistics_recover_known_differences():
    x = np.arange(1100.0, 2500.0, 2.0)
    rng = np.random.default_rng(0)
    n, centers = 20, (1300, 1500, 1750, 1950, 2150, 2350)
    a = 0.3 + 0.5 * _bands(x, centers, 60.0) + rng.normal(0, 1e-3, (n, x.size))
    shifted = 0.3 + 0.5 * _bands(x - 2.0, centers, 60.0)  # features 2 nm further up
    b = shifted + 0.05 + 0.02 * (x - x.mean()) / 1000 + rng.normal(0, 1e-3, (n, x.size))
    s = stats.pair_statistics(stats.Pair("synthetic", x, x, a, b))
    assert np.median(s["shift"]) == pytest.approx(2.0, abs=0.2)
    assert np.median(s["offset"]) == pytest.approx(0.05, abs=0.005)
    assert np.median(s["slope"]) == pytest.approx(0.02, abs=0.005)
    assert np.median(s["noise"]) == pytest.approx(1e-3, rel=0.15)
    assert np.nanmedian(s["band_fwhm"]) == pytest.approx(60.0, rel=0.15)
    assert np.median(s["range"]) == pytest.approx(0.5, abs=0.05)
    assert (
        stats.pair_statistics(stats.Pair("apart", x[:100], x[-100:] + 500, a[:, :100], b[:, -100:]))
        is None
    )


def test_real_corn_statistics(shared_data):
    pairs = {p.name: p for p in stats.real_pairs(shared_data)}
    s = stats.pair_statistics(pairs["corn m5 / mp5"])
    assert np.median(s["offset"]) == pytest.approx(0.044, abs=0.002)  # mp5 reads lower than m5
    assert np.median(s["shift"]) < 1.0
    assert pairs["tablets 1 / 2"].a.shape == (655, 650)
