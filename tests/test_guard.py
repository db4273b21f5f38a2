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


def test_the_guard_falls_back_on_the_overlap_where_the_instruments_have_their_own_axes(tmp_path):
    import skops.io

    X, y = _spectra(80, 0)
    y = (y - y.mean()) / y.std()
    pool, _ = _spectra(60, 1)
    # The target reads 10…129 on a coarser, shifted axis (descending, as cm⁻¹ files often are).
    target_axis = np.arange(129.0, 9.0, -1.5)
    target_pool = np.stack([np.interp(target_axis, GRID, row) for row in pool]) + 0.02
    arrays = {"X_target_unlabelled": target_pool}
    master = PLSRegressionCV(max_components=5, seed=0).fit(X, y)
    rng = np.random.default_rng(2)
    wild = _Row(master)  # predictions unrelated to the samples: R² ≈ −1
    wild.wavenumber, wild.target_wavenumber = GRID, target_axis
    wild.predict = lambda X_target: rng.normal(0.0, 1.0, len(X_target))
    report, fallback = guard.check(wild, X, y, arrays, master.predict(X))
    assert report["tripped"] and report["action"] == "mean re-centring"
    # The fallback: mean re-centring on the overlap (the coarser target axis's points inside
    # the master's range), reading target spectra on their own axis.
    grid = np.sort(target_axis[(target_axis >= GRID.min()) & (target_axis <= GRID.max())])
    np.testing.assert_array_equal(fallback.grid, grid)
    on_grid = np.stack([np.interp(grid, GRID, row) for row in X])
    pool_on_grid = np.stack([np.interp(grid, target_axis[::-1], row[::-1]) for row in target_pool])
    expected = MeanRecentring(PLSRegressionCV(seed=0).fit(on_grid, y)).fit(
        on_grid, y, X_target_unlabelled=pool_on_grid
    )
    np.testing.assert_allclose(fallback.predict(target_pool), expected.predict(pool_on_grid))
    # It is kept with a saved transfer (skops) and predicts the same after loading.
    skops.io.dump({"fallback": fallback}, tmp_path / "f.skops")
    untrusted = skops.io.get_untrusted_types(file=tmp_path / "f.skops")
    loaded = skops.io.load(tmp_path / "f.skops", trusted=untrusted)["fallback"]
    np.testing.assert_array_equal(loaded.predict(target_pool), fallback.predict(target_pool))
    # Axes that share too few points: the check only reports (here a shifted level).
    wild.target_wavenumber = np.arange(300.0, 420.0)
    wild.predict = lambda X_target: rng.normal(3.0, 1.0, len(X_target))
    report, fallback = guard.check(
        wild, X, y, {"X_target_unlabelled": target_pool}, master.predict(X)
    )
    assert report["tripped"] and report["action"] == "reported only" and fallback is None
