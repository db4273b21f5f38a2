"""The learning-curve estimate of how many transfer samples a method needs."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor

from caltransfer_jax.methods.learning_curve import LearningCurve, estimate_learning_curve

NOISE_Y, NOISE_MASTER = 0.1, 1.0  # label noise; master-side noise of the transfer samples


class ShiftCorrection:
    """Removes the mean target − master difference of the transfer pairs, then applies the
    master calibration. With noise σ_m on the master transfer spectra and a unit regression
    vector, its error on new samples has MSE(m) = σ_y² + σ_m² / m exactly."""

    def __init__(self, master):
        self.master = master

    def fit(self, X, y, X_master_transfer, X_target_transfer, y_transfer):
        self.shift_ = (X_target_transfer - X_master_transfer).mean(axis=0)
        return self

    def predict(self, X_target):
        return self.master.predict(X_target - self.shift_)


class Uncorrected:
    """Applies the master calibration unchanged; fails if asked to predict a spectrum it was
    given for fitting (the master's calibration rows or the unlabelled target spectra)."""

    def __init__(self, master):
        self.master = master

    def fit(self, X, y, X_master_transfer, X_target_transfer, y_transfer, X_target_unlabelled):
        self.seen_ = {row.tobytes() for row in np.concatenate([X, X_target_unlabelled])}
        return self

    def predict(self, X_target):
        assert not any(row.tobytes() in self.seen_ for row in X_target), "held-out row was seen"
        return self.master.predict(X_target)


def _shift_problem(k=40, n=200, p=4, seed=0):
    rng = np.random.default_rng(seed)
    beta = rng.normal(size=p)
    beta /= np.linalg.norm(beta)
    X = rng.normal(size=(n, p))
    y = X @ beta + NOISE_Y * rng.normal(size=n)
    true = rng.normal(size=(k, p))
    transfer = {
        "X_master_transfer": true + NOISE_MASTER * rng.normal(size=(k, p)),
        "X_target_transfer": true + rng.normal(size=p),  # one additive instrument difference
        "y_transfer": true @ beta + NOISE_Y * rng.normal(size=k),
    }
    return X, y, transfer


def test_recovers_the_known_k_of_a_one_over_m_curve():
    # MSE(m) = 0.01 + 1 / m reaches 0.11 at m = 10. The k samples share one realisation of
    # their mean master noise, so even the exact design scatters: over seeds 0–19 the estimate
    # was within 1.5× of 10 for 19 and the 90 % range held 10 for 17 (k = 100, 10 repeats).
    X, y, transfer = _shift_problem(k=100)
    curve = estimate_learning_curve(ShiftCorrection, LinearRegression(), X, y, transfer, repeats=10)
    k, low, high = curve.k_for_tolerance(np.sqrt(NOISE_Y**2 + NOISE_MASTER**2 / 10))
    assert 10 / 1.5 <= k <= 10 * 1.5
    assert low <= k <= high and low <= 10 <= high
    true_rmse = np.sqrt(NOISE_Y**2 + NOISE_MASTER**2 / curve.sizes)
    np.testing.assert_allclose(curve.rmse, true_rmse, rtol=0.25)
    np.testing.assert_allclose(curve.predict(curve.sizes), true_rmse, rtol=0.25)
    assert curve.sizes.tolist() == [5, 9, 15, 26, 46, 80]
    assert np.all(curve.rmse_sd > 0) and curve.boot_params.shape == (200, 3)


def test_held_out_samples_are_left_out_of_the_master_and_the_unlabelled_spectra():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 3))
    y = X.sum(axis=1)
    # The transfer samples are calibration samples, measured identically on both instruments:
    # a one-nearest-neighbour master that kept them would predict them without error.
    transfer = {
        "X_master_transfer": X[:30],
        "X_target_transfer": X[:30].copy(),
        "y_transfer": y[:30],
        "X_target_unlabelled": X[:60].copy(),
    }
    master = KNeighborsRegressor(n_neighbors=1)
    curve = estimate_learning_curve(Uncorrected, master, X, y, transfer, repeats=1, n_boot=10)
    assert np.all(curve.rmse > 0.3)


def test_k_for_tolerance_inverts_the_curve_and_is_infinite_below_the_floor():
    params = np.array([[0.01, 1.0, 1.0], [0.01, 2.0, 1.0], [0.02, 1.0, 1.0]])
    curve = LearningCurve(np.array([5, 10, 20]), np.ones(3), np.ones(3), (0.01, 1.0, 1.0), params)
    k, low, high = curve.k_for_tolerance(np.sqrt(0.11), level=0.5)
    assert k == pytest.approx(10) and low == pytest.approx(10) and high == pytest.approx(20)
    assert curve.k_for_tolerance(0.05) == (np.inf, np.inf, np.inf)
    steeper = LearningCurve(curve.sizes, curve.rmse, curve.rmse_sd, (0.01, 1.0, 2.0), params)
    assert steeper.k_for_tolerance(np.sqrt(0.11))[0] == pytest.approx(np.sqrt(10))
    assert steeper.predict(np.sqrt(10)) == pytest.approx(np.sqrt(0.11))
    # A tolerance between the floors: finite for two fits, infinite for the third.
    _, low, high = curve.k_for_tolerance(np.sqrt(0.015), level=0.99)
    assert np.isfinite(low) and high == np.inf


@pytest.mark.parametrize(
    "change, message",
    [
        ({"k": 8}, "at least 3 distinct sizes"),
        ({"sizes": (5, 10, 40)}, "at least 3 distinct sizes"),
        ({"drop": "y_transfer"}, "X_target_transfer and y_transfer"),
        ({"short": "X_master_transfer"}, "must have k rows"),
        ({"folds": 1}, "folds"),
    ],
)
def test_bad_input_is_refused(change, message):
    X, y, transfer = _shift_problem(k=change.get("k", 40))
    transfer.pop(change.get("drop"), None)
    if "short" in change:
        transfer[change["short"]] = transfer[change["short"]][:-1]
    options = {key: change[key] for key in ("sizes", "folds") if key in change}
    with pytest.raises(ValueError, match=message):
        estimate_learning_curve(ShiftCorrection, LinearRegression(), X, y, transfer, **options)


@pytest.mark.parametrize("tolerance, level", [(0.0, 0.9), (-1.0, 0.9), (0.5, 1.0), (0.5, 0.0)])
def test_bad_tolerance_or_level_is_refused(tolerance, level):
    curve = LearningCurve(
        np.array([5, 10, 20]), np.ones(3), np.ones(3), (0.0, 1.0, 1.0), np.ones((2, 3))
    )
    with pytest.raises(ValueError, match="tolerance" if tolerance <= 0 else "level"):
        curve.k_for_tolerance(tolerance, level)


def test_a_saved_transfer_estimates_its_curve_in_property_units_and_refuses_zero_shot():
    from caltransfer_jax.transfer.estimator import CalibrationTransfer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 40)).cumsum(axis=1)
    y = X[:, 5] - X[:, 30]
    ids = rng.choice(60, 30, replace=False)
    gain = 1 + 0.1 * np.sin(np.arange(40) / 5)
    arrays = {
        "X_master_transfer": X[ids],
        "X_target_transfer": X[ids] * gain + 0.2,
        "y_transfer": y[ids],
        "X_target_unlabelled": X * gain + 0.2,
    }
    curves = []
    for scale in (1.0, 10.0):
        scaled = dict(arrays, y_transfer=arrays["y_transfer"] * scale)
        transfer = CalibrationTransfer(method="ds").fit(
            X, y * scale, wavenumber=np.linspace(4000, 9000, 40), **scaled
        )
        curves.append(transfer.learning_curve(X, y * scale, repeats=2, **scaled))
    # Labels ×10: the same curve ×10 (the method sees standardised labels either way).
    np.testing.assert_allclose(curves[1].rmse, 10 * curves[0].rmse, rtol=1e-6)
    np.testing.assert_allclose(curves[1].predict(12), 10 * curves[0].predict(12), rtol=1e-6)
    zero_shot = CalibrationTransfer(method="mean_recentring").fit(
        X,
        y,
        wavenumber=np.linspace(4000, 9000, 40),
        X_target_unlabelled=arrays["X_target_unlabelled"],
    )
    with pytest.raises(ValueError, match="classical few-shot method"):
        zero_shot.learning_curve(X, y, **arrays)


@pytest.mark.parametrize(
    ("tolerance", "answer"), [(1e-4, "is not reached at any k"), (10.0, "is reached at k ≈")]
)
def test_the_transfer_report_answers_how_many_samples_even_below_the_floor(tolerance, answer):
    import json

    from caltransfer_jax.data import dataset_file
    from caltransfer_jax.transfer import workflow
    from caltransfer_jax.transfer.estimator import CalibrationTransfer

    transfer = CalibrationTransfer(method="ds")
    provenance = workflow.fit_on_dataset(
        dataset_file.load("corn"), "m5", "mp6", "moisture", transfer, k=20, tolerance=tolerance
    )
    curve = provenance["learning_curve"]
    assert (curve["k"] is None) == (tolerance == 1e-4)  # ∞ is stored as None: strict JSON
    json.dumps(provenance, allow_nan=False)
    assert answer in workflow.report(transfer, provenance)


@pytest.mark.parametrize(
    ("k_range", "warned"), [((8.0, 20.0), False), ((5.0, 40.0), True), ((6.0, None), True)]
)
def test_the_report_calls_out_a_wide_range_of_k(k_range, warned):
    from caltransfer_jax.transfer import workflow

    curve = {
        "sizes": [5, 8, 12, 18, 24],
        "rmse": [1.2, 1.1, 1.0, 0.95, 0.9],
        "rmse_sd": [0.1] * 5,
        "mse_params": [0.7, 2.0, 1.0],
        "tolerance": 1.0,
        "k": 12.0,
        "k_range_90": list(k_range),
    }
    text = "\n".join(workflow._learning_curve_lines(curve, "%"))
    assert "is reached at k ≈ 12" in text
    assert ("read the range" in text) == warned
