"""The safety net of the model rows: never catastrophically worse than mean re-centring.

A pretrained representation can fail on instruments unlike anything it saw (on held-out data,
model rows fell to R² −800 where mean re-centring held). Every model method therefore checks
itself after fitting, on what the user has, and falls back to mean re-centring of the raw
spectra (the master PLS on target spectra moved to the master mean) when the check fails:

- zero-shot (no labels on the target): the unlabelled target pool holds the same population as
  the master calibration, so its predictions must agree with the master labels in level and
  spread. Tripped when the mean prediction is off by more than `MAX_SHIFT` label SDs, or the
  spread of the predictions differs from that of the master's fitted values by more than a
  factor `MAX_SPREAD`; and, where mean re-centring can run, when the row's predictions on the
  pool are further (Wasserstein-1) from the master calibration's cross-validated predictions
  than mean re-centring's are — the label-free criterion of `auto_zero_shot`
  (`methods/auto.py` says why), with no margin to choose: the row is kept only where that
  criterion prefers it to its fallback.
- few-shot (k labelled transfer samples): tripped when the method's RMSE on the transfer samples
  exceeds `MAX_RMSE_RATIO` × that of mean re-centring on the same samples (which it never fits
  on). The method's held-out residuals are used where it has them (`conformity_scores_`: the
  cross-validation over the pairs of `model_lora` and of the semi-supervised di-PLS head), else
  its residuals on the samples it was fitted on (optimistic).

The thresholds are fixed a priori (no data set was used to choose them). Where the two
instruments have different axes, mean re-centring runs on their overlap (both resampled onto the
coarser axis's points there, as the classical methods read such pairs; `OnOverlap`); where they
share too few points the check only reports.
"""

from __future__ import annotations

import numpy as np

from caltransfer_jax.data import grids, spectra
from caltransfer_jax.methods.auto import distance_to_master, master_cv_predictions
from caltransfer_jax.methods.classical.corrections import MeanRecentring
from caltransfer_jax.methods.classical.pls import PLSRegressionCV

MAX_SHIFT = 0.5
MAX_SPREAD = 2.0
MAX_RMSE_RATIO = 1.5


def check(method, X, y, arrays, master_fitted: np.ndarray) -> tuple[dict, object | None]:
    """(report, fallback or None) for a fitted model method.

    Args:
        method: the fitted model method (its `predict` reads target spectra).
        X, y: the master calibration spectra and standardised labels it was fitted on.
        arrays: its transfer arrays (`X_target_unlabelled`, optionally the k transfer samples).
        master_fitted: its head's predictions for the master calibration spectra.
    """
    target_axis = getattr(method, "target_wavenumber", None)
    same_axis = arrays["X_target_unlabelled"].shape[1] == X.shape[1] and (
        target_axis is None or spectra.same_axis(method.wavenumber, target_axis)
    )
    grid = None if same_axis else _overlap(method)
    recentring = None

    def recentred():
        nonlocal recentring
        if recentring is None and same_axis:
            master = getattr(method, "master", None)
            if master is None or getattr(master, "coef_", np.empty(0)).shape != (X.shape[1],):
                master = PLSRegressionCV(seed=getattr(method, "seed", 0)).fit(X, y)
            recentring = MeanRecentring(master).fit(
                X, y, X_target_unlabelled=arrays["X_target_unlabelled"]
            )
        elif recentring is None and grid is not None:  # both read on their overlap
            on_grid = spectra.interpolate_rows(X, method.wavenumber, grid)
            pool = spectra.interpolate_rows(
                arrays["X_target_unlabelled"], method.target_wavenumber, grid
            )
            master = PLSRegressionCV(seed=getattr(method, "seed", 0)).fit(on_grid, y)
            inner = MeanRecentring(master).fit(on_grid, y, X_target_unlabelled=pool)
            recentring = OnOverlap(inner, method.target_wavenumber, grid)
        return recentring

    if "y_transfer" in arrays and len(arrays["y_transfer"]) >= 2:
        y_t = arrays["y_transfer"]
        held_out = getattr(method, "conformity_scores_", None)
        if held_out is not None:
            own, basis = _rmse(held_out, 0.0), "held-out rmse"
        else:
            own, basis = _rmse(method.predict(arrays["X_target_transfer"]), y_t), "rmse"
        report = {"criterion": f"{basis} on the transfer samples vs mean re-centring", "rmse": own}
        tripped = False
        if recentred() is not None:
            baseline = _rmse(recentring.predict(arrays["X_target_transfer"]), y_t)
            report["rmse_mean_recentring"] = baseline
            tripped = own > MAX_RMSE_RATIO * baseline
    else:
        pool = method.predict(arrays["X_target_unlabelled"])
        shift = abs(float(pool.mean() - y.mean())) / float(y.std())
        spread = float(pool.std()) / max(float(np.std(master_fitted)), 1e-12)
        report = {"criterion": "label-free: target pool predictions", "shift": shift}
        report["spread"] = spread
        tripped = shift > MAX_SHIFT or not 1 / MAX_SPREAD <= spread <= MAX_SPREAD
        reference = None if recentred() is None else master_cv_predictions(recentring.master_, y)
        if reference is not None:
            own = distance_to_master(pool, reference)
            baseline = distance_to_master(
                recentring.predict(arrays["X_target_unlabelled"]), reference
            )
            report["w1"], report["w1_mean_recentring"] = own, baseline
            tripped = tripped or own > baseline
    fallback = recentred() if tripped else None
    report["tripped"] = bool(tripped)
    report["action"] = (
        "none" if not tripped else "mean re-centring" if fallback is not None else "reported only"
    )
    return report, fallback


class OnOverlap:
    """A fallback fitted on the two instruments' overlap, reading target spectra on their own
    axis (resampled onto the overlap, as the classical methods read them).

    Args:
        method: the fitted fallback (mean re-centring on the overlap).
        wavenumber: the target spectra's own axis; grid: the overlap's points.
    """

    def __init__(self, method: MeanRecentring, wavenumber: np.ndarray, grid: np.ndarray):
        self.method, self.wavenumber, self.grid = method, wavenumber, grid

    @property
    def master_(self):
        return self.method.master_

    def predict(self, X_target) -> np.ndarray:
        return self.method.predict(spectra.interpolate_rows(X_target, self.wavenumber, self.grid))


def _overlap(method) -> np.ndarray | None:
    """The points where mean re-centring can compare a row's master and target spectra when
    they lie on different axes: the coarser axis inside both ranges (`grids.overlap_points`);
    None where the row does not name both axes or they share too few points."""
    master, target = getattr(method, "wavenumber", None), getattr(method, "target_wavenumber", None)
    if master is None or target is None:
        return None
    grid, _ = grids.overlap_points({"master": np.asarray(master), "target": np.asarray(target)})
    return grid if grid is not None and grid.size >= grids.MIN_COMMON_POINTS else None


def _rmse(predicted: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(y)) ** 2)))
