"""Tests of di-PLS: equivalence with PLS at γ = 0, the reduced computation against a direct one,
domain invariance on simulated spectra, and a real-data check on corn m5 → mp6."""

import numpy as np
import pytest

from caltransfer_jax.methods.classical.dipls import (
    SemiSupervisedDIPLS,
    UnsupervisedDIPLS,
    dipls_path,
    regression_vectors,
)
from caltransfer_jax.methods.classical.pls import PLSRegressionCV, pls1_path

WAVELENGTHS = np.linspace(0.0, 1.0, 60)


def _bands(centres, width=0.06):
    return np.exp(-0.5 * ((WAVELENGTHS[None, :] - np.asarray(centres)[:, None]) / width) ** 2)


def _domains(rng, n_source=50, n_target=50, interferent=2.0, noise=1e-3):
    """Three-component mixtures; the target domain adds an unseen interferent band."""
    pure = _bands([0.25, 0.5, 0.7])
    source_conc = rng.uniform(0, 1, (n_source, 3))
    target_conc = rng.uniform(0, 1, (n_target, 3))
    Xs = source_conc @ pure + noise * rng.standard_normal((n_source, 60))
    Xt = target_conc @ pure + noise * rng.standard_normal((n_target, 60))
    Xt += interferent * rng.uniform(0, 1, (n_target, 1)) * _bands([0.45])
    return Xs, source_conc[:, 0], Xt, target_conc[:, 0]


def _r2(y, pred):
    return 1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)


def _direct_dipls(X, y, Xs, Xt, gamma, n_components):
    """di-PLS written out in the p-dimensional space (explicit relaxed D and a dense solve)."""
    X, y, Xs, Xt = X.copy(), y.copy(), Xs.copy(), Xt.copy()
    weights, loadings, y_loadings = [], [], []
    for _ in range(n_components):
        diff = Xs.T @ Xs / (len(Xs) - 1) - Xt.T @ Xt / (len(Xt) - 1)
        values, vectors = np.linalg.eigh(diff)
        D = (vectors * np.abs(values)) @ vectors.T
        v = X.T @ y
        g = gamma
        if gamma == "heuristic":
            w_pls = v / (y @ y)
            g = np.sum((X - np.outer(y, w_pls)) ** 2) / (w_pls @ D @ w_pls)
        w = np.linalg.solve(np.eye(X.shape[1]) + g / (y @ y) * D, v)
        w /= np.linalg.norm(w)
        t, ts, tt_ = X @ w, Xs @ w, Xt @ w
        p = X.T @ t / (t @ t)
        q = y @ t / (t @ t)
        X -= np.outer(t, p)
        y = y - q * t
        Xs -= np.outer(ts, Xs.T @ ts / (ts @ ts))
        Xt -= np.outer(tt_, Xt.T @ tt_ / (tt_ @ tt_))
        weights.append(w)
        loadings.append(p)
        y_loadings.append(q)
    W, P = np.stack(weights, 1), np.stack(loadings, 1)
    return regression_vectors(W, P, np.asarray(y_loadings))


def test_gamma_zero_is_pls():
    rng = np.random.default_rng(0)
    Xs, ys, Xt, _ = _domains(rng)
    coefs_pls, _ = pls1_path(Xs, ys, 8)
    coefs, gammas = dipls_path(
        Xs - Xs.mean(0), ys - ys.mean(), Xs - Xs.mean(0), Xt - Xt.mean(0), 0.0, 8
    )
    assert np.all(gammas == 0)
    np.testing.assert_allclose(coefs, coefs_pls, rtol=0, atol=1e-10 * np.abs(coefs_pls).max())


@pytest.mark.parametrize("gamma", [3.0, 1e3, "heuristic"])
def test_reduced_computation_matches_direct(gamma):
    rng = np.random.default_rng(1)
    Xs, ys, Xt, _ = _domains(rng, n_source=30, n_target=25, noise=1e-2)
    Xs, Xt, yc = Xs - Xs.mean(0), Xt - Xt.mean(0), ys - ys.mean()
    coefs, _ = dipls_path(Xs, yc, Xs, Xt, gamma, 5)
    expected = _direct_dipls(Xs, yc, Xs, Xt, gamma, 5)
    np.testing.assert_allclose(coefs, expected, rtol=0, atol=1e-8 * np.abs(expected).max())


def test_penalty_shrinks_domain_discrepancy():
    rng = np.random.default_rng(2)
    Xs, ys, Xt, _ = _domains(rng)
    Xs, Xt, yc = Xs - Xs.mean(0), Xt - Xt.mean(0), ys - ys.mean()
    values, vectors = np.linalg.eigh(Xs.T @ Xs / 49 - Xt.T @ Xt / 49)
    D = (vectors * np.abs(values)) @ vectors.T

    def discrepancy(gamma):  # ŵᵀ|D|ŵ of the first latent variable
        coefs, _ = dipls_path(Xs, yc, Xs, Xt, gamma, 1)
        w = coefs[0] / np.linalg.norm(coefs[0])  # one latent variable: b ∝ w
        return w @ D @ w

    values = [discrepancy(g) for g in (0.0, 1e1, 1e2, 1e3, 1e4, 1e6)]
    assert np.all(np.diff(values) < 0)
    assert values[-1] < 1e-3 * values[0]


def test_unsupervised_dipls_ignores_target_interferent():
    rng = np.random.default_rng(3)
    Xs, ys, Xt, yt = _domains(rng, n_target=80, interferent=0.0)
    Xt += 2.0 * rng.uniform(0, 1, (80, 1)) * _bands([0.3])  # overlaps the analyte band
    unlabelled, test, y_test = Xt[:40], Xt[40:], yt[40:]
    pls = PLSRegressionCV(n_components=3).fit(Xs, ys)
    model = UnsupervisedDIPLS(pls, gamma=1e4).fit(Xs, ys, X_target_unlabelled=unlabelled)
    assert model.n_components_ == 3
    assert _r2(y_test, pls.predict(test)) < 0
    assert _r2(y_test, model.predict(test)) > 0.9


def test_heuristic_and_semi_supervised_fit():
    rng = np.random.default_rng(4)
    Xs, ys, Xt, yt = _domains(rng, n_target=80)
    master = PLSRegressionCV(max_components=6)
    transfer = dict(X_target_unlabelled=Xt[:40], X_target_transfer=Xt[:8], y_transfer=yt[:8])
    model = SemiSupervisedDIPLS(master).fit(Xs, ys, **transfer)
    assert np.all(model.gamma_ > 0)
    assert _r2(yt[40:], model.predict(Xt[40:])) > 0.9
    # The unsupervised form ignores the labelled transfer samples.
    unsup = UnsupervisedDIPLS(master).fit(Xs, ys, **transfer)
    only = UnsupervisedDIPLS(master).fit(Xs, ys, X_target_unlabelled=Xt[:40])
    np.testing.assert_array_equal(unsup.coef_, only.coef_)


def test_heuristic_model_is_equivariant_to_units():
    rng = np.random.default_rng(6)
    Xs, ys, Xt, _ = _domains(rng, noise=1e-2)
    Xs, Xt, yc = Xs - Xs.mean(0), Xt - Xt.mean(0), ys - ys.mean()
    coefs, _ = dipls_path(Xs, yc, Xs, Xt, "heuristic", 4)
    scaled_y, _ = dipls_path(Xs, 7.0 * yc, Xs, Xt, "heuristic", 4)
    scaled_x, _ = dipls_path(3.0 * Xs, yc, 3.0 * Xs, 3.0 * Xt, "heuristic", 4)
    tol = 1e-9 * np.abs(coefs).max()
    np.testing.assert_allclose(scaled_y, 7.0 * coefs, rtol=0, atol=7.0 * tol)
    np.testing.assert_allclose(scaled_x, coefs / 3.0, rtol=0, atol=tol / 3.0)


def test_stops_when_the_labelled_data_run_out_of_rank():
    rng = np.random.default_rng(7)
    Xs, ys, Xt, _ = _domains(rng)
    rank_one = np.outer(ys - ys.mean(), WAVELENGTHS)
    coefs, gammas = dipls_path(rank_one, ys - ys.mean(), Xs - Xs.mean(0), Xt - Xt.mean(0), 1.0, 5)
    assert coefs.shape == (1, 60) and gammas.shape == (1,)
    coefs, gammas = dipls_path(Xs, np.zeros(len(Xs)), Xs, Xt, 1.0, 5)
    assert not np.any(coefs) and len(gammas) == 1
    with pytest.raises(ValueError, match="at least two"):
        dipls_path(Xs, ys, Xs[:1], Xt, 1.0, 2)


def test_requirements_and_bad_input():
    rng = np.random.default_rng(5)
    Xs, ys, Xt, yt = _domains(rng)
    with pytest.raises(ValueError, match="X_target_unlabelled"):
        UnsupervisedDIPLS().fit(Xs, ys)
    with pytest.raises(ValueError, match="y_transfer"):
        SemiSupervisedDIPLS().fit(Xs, ys, X_target_unlabelled=Xt, X_target_transfer=Xt[:5])
    with pytest.raises(ValueError, match="gamma"):
        UnsupervisedDIPLS(gamma=-1.0).fit(Xs, ys, X_target_unlabelled=Xt)
    assert SemiSupervisedDIPLS.requires == {
        "X_target_unlabelled",
        "X_target_transfer",
        "y_transfer",
    }


def test_corn_m5_to_mp6_semi_supervised(shared_data):
    m5, mp6, props = (
        np.loadtxt(shared_data / "corn" / name, delimiter=",", skiprows=1)
        for name in ("m5spec.csv", "mp6spec.csv", "propvals.csv")
    )
    y = props[:, 0]  # moisture
    perm = np.random.default_rng(0).permutation(80)
    pool, test = perm[:60], perm[60:]
    master = PLSRegressionCV().fit(m5[pool], y[pool])
    transfer = pool[:10]
    model = SemiSupervisedDIPLS(master).fit(
        m5[pool],
        y[pool],
        X_target_unlabelled=mp6[pool],
        X_target_transfer=mp6[transfer],
        y_transfer=y[transfer],
    )
    assert _r2(y[test], master.predict(mp6[test])) < 0
    assert _r2(y[test], model.predict(mp6[test])) > 0.6
