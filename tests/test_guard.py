"""The model rows' guard falls back to mean re-centring on what the user has (no target labels at
k = 0): a row whose target-pool predictions drift from the master population is replaced."""

import numpy as np

from caltransfer_jax.methods.classical.corrections import MeanRecentring
from caltransfer_jax.methods.classical.pls import PLSRegressionCV
from caltransfer_jax.methods.model import guard

GRID = np.arange(120, dtype=float)


def _spectra(n, seed):
    rng = np.random.default_rng(seed)
    amps = rng.uniform(0.2, 1.0, size=(n, 3))
    bands = np.exp(-0.5 * ((GRID[None, :] - np.array([[30.0], [60.0], [90.0]])) / 8.0) ** 2)
    return amps @ bands + 0.1, amps[:, 0] - amps[:, 2]


class _Row:
    """A stand-in model row: what `guard.check` reads of one (its master and seed)."""

    def __init__(self, master):
        self.master, self.seed = master, 0


def test_the_guard_keeps_a_sound_row_and_replaces_a_drifting_one():
    X, y = _spectra(80, 0)
    y = (y - y.mean()) / y.std()
    pool, _ = _spectra(60, 1)
    baseline = 0.02  # an additive instrument difference: mean re-centring removes it exactly
    arrays = {"X_target_unlabelled": pool + baseline}
    master = PLSRegressionCV(max_components=5, seed=0).fit(X, y)
    fitted = master.predict(X)

    recentred = MeanRecentring(master).fit(X, y, **arrays).predict

    # A row that predicts as mean re-centring does is kept (ties keep the row).
    sound = _Row(master)
    sound.predict = recentred
    report, fallback = guard.check(sound, X, y, arrays, fitted)
    assert not report["tripped"] and fallback is None
    assert report["w1"] <= report["w1_mean_recentring"] + 1e-12

    # Errors of 1 label SD per prediction (R² ≈ 0): level and spread stay within the older
    # thresholds (shift < 0.5 SD, spread < 2×), but the predictions are distributed further
    # from the master's out-of-sample ones than mean re-centring's are.
    rng = np.random.default_rng(2)
    noisy = _Row(master)
    noisy.predict = lambda X_target: recentred(X_target) + rng.normal(0.0, 1.0, len(X_target))
    report, fallback = guard.check(noisy, X, y, arrays, fitted)
    assert report["shift"] < guard.MAX_SHIFT and report["spread"] < guard.MAX_SPREAD
    assert report["tripped"] and report["action"] == "mean re-centring"
    assert report["w1"] > report["w1_mean_recentring"]
    np.testing.assert_allclose(fallback.predict(pool + baseline), recentred(pool + baseline))


def test_the_few_shot_guard_judges_held_out_residuals_where_the_row_has_them():
    X, y = _spectra(80, 0)
    y = (y - y.mean()) / y.std()
    pool, _ = _spectra(60, 1)
    transfer, y_t = _spectra(10, 3)
    y_t = (y_t - y_t.mean()) / y_t.std()
    arrays = {
        "X_target_unlabelled": pool + 0.02,
        "X_master_transfer": transfer,
        "X_target_transfer": transfer + 0.02,
        "y_transfer": y_t,
    }
    master = PLSRegressionCV(max_components=5, seed=0).fit(X, y)
    recentred = MeanRecentring(master).fit(X, y, **arrays).predict(arrays["X_target_transfer"])
    baseline = np.sqrt(np.mean((recentred - y_t) ** 2))

    # A row that fits its transfer samples exactly (in-sample RMSE 0) but whose held-out
    # residuals are 3× those of mean re-centring: over-fitted, so replaced.
    overfit = _Row(master)
    overfit.predict = lambda X_target: y_t if X_target is arrays["X_target_transfer"] else None
    overfit.conformity_scores_ = np.full(len(y_t), 3.0 * baseline)
    report, fallback = guard.check(overfit, X, y, arrays, master.predict(X))
    assert report["criterion"].startswith("held-out rmse")
    np.testing.assert_allclose(report["rmse"], 3.0 * baseline)
    assert report["tripped"] and fallback is not None

    # Without held-out residuals the same row is judged on the samples it fitted, and kept.
    del overfit.conformity_scores_
    report, fallback = guard.check(overfit, X, y, arrays, master.predict(X))
    assert report["rmse"] == 0.0 and not report["tripped"] and fallback is None
