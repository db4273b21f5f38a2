"""EMSC: recovery of a known distortion, identity on the reference, clear refusals; EMSC + di-PLS
against no correction on a simulated additive interferent."""

import numpy as np
import pytest
from sklearn.base import clone

from caltransfer_jax.methods.classical.corrections import NoTransfer
from caltransfer_jax.methods.classical.dipls import UnsupervisedDIPLS
from caltransfer_jax.methods.classical.emsc import EMSC, EMSCDIPLS
from caltransfer_jax.methods.classical.pls import PLSRegressionCV

P = 120
AXIS = np.linspace(0.0, 1.0, P)
NU = np.linspace(-1.0, 1.0, P)


def _bands(centres, width=0.05):
    return np.exp(-0.5 * ((AXIS[None, :] - np.asarray(centres)[:, None]) / width) ** 2)


REFERENCE = _bands([0.3, 0.6]).sum(axis=0) + 0.1
INTERFERENT = _bands([0.45])[0]


def _distorted(n, seed, noise=1e-6):
    """a · reference + quadratic baseline + c · interferent + noise, with the true terms."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.7, 1.5, n)
    c = rng.uniform(-0.5, 0.5, n)
    poly = rng.normal(size=(n, 3)) * [0.2, 0.1, 0.05]
    X = a[:, None] * REFERENCE + poly @ NU ** np.arange(3)[:, None] + c[:, None] * INTERFERENT
    return X + noise * rng.standard_normal((n, P)), a, poly, c


def test_emsc_recovers_a_known_distortion():
    X, a, poly, c = _distorted(20, 0)
    emsc = EMSC(reference=REFERENCE, poly_order=2, interferents=INTERFERENT[None, :]).fit(X)
    np.testing.assert_allclose(emsc.transform(X), np.tile(REFERENCE, (20, 1)), atol=2e-5)
    coef = emsc.coefficients(X)  # b, a_0, a_1, a_2, g
    np.testing.assert_allclose(coef[:, 0], a, atol=1e-5)
    np.testing.assert_allclose(coef[:, 1:4], poly, atol=1e-5)
    np.testing.assert_allclose(coef[:, 4], c, atol=1e-5)
    # Without the interferent term, its band stays in the corrected spectra.
    plain = EMSC(reference=REFERENCE).fit(X).transform(X)
    assert np.abs(plain - REFERENCE).max() > 0.05


def test_emsc_is_identity_on_the_reference():
    X, *_ = _distorted(15, 1, noise=1e-3)
    emsc = EMSC(reference=REFERENCE, interferents=INTERFERENT).fit(X)
    np.testing.assert_allclose(emsc.transform(REFERENCE[None, :])[0], REFERENCE, atol=1e-12)
    # Default reference: the mean of the fitting spectra, which then maps onto itself.
    emsc = EMSC(poly_order=3).fit(X)
    np.testing.assert_allclose(emsc.reference_, X.mean(axis=0))
    np.testing.assert_allclose(emsc.transform(X.mean(axis=0)[None, :])[0], X.mean(axis=0))
    coef = emsc.coefficients(X.mean(axis=0)[None, :])  # b = 1, nothing else
    np.testing.assert_allclose(coef, [[1, 0, 0, 0, 0]], atol=1e-12)
    assert clone(emsc).get_params() == emsc.get_params()


def test_emsc_refuses_bad_input():
    X, *_ = _distorted(5, 2)
    emsc = EMSC(reference=REFERENCE, interferents=INTERFERENT).fit(X)
    bad = X.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="non-finite.*row 3"):
        emsc.transform(bad)
    with pytest.raises(ValueError, match="non-finite"):
        EMSC().fit(bad)
    with pytest.raises(ValueError, match=f"{P - 1} columns.*fitted on {P}"):
        emsc.transform(X[:, 1:])
    with pytest.raises(ValueError, match="reference must have shape"):
        EMSC(reference=REFERENCE[1:]).fit(X)
    with pytest.raises(ValueError, match="interferents must have shape"):
        EMSC(interferents=INTERFERENT[1:]).fit(X)
    with pytest.raises(ValueError, match="poly_order"):
        EMSC(poly_order=-1).fit(X)
    flipped = X.copy()
    flipped[1] = -flipped[1]
    with pytest.raises(ValueError, match="row 1 has multiplicative coefficient b = -"):
        emsc.transform(flipped)
    # An interferent within the span of the reference and the baseline cannot be separated.
    collinear = 2.0 * REFERENCE + NU
    with pytest.raises(ValueError, match="rank deficient"):
        EMSC(reference=REFERENCE, interferents=collinear).fit(X)


def _domains(seed, n_master=60, n_target=60):
    """Mixtures on a common matrix; the target adds an unseen band, scatter and a tilt."""
    rng = np.random.default_rng(seed)
    pure = _bands([0.25, 0.5, 0.7], width=0.06)
    matrix = _bands([0.15, 0.35, 0.6, 0.85], width=0.08).sum(axis=0) + 0.2
    conc_m = rng.uniform(0, 1, (n_master, 3))
    conc_t = rng.uniform(0, 1, (n_target, 3))
    Xm = matrix + 0.3 * conc_m @ pure + 1e-3 * rng.standard_normal((n_master, P))
    Xt = matrix + 0.3 * conc_t @ pure + 1e-3 * rng.standard_normal((n_target, P))
    Xt = Xt + rng.uniform(0.1, 0.3, (n_target, 1)) * _bands([0.42])
    Xt = Xt * rng.uniform(0.9, 1.1, (n_target, 1)) + 0.05 * NU
    return Xm, conc_m[:, 0], Xt, conc_t[:, 0]


def _rmse(pred, y):
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def test_emsc_dipls_beats_no_correction_on_an_additive_interferent():
    Xm, ym, Xt, yt = _domains(0)
    master = PLSRegressionCV(max_components=8).fit(Xm, ym)
    unlabelled, test, y_test = Xt[:30], Xt[30:], yt[30:]
    method = EMSCDIPLS(master).fit(Xm, ym, X_target_unlabelled=unlabelled)
    pred = method.predict(test)
    assert pred.shape == y_test.shape and np.all(np.isfinite(pred))
    assert method.emsc_.interferents is not None
    none = _rmse(NoTransfer(master).fit(Xm, ym).predict(test), y_test)
    dipls = _rmse(
        UnsupervisedDIPLS(master).fit(Xm, ym, X_target_unlabelled=unlabelled).predict(test), y_test
    )
    emsc = _rmse(pred, y_test)
    assert emsc < 0.3 * none
    assert emsc < dipls
    # An unfitted master template is fitted on the corrected spectra.
    pred = EMSCDIPLS().fit(Xm, ym, X_target_unlabelled=unlabelled).predict(test)
    assert _rmse(pred, y_test) < 0.3 * none


def test_emsc_dipls_contract():
    Xm, ym, Xt, _ = _domains(1, n_master=30, n_target=20)
    assert EMSCDIPLS.requires == frozenset({"X_target_unlabelled"})
    with pytest.raises(ValueError, match="X_target_unlabelled"):
        EMSCDIPLS().fit(Xm, ym)
    with pytest.raises(ValueError, match="columns"):
        EMSCDIPLS().fit(Xm, ym, X_target_unlabelled=Xt[:, 1:])
    # Target pool = master pool: no shift, so no interferent term.
    method = EMSCDIPLS(PLSRegressionCV(n_components=3)).fit(Xm, ym, X_target_unlabelled=Xm)
    assert method.emsc_.interferents is None
    assert np.all(np.isfinite(method.predict(Xt)))
