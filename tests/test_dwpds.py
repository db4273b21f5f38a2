"""Double-window PDS: a recovered banded transfer (also from 5 pairs), identity between identical
instruments, PDS at a second window of 0, exact grouped leave-one-out, clear refusals."""

import numpy as np
import pytest

from caltransfer_jax.methods.classical.dwpds import DoubleWindowPDS, _grouped_loo, _stack
from caltransfer_jax.methods.classical.pls import PLSRegressionCV
from caltransfer_jax.methods.classical.standardisation import (
    PiecewiseDirectStandardisation,
    _windows,
)

GRID = np.arange(150, dtype=float)
KERNEL = np.array([0.1, 0.3, 0.4, 0.2])  # asymmetric: blurs and shifts by about half a point


def _bands(n, seed):
    """Spectra of 6 bands at random centres and widths: smooth but of high rank."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 150, size=(n, 6, 1))
    widths = rng.uniform(5, 12, size=(n, 6, 1))
    amps = rng.uniform(0.1, 1.0, size=(n, 6, 1))
    return np.sum(amps * np.exp(-0.5 * ((GRID - centres) / widths) ** 2), axis=1)


def _target(X):
    """The target instrument: a small convolution kernel, a gain and a sloped offset."""
    padded = np.pad(X, ((0, 0), (2, 2)), mode="edge")
    blurred = sum(w * padded[:, i : i + X.shape[1]] for i, w in enumerate(KERNEL))
    return 0.9 * blurred + 0.05 + 3e-4 * GRID


def _master():
    X = _bands(40, 0)
    y = X[:, 40] - X[:, 100]
    return X, y, PLSRegressionCV(max_components=8).fit(X, y)


@pytest.mark.parametrize("k", [5, 20])
def test_dwpds_recovers_a_banded_transfer(k):
    X, y, master = _master()
    transfer_master = _bands(k, k)
    noise = 1e-4 * np.random.default_rng(3).standard_normal(transfer_master.shape)
    transfer_target = _target(transfer_master) + noise
    # New spectra, unlike any transfer sample.
    test_master = _bands(30, 9)
    test_target = _target(test_master)
    method = DoubleWindowPDS(master).fit(
        X, y, X_master_transfer=transfer_master, X_target_transfer=transfer_target
    )
    assert method.half_window_ in method.half_windows
    assert method.second_half_window_ in method.second_half_windows
    inner = slice(10, 140)  # away from the padded ends

    def spectral(Z):
        return np.sqrt(np.mean((Z - test_master)[:, inner] ** 2))

    def predicted(Z):
        return np.sqrt(np.mean((master.predict(Z) - master.predict(test_master)) ** 2))

    transferred = method.transform(test_target)
    assert spectral(transferred) < 0.05 * spectral(test_target)
    assert predicted(transferred) < 0.05 * predicted(test_target)
    np.testing.assert_allclose(method.predict(test_target), master.predict(transferred))
    if k == 5:  # few pairs: borrowing the neighbours' pairs helps over plain PDS
        pds = PiecewiseDirectStandardisation(master).fit(
            X, y, X_master_transfer=transfer_master, X_target_transfer=transfer_target
        )
        assert spectral(transferred) < spectral(pds.transform(test_target))


def _low_rank(n, seed):
    """Three bands at fixed centres with random amplitudes: a low-rank family."""
    rng = np.random.default_rng(seed)
    centres = np.array([30.0, 70.0, 110.0])
    amps = rng.uniform(0.2, 1.0, size=(n, centres.size))
    return amps @ np.exp(-0.5 * ((GRID[None, :] - centres[:, None]) / 9.0) ** 2) + 0.1


def test_dwpds_is_identity_on_identical_instruments():
    X, y, master = _master()
    transfer = _low_rank(12, 1)
    new = _low_rank(10, 2)
    method = DoubleWindowPDS(master).fit(
        X, y, X_master_transfer=transfer, X_target_transfer=transfer
    )
    np.testing.assert_allclose(method.transform(new), new, atol=2e-4)
    np.testing.assert_allclose(method.predict(new), master.predict(new), atol=1e-3)


def test_second_window_of_zero_is_pds():
    X, y, master = _master()
    transfer_master = _bands(15, 4)
    transfer_target = _target(transfer_master)
    pairs = dict(X_master_transfer=transfer_master, X_target_transfer=transfer_target)
    pds = PiecewiseDirectStandardisation(master).fit(X, y, **pairs)
    dw = DoubleWindowPDS(master, second_half_windows=(0,)).fit(X, y, **pairs)
    assert (dw.half_window_, dw.alpha_) == (pds.half_window_, pds.alpha_)
    np.testing.assert_allclose(dw.coefs_, pds.coefs_, atol=1e-8)
    new = _target(_bands(5, 5))
    np.testing.assert_allclose(dw.transform(new), pds.transform(new), atol=1e-8)


def test_grouped_loo_equals_refitting_without_each_sample():
    rng = np.random.default_rng(0)
    k, p, half, half2, alpha = 7, 12, 1, 2, 0.05
    Xm, Xt = rng.normal(size=(k, p)), rng.normal(size=(k, p))
    inputs, outputs, windows = _stack(Xm, Xt, half, half2)
    residuals = _grouped_loo(inputs, outputs, [alpha])[0]
    assert np.array_equal(windows, _windows(Xt, half))
    points = np.clip(np.arange(p)[:, None] + np.arange(-half2, half2 + 1), 0, p - 1)
    for j in range(p):
        lam = alpha * np.linalg.norm(inputs[j].reshape(-1, 2 * half + 1), 2) ** 2
        for s in range(k):
            keep = np.arange(k) != s
            # Every stacked point centred on the remaining samples' means (its own intercept).
            A = np.vstack([windows[i][keep] - windows[i][keep].mean(axis=0) for i in points[j]])
            b = np.concatenate([Xm[keep, i] - Xm[keep, i].mean() for i in points[j]])
            f = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ b)
            pred = Xm[keep, j].mean() + (windows[j][s] - windows[j][keep].mean(axis=0)) @ f
            np.testing.assert_allclose(residuals[j, s], Xm[s, j] - pred, atol=1e-10)


def test_dwpds_refuses_bad_input():
    X, y, master = _master()
    transfer = _bands(6, 1)
    assert DoubleWindowPDS.requires == frozenset({"X_master_transfer", "X_target_transfer"})
    with pytest.raises(ValueError, match="X_target_transfer must have 150 columns"):
        DoubleWindowPDS(master).fit(
            X, y, X_master_transfer=transfer, X_target_transfer=transfer[:, 1:]
        )
    with pytest.raises(ValueError, match="paired row by row"):
        DoubleWindowPDS(master).fit(
            X, y, X_master_transfer=transfer, X_target_transfer=transfer[:4]
        )
    with pytest.raises(ValueError, match="needs"):
        DoubleWindowPDS(master).fit(X, y, X_master_transfer=transfer)
    with pytest.raises(ValueError, match="at least two"):
        DoubleWindowPDS(master).fit(
            X, y, X_master_transfer=transfer[:1], X_target_transfer=transfer[:1]
        )
    method = DoubleWindowPDS(master).fit(
        X, y, X_master_transfer=transfer, X_target_transfer=_target(transfer)
    )
    with pytest.raises(ValueError, match=r"shape \(n, 150\)"):
        method.transform(transfer[:, :-1])
