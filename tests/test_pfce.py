"""Tests of PFCE: the small-space solver against a generic SLSQP solve in each regime, the
constraints, exact invariances, the three forms, and a real-data check on corn m5 → mp6."""

import numpy as np
import pytest
from scipy.optimize import minimize

from caltransfer_jax.methods.classical.pfce import FSPFCE, NSPFCE, SSPFCE, pfce_fit
from caltransfer_jax.methods.classical.pls import PLSRegressionCV

RHO = 0.98


def _corr(a, b):
    return np.corrcoef(a, b)[0, 1]


def _problem(seed, noise, k=5, p=30):
    """Random smooth spectra, a master vector, and targets from a perturbed master vector."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((k, p)).cumsum(axis=1)
    b_master = rng.standard_normal(p).cumsum() + 0.3
    z = X @ (1.3 * b_master + noise * rng.standard_normal(p)) + 2.0
    return X, z, b_master


def _slsqp(X, z, b_master, exact):
    """The published problem by a generic solver, from b_master: the nearest exact fit within
    the correlation constraint, or the least-squares fit subject to it."""
    design = np.hstack([np.ones((len(X), 1)), X])
    corr = {"type": "ineq", "fun": lambda v: _corr(v[1:], b_master) - RHO}
    start = np.r_[0.0, b_master]
    if exact:
        fit = {"type": "eq", "fun": lambda v: design @ v - z, "jac": lambda v: design}
        objective, constraints = (lambda v: np.sum((v - start)[1:] ** 2)), [fit, corr]
        gradient = lambda v: np.r_[0.0, 2 * (v - start)[1:]]  # noqa: E731
    else:
        objective, constraints = (lambda v: np.sum((design @ v - z) ** 2)), [corr]
        gradient = lambda v: 2 * design.T @ (design @ v - z)  # noqa: E731
    result = minimize(
        objective,
        start,
        jac=gradient,
        method="SLSQP",
        constraints=constraints,
        options={"maxiter": 3000, "ftol": 1e-16},
    )
    return result.x[1:], result.x[0]


@pytest.mark.parametrize(
    "seed, noise, k, regime",
    [(5, 0.02, 5, "inside"), (8, 3.0, 5, "boundary"), (7, 3.0, 12, "active")],
)
def test_matches_slsqp_and_satisfies_constraints(seed, noise, k, regime):
    """inside: the nearest exact fit meets the constraint; boundary: exact fits do, but the
    nearest is moved onto the cone; active: no exact fit does."""
    X, z, b_master = _problem(seed, noise, k=k)
    coef, intercept = pfce_fit(X, z, b_master, RHO)
    residual = z - intercept - X @ coef
    corr = _corr(coef, b_master)
    if regime == "inside":
        assert corr > RHO + 1e-3
    else:
        assert abs(corr - RHO) < 1e-10
    exact = regime != "active"
    if exact:
        assert np.max(np.abs(residual)) < 1e-9 * np.max(np.abs(z))
    else:
        assert np.max(np.abs(residual)) > 1e-3 * np.max(np.abs(z))
    expected, _ = _slsqp(X, z, b_master, exact)
    assert np.linalg.norm(coef - expected) < 1e-5 * np.linalg.norm(expected)


def test_nearest_fit_on_the_far_side_of_the_pole():
    """Targets that pull against b_m: the projection's multiplier lies beyond the pole of
    (I + λQ)⁻¹, where the root below it is the anti-correlated half of the cone."""
    X, z, b_master = _problem(15, 0.5, k=3)
    coef, intercept = pfce_fit(X, -z, b_master, RHO)
    assert np.max(np.abs(-z - intercept - X @ coef)) < 1e-9 * np.max(np.abs(z))
    assert abs(_corr(coef, b_master) - RHO) < 1e-10
    expected, _ = _slsqp(X, -z, b_master, exact=True)
    assert np.linalg.norm(coef - expected) < 1e-5 * np.linalg.norm(expected)


def test_identical_instruments_keep_the_master_model():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 40)).cumsum(axis=1)
    y = X @ rng.standard_normal(40) / 40
    master = PLSRegressionCV(max_components=6).fit(X, y)
    same = NSPFCE(master).fit(X, y, X_master_transfer=X[:8], X_target_transfer=X[:8])
    np.testing.assert_allclose(same.coef_, master.coef_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(same.intercept_, master.intercept_, rtol=0, atol=1e-10)
    # An offset spectrum common to all samples only moves the intercept.
    offset = np.linspace(0.1, 0.3, 40)
    moved = NSPFCE(master).fit(X, y, X_master_transfer=X[:8], X_target_transfer=X[:8] + offset)
    np.testing.assert_allclose(moved.coef_, master.coef_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(moved.predict(X[8:] + offset), master.predict(X[8:]), atol=1e-9)


def test_three_forms_reproduce_their_references():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 40)).cumsum(axis=1)
    y = X @ rng.standard_normal(40) / 40 + 0.01 * rng.standard_normal(60)
    target = 0.9 * X + 0.05
    master = PLSRegressionCV(max_components=6).fit(X, y)
    pairs = slice(0, 4)
    transfer = dict(
        X_master_transfer=X[pairs], X_target_transfer=target[pairs], y_transfer=y[pairs]
    )
    predicted = master.predict(X[pairs])
    for cls, reference in (
        (NSPFCE, predicted),
        (SSPFCE, y[pairs]),
        (FSPFCE, 0.5 * (predicted + y[pairs])),
    ):
        model = cls(master).fit(X, y, **transfer)
        expected, _ = pfce_fit(target[pairs], reference, master.coef_)
        np.testing.assert_array_equal(model.coef_, expected)
        np.testing.assert_allclose(model.predict(target[pairs]), reference, atol=1e-9)
    assert SSPFCE.requires == {"X_target_transfer", "y_transfer"}
    with pytest.raises(ValueError, match="y_transfer"):
        FSPFCE(master).fit(X, y, X_master_transfer=X[pairs], X_target_transfer=target[pairs])


def test_unconstrained_nearest_fit_is_the_minimum_norm_correction():
    """When the nearest exact fit already meets the constraint it is b_m plus the minimum-norm
    correction of the centred equations, here with k = 2 (a single centred equation)."""
    X, z, b_master = _problem(9, 1.0, k=2)
    coef, intercept = pfce_fit(X, z, b_master)
    A, d = X - X.mean(axis=0), z - z.mean()
    expected = b_master + np.linalg.pinv(A) @ (d - A @ b_master)
    assert _corr(expected, b_master) > RHO
    np.testing.assert_allclose(coef, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    np.testing.assert_allclose(z, intercept + X @ coef, rtol=1e-10)
    with pytest.raises(ValueError, match="non-constant"):
        pfce_fit(X, z, np.ones_like(b_master))


def test_anticorrelated_transfer_data_degenerate_with_a_warning():
    X, z, b_master = _problem(7, 0.0, k=12)
    with pytest.warns(RuntimeWarning, match="pull against the master"):
        coef, intercept = pfce_fit(X, -z, b_master)
    np.testing.assert_allclose(coef, coef.mean(), rtol=1e-12)  # the cone's apex: constant b
    # No ε·b_m + α·1 with ε > 0 fits better than the apex.
    design = np.column_stack([np.ones(len(X)), X.sum(axis=1), X @ b_master])
    apex = np.sum((-z - intercept - X @ coef) ** 2)
    for eps in (1e-3, 1e-1, 1.0):
        lsq, *_ = np.linalg.lstsq(design[:, :2], -z - eps * design[:, 2], rcond=None)
        assert np.sum((-z - eps * design[:, 2] - design[:, :2] @ lsq) ** 2) > apex
    with pytest.raises(ValueError, match="threshold"):
        pfce_fit(X, z, b_master, threshold=1.0)


def test_corn_m5_to_mp6(shared_data):
    m5, mp6, props = (
        np.loadtxt(shared_data / "corn" / name, delimiter=",", skiprows=1)
        for name in ("m5spec.csv", "mp6spec.csv", "propvals.csv")
    )
    y = props[:, 0]  # moisture
    perm = np.random.default_rng(0).permutation(80)
    pool, test = perm[:60], perm[60:]
    master = PLSRegressionCV().fit(m5[pool], y[pool])
    transfer = pool[:30]
    model = SSPFCE(master).fit(
        m5[pool], y[pool], X_target_transfer=mp6[transfer], y_transfer=y[transfer]
    )
    assert _corr(model.coef_, master.coef_) >= RHO - 1e-12
    r2 = 1.0 - np.sum((y[test] - model.predict(mp6[test])) ** 2) / np.sum(
        (y[test] - y[test].mean()) ** 2
    )
    assert r2 > 0.5
