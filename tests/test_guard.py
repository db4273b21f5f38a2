"""The model rows' guard checks each row on what the user has and falls back to a classical
method: at k = 0 (no target labels) a row whose target-pool predictions drift from the master
population is replaced by the classical zero-shot choice (`auto_zero_shot`); at k > 0 a row
whose held-out error on the transfer samples exceeds that of semi-supervised di-PLS is replaced
by it."""

import numpy as np

from caltransfer_jax.methods import base
from caltransfer_jax.methods.auto import AutoZeroShot
from caltransfer_jax.methods.base import cross_validate_transfer
from caltransfer_jax.methods.classical.corrections import MeanRecentring
from caltransfer_jax.methods.classical.dipls import SemiSupervisedDIPLS
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

    # The reference: the classical zero-shot choice for these inputs.
    classical = AutoZeroShot(master).fit(X, y, **arrays)
    recentred = MeanRecentring(master).fit(X, y, **arrays).predict

    # A row that predicts as that choice does is kept (ties keep the row).
    sound = _Row(master)
    sound.predict = classical.predict
    report, fallback = guard.check(sound, X, y, arrays, fitted)
    assert not report["tripped"] and fallback is None
    assert report["w1"] <= report["w1_auto_zero_shot"] + 1e-12

    # Errors of 1 label SD per prediction (R² ≈ 0): level and spread stay within the older
    # thresholds (shift < 0.5 SD, spread < 2×), but the predictions are distributed further
    # from the master's out-of-sample ones than the classical choice's are.
    rng = np.random.default_rng(2)
    noisy = _Row(master)
    noisy.predict = lambda X_target: recentred(X_target) + rng.normal(0.0, 1.0, len(X_target))
    report, fallback = guard.check(noisy, X, y, arrays, fitted)
    assert report["shift"] < guard.MAX_SHIFT and report["spread"] < guard.MAX_SPREAD
    assert report["tripped"] and report["action"] == "auto_zero_shot"
    assert report["w1"] > report["w1_auto_zero_shot"]
    np.testing.assert_allclose(
        fallback.predict(pool + baseline), classical.predict(pool + baseline)
    )


def test_the_few_shot_guard_compares_held_out_errors_with_semi_supervised_dipls():
    X, y_raw = _spectra(80, 0)
    y = (y_raw - y_raw.mean()) / y_raw.std()
    pool, _ = _spectra(60, 1)
    transfer, y_t = _spectra(10, 3)
    y_t = (y_t - y_raw.mean()) / y_raw.std()  # on the master labels' scale
    arrays = {
        "X_target_unlabelled": pool + 0.02,
        "X_master_transfer": transfer,
        "X_target_transfer": transfer + 0.02,
        "y_transfer": y_t,
    }
    master = PLSRegressionCV(max_components=5, seed=0).fit(X, y)
    # The reference: semi-supervised di-PLS on the raw spectra, refitted without each of the
    # folds the row's seed draws.
    on_target = {k: arrays[k] for k in ("X_target_unlabelled", "X_target_transfer", "y_transfer")}
    _, residuals = cross_validate_transfer(
        lambda: SemiSupervisedDIPLS(master), X, y, on_target, np.empty((0, X.shape[1])), 0
    )
    reference = np.sqrt(np.mean(residuals**2))

    # A row that fits its transfer samples exactly (in-sample RMSE 0) but whose held-out
    # residuals exceed the reference's: replaced by semi-supervised di-PLS fitted on all k.
    overfit = _Row(master)
    overfit.predict = lambda X_target: y_t if X_target is arrays["X_target_transfer"] else None
    overfit.conformity_scores_ = np.full(len(y_t), 1.01 * reference)
    report, fallback = guard.check(overfit, X, y, arrays, master.predict(X))
    assert report["criterion"].startswith("held-out rmse")
    np.testing.assert_allclose(report["rmse_dipls_semisupervised"], reference)
    assert report["tripped"] and report["action"] == "semi-supervised di-PLS"
    expected = SemiSupervisedDIPLS(master).fit(X, y, **on_target)
    np.testing.assert_allclose(fallback.predict(pool), expected.predict(pool))
    # Its intervals are calibrated on the target: its own held-out residuals.
    overfit.fallback_ = fallback
    np.testing.assert_allclose(base.conformity_scores(overfit, master)[0], residuals)
    del overfit.fallback_

    # Held-out residuals no larger than the reference's: kept (ties keep the row).
    overfit.conformity_scores_ = residuals.copy()
    report, fallback = guard.check(overfit, X, y, arrays, master.predict(X))
    assert not report["tripped"] and report["action"] == "none" and fallback is None

    # Without held-out residuals the row is judged on the samples it fitted, and kept.
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
    assert report["tripped"] and report["action"] == "auto_zero_shot"
    # The fallback: the classical zero-shot choice on the overlap (the coarser target axis's
    # points inside the master's range), reading target spectra on their own axis.
    grid = np.sort(target_axis[(target_axis >= GRID.min()) & (target_axis <= GRID.max())])
    np.testing.assert_array_equal(fallback.grid, grid)
    on_grid = np.stack([np.interp(grid, GRID, row) for row in X])
    pool_on_grid = np.stack([np.interp(grid, target_axis[::-1], row[::-1]) for row in target_pool])
    expected = AutoZeroShot(PLSRegressionCV(seed=0).fit(on_grid, y)).fit(
        on_grid, y, X_target_unlabelled=pool_on_grid
    )
    np.testing.assert_allclose(fallback.predict(target_pool), expected.predict(pool_on_grid))
    # It is kept with a saved transfer (skops) and predicts the same after loading.
    skops.io.dump({"fallback": fallback}, tmp_path / "f.skops")
    untrusted = skops.io.get_untrusted_types(file=tmp_path / "f.skops")
    loaded = skops.io.load(tmp_path / "f.skops", trusted=untrusted)["fallback"]
    np.testing.assert_array_equal(loaded.predict(target_pool), fallback.predict(target_pool))
    # With k transfer samples the fallback is semi-supervised di-PLS on the same overlap.
    transfer, y_t = _spectra(10, 3)
    few_shot = {
        "X_target_unlabelled": target_pool,
        "X_target_transfer": np.stack([np.interp(target_axis, GRID, r) for r in transfer]) + 0.02,
        "y_transfer": rng.normal(0.0, 1.0, 10),
    }
    wild.conformity_scores_ = np.full(10, 5.0)
    report, fallback = guard.check(wild, X, y, few_shot, master.predict(X))
    assert report["tripped"] and report["action"] == "semi-supervised di-PLS"
    on_target = {
        k: v
        if k == "y_transfer"
        else np.stack([np.interp(grid, target_axis[::-1], r[::-1]) for r in v])
        for k, v in few_shot.items()
    }
    expected = SemiSupervisedDIPLS(PLSRegressionCV(seed=0).fit(on_grid, y)).fit(
        on_grid, y, **on_target
    )
    np.testing.assert_allclose(fallback.predict(target_pool), expected.predict(pool_on_grid))
    del wild.conformity_scores_
    # Axes that share too few points: the check only reports (here a shifted level).
    wild.target_wavenumber = np.arange(300.0, 420.0)
    wild.predict = lambda X_target: rng.normal(3.0, 1.0, len(X_target))
    report, fallback = guard.check(
        wild, X, y, {"X_target_unlabelled": target_pool}, master.predict(X)
    )
    assert report["tripped"] and report["action"] == "reported only" and fallback is None


def test_a_row_whose_master_has_a_fixed_number_of_components_is_still_checked():
    # Such a master holds no cross-validation residuals: the guard fits its own for the
    # label-free reference instead of failing.
    X, y = _spectra(80, 0)
    y = (y - y.mean()) / y.std()
    pool, _ = _spectra(60, 1)
    arrays = {"X_target_unlabelled": pool + 0.02}
    master = PLSRegressionCV(n_components=3).fit(X, y)
    assert master.cv_residuals_ is None
    row = _Row(master)
    row.predict = lambda X_target: np.full(len(X_target), 3.0)  # far off: must trip
    report, fallback = guard.check(row, X, y, arrays, master.predict(X))
    assert report["tripped"] and report["action"] == "auto_zero_shot"
    assert len(fallback.master_.cv_residuals_) == len(y)
