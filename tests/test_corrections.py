"""Zero-shot and label-based corrections, the recalibration methods and the method contract."""

import numpy as np
import pytest

from caltransfer_jax.methods.classical.corrections import (
    MeanRecentring,
    NoTransfer,
    SlopeBiasCorrection,
    StandardsOffset,
)
from caltransfer_jax.methods.classical.pls import PLSRegressionCV
from caltransfer_jax.methods.classical.recalibration import AugmentedPLS, TargetPLS


def _problem(seed=0, n=50, p=60):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, 3))
    X = scores @ rng.normal(size=(3, p)) + 0.01 * rng.normal(size=(n, p))
    y = scores[:, 0] + 0.01 * rng.normal(size=n)
    return X, y


def test_mean_recentring_removes_an_additive_instrument_offset():
    X, y = _problem()
    master = PLSRegressionCV(max_components=5).fit(X[:40], y[:40])
    # An offset along the regression vector moves every uncorrected prediction by exactly 3.
    offset = 3.0 * master.coef_ / (master.coef_ @ master.coef_) + np.linspace(0, 1, X.shape[1])
    offset -= (
        master.coef_
        * (np.linspace(0, 1, X.shape[1]) @ master.coef_)
        / (master.coef_ @ master.coef_)
    )
    target = X + offset
    method = MeanRecentring(master).fit(X[:40], y[:40], X_target_unlabelled=target[:40])
    np.testing.assert_allclose(method.predict(target[40:]), master.predict(X[40:]), atol=1e-9)
    uncorrected = NoTransfer(master).fit(X[:40], y[:40]).predict(target[40:])
    np.testing.assert_allclose(uncorrected - master.predict(X[40:]), 3.0, atol=1e-9)


def test_standards_offset_uses_standard_means_without_pairing():
    X, y = _problem()
    offset = 0.3
    standards = np.ones((3, X.shape[1]))
    method = StandardsOffset().fit(
        X, y, X_master_standards=standards, X_target_standards=np.ones((4, X.shape[1])) + offset
    )
    np.testing.assert_allclose(method.shift_, -offset)


def test_sbc_corrects_slope_and_bias_exactly_for_a_linear_distortion():
    X, y = _problem()
    master = PLSRegressionCV(max_components=5).fit(X, y)
    # A target whose predictions are an affine function of the master's.
    target = 1.3 * X + 0.0
    sbc = SlopeBiasCorrection(master).fit(
        X, y, X_target_transfer=target[:10], y_transfer=master.predict(X[:10])
    )
    np.testing.assert_allclose(sbc.predict(target[10:]), master.predict(X[10:]), atol=1e-6)


def test_target_and_augmented_pls_use_target_labels():
    X, y = _problem()
    target = X + 0.5
    t = TargetPLS().fit(X, y, X_target_transfer=target[:30], y_transfer=y[:30])
    a = AugmentedPLS().fit(X, y, X_target_transfer=target[:30], y_transfer=y[:30])
    for method in (t, a):
        assert np.sqrt(np.mean((method.predict(target[30:]) - y[30:]) ** 2)) < 0.2 * y.std()


def test_contract_rejects_missing_and_mismatched_inputs():
    X, y = _problem()
    with pytest.raises(ValueError, match="needs"):
        SlopeBiasCorrection().fit(X, y)
    with pytest.raises(ValueError, match="columns"):
        MeanRecentring().fit(X, y, X_target_unlabelled=X[:, :10])
    with pytest.raises(TypeError, match="unknown"):
        NoTransfer().fit(X, y, X_test=X)
    with pytest.raises(ValueError, match="one value per transfer sample"):
        TargetPLS().fit(X, y, X_target_transfer=X[:5], y_transfer=y[:4])
