"""PLS1: agreement with scikit-learn, cross-validation and the choice of latent variables."""

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression

from caltransfer_jax.methods.classical.pls import (
    PLSRegressionCV,
    choose_components,
    cv_folds,
    cv_predictions,
    pls1_path,
)


def _data(n=40, p=120, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, 6))
    X = scores @ rng.normal(size=(6, p)) + 0.01 * rng.normal(size=(n, p)) + 3.0
    y = scores @ rng.normal(size=6) + 0.05 * rng.normal(size=n)
    return X, y


@pytest.mark.parametrize("n,p", [(40, 120), (120, 30)])
def test_path_matches_sklearn(n, p):
    X, y = _data(n, p)
    coefs, intercepts = pls1_path(X, y, 10)
    for a in (1, 4, 10):
        sk = PLSRegression(n_components=a, scale=False).fit(X, y)
        np.testing.assert_allclose(coefs[a - 1], sk.coef_.ravel(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(
            X @ coefs[a - 1] + intercepts[a - 1], sk.predict(X).ravel(), atol=1e-9
        )


def test_path_stops_at_rank():
    X, y = _data(10, 50)
    coefs, _ = pls1_path(X, y, 30)
    assert coefs.shape[0] <= 9  # centring removes one dimension


def test_cv_predictions_equal_explicit_refits():
    X, y = _data()
    pred = cv_predictions(X, y, 8, 5, seed=3)
    for train, test in cv_folds(len(y), 5, 3):
        coefs, intercepts = pls1_path(X[train], y[train], 8)
        np.testing.assert_allclose(pred[test], X[test] @ coefs.T + intercepts, atol=1e-9)


def test_onesigma_is_more_parsimonious_than_min():
    y = np.zeros(50)
    rng = np.random.default_rng(0)
    # RMSECV falls to a minimum at 6 LVs but 3 LVs are within noise of it.
    errors = np.array([1.0, 0.5, 0.201, 0.2005, 0.2002, 0.2, 0.21])
    pred = rng.normal(size=(50, 1)) * errors[None, :] / 1.0
    pred /= np.sqrt(np.mean(pred**2, axis=0)) / errors
    assert choose_components(pred, y, "min") == 6
    assert choose_components(pred, y, "onesigma") == 3


def test_regressor_recovers_a_linear_property():
    X, y = _data(seed=1)
    model = PLSRegressionCV(max_components=10).fit(X[:30], y[:30])
    residual = model.predict(X[30:]) - y[30:]
    assert np.sqrt(np.mean(residual**2)) < 0.2 * y.std()
    assert model.cv_residuals_.shape == (30,)
    assert 1 <= model.n_components_ <= 10
