"""Tests of GCT-PLS: equivalence with PLS at γ = 0, the batched computation against a direct one,
exact invariance on the transfer pairs at γ = ∞, the CV-chosen model on simulated instruments,
and a real-data check on corn m5 → mp6."""

import numpy as np
import pytest

from caltransfer_jax.methods.classical.dipls import regression_vectors
from caltransfer_jax.methods.classical.gct import GCTPLS, gct_path
from caltransfer_jax.methods.classical.pls import PLSRegressionCV, pls1_path

WAVELENGTHS = np.linspace(0.0, 1.0, 50)


def _instruments(rng, n=70, noise=1e-3):
    """Mixtures measured on a master and on a target with shifted bands, gain and a baseline."""
    conc = rng.uniform(0, 1, (n, 3))

    def measure(centres, gain, baseline):
        pure = np.exp(-0.5 * ((WAVELENGTHS[None] - np.asarray(centres)[:, None]) / 0.07) ** 2)
        return gain * conc @ pure + baseline + noise * rng.standard_normal((n, len(WAVELENGTHS)))

    master = measure([0.3, 0.5, 0.7], 1.0, 0.0)
    target = measure([0.33, 0.53, 0.715], 0.9, 0.05 + 0.3 * WAVELENGTHS)
    return master, target, conc[:, 0]


def _r2(y, pred):
    return 1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)


def _direct_gct(X, y, delta, gamma, n_components):
    """GCT-PLS with an explicit p × p solve and NIPALS deflation."""
    X, y = X.copy(), y.copy()
    weights, loadings, y_loadings = [], [], []
    for _ in range(n_components):
        v = X.T @ y
        w = np.linalg.solve(np.eye(X.shape[1]) + gamma / (y @ y) * delta.T @ delta, v)
        w /= np.linalg.norm(w)
        t = X @ w
        p, q = X.T @ t / (t @ t), y @ t / (t @ t)
        X -= np.outer(t, p)
        y = y - q * t
        weights.append(w)
        loadings.append(p)
        y_loadings.append(q)
    return regression_vectors(np.stack(weights, 1), np.stack(loadings, 1), np.array(y_loadings))


def _svd_directions(delta):
    _, s, vt = np.linalg.svd(delta, full_matrices=False)
    return vt.T[None], s[None] ** 2


def test_gamma_zero_is_pls():
    rng = np.random.default_rng(0)
    master, target, y = _instruments(rng)
    X, yc = master - master.mean(0), y - y.mean()
    directions, sq = _svd_directions(master[:5] - target[:5])
    coefs = gct_path(X, yc, directions, sq, np.array([0.0]), 8)[0, 0]
    expected, _ = pls1_path(master, y, 8)
    np.testing.assert_allclose(coefs, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_batched_computation_matches_direct():
    rng = np.random.default_rng(1)
    master, target, y = _instruments(rng, noise=1e-2)
    X, yc = master - master.mean(0), y - y.mean()
    deltas = [master[:6] - target[:6], master[3:10] - target[3:10]]
    width = 7
    directions = np.zeros((2, X.shape[1], width))
    sq = np.zeros((2, width))
    for f, delta in enumerate(deltas):
        d, s = _svd_directions(delta)
        directions[f, :, : s.shape[1]], sq[f, : s.shape[1]] = d[0], s[0]
    gammas = np.array([0.1, 10.0, 1e3])
    coefs = gct_path(X, yc, directions, sq, gammas, 5)
    for f, delta in enumerate(deltas):
        for g, gamma in enumerate(gammas):
            expected = _direct_gct(X, yc, delta, gamma, 5)
            np.testing.assert_allclose(
                coefs[f, g], expected, rtol=0, atol=1e-8 * np.abs(expected).max()
            )


def test_infinite_penalty_makes_pairs_indistinguishable():
    rng = np.random.default_rng(2)
    master, target, y = _instruments(rng)
    pairs = np.arange(8)
    model = GCTPLS(PLSRegressionCV(max_components=6), ratios=(np.inf,), max_components=6)
    model.fit(master[20:], y[20:], X_master_transfer=master[pairs], X_target_transfer=target[pairs])
    np.testing.assert_allclose(
        model.predict(target[pairs]), model.predict(master[pairs]), rtol=0, atol=1e-10
    )


def test_fitted_model_matches_direct_refit():
    rng = np.random.default_rng(3)
    master, target, y = _instruments(rng)
    cal, pairs = np.arange(10, 70), np.arange(10)
    model = GCTPLS(max_components=8, ratios=(0.0, 1.0, 1e2, 1e4)).fit(
        master[cal],
        y[cal],
        X_master_transfer=master[pairs],
        X_target_transfer=target[pairs],
        y_transfer=y[pairs],
    )
    assert model.rmsecv_.shape == (8, 4)
    X, yc = master[cal] - master[cal].mean(0), y[cal] - y[cal].mean()
    expected = _direct_gct(X, yc, master[pairs] - target[pairs], model.gamma_, 8)
    coef = expected[model.n_components_ - 1]
    np.testing.assert_allclose(model.coef_, coef, rtol=0, atol=1e-8 * np.abs(coef).max())


@pytest.mark.parametrize("labelled", [True, False])
def test_cross_validated_transfer_beats_master_model(labelled):
    rng = np.random.default_rng(4)
    master, target, y = _instruments(rng, n=100)
    cal, pairs, test = np.arange(40, 100), np.arange(10), np.arange(10, 40)
    pls = PLSRegressionCV(max_components=8).fit(master[cal], y[cal])
    transfer = dict(X_master_transfer=master[pairs], X_target_transfer=target[pairs])
    if labelled:
        transfer["y_transfer"] = y[pairs]
    model = GCTPLS(pls, max_components=8).fit(master[cal], y[cal], **transfer)
    assert model.ratio_ > 0
    assert _r2(y[test], pls.predict(target[test])) < 0.95
    assert _r2(y[test], model.predict(target[test])) > 0.99


def test_requirements_and_bad_input():
    rng = np.random.default_rng(5)
    master, target, y = _instruments(rng)
    with pytest.raises(ValueError, match="X_master_transfer"):
        GCTPLS().fit(master, y, X_target_transfer=target[:5])
    with pytest.raises(ValueError, match="at least 2"):
        GCTPLS().fit(master, y, X_master_transfer=master[:1], X_target_transfer=target[:1])
    with pytest.raises(ValueError, match="ratios"):
        GCTPLS(ratios=(-1.0,)).fit(master, y, X_master_transfer=master, X_target_transfer=target)


def test_corn_m5_to_mp6(shared_data):
    m5, mp6, props = (
        np.loadtxt(shared_data / "corn" / name, delimiter=",", skiprows=1)
        for name in ("m5spec.csv", "mp6spec.csv", "propvals.csv")
    )
    y = props[:, 0]  # moisture
    perm = np.random.default_rng(0).permutation(80)
    pool, test = perm[:60], perm[60:]
    transfer = pool[:30]
    model = GCTPLS().fit(
        m5[pool],
        y[pool],
        X_master_transfer=m5[transfer],
        X_target_transfer=mp6[transfer],
        y_transfer=y[transfer],
    )
    assert _r2(y[test], model.predict(mp6[test])) > 0.7
