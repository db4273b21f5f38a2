"""The safety net of the model rows: never far worse than the classical methods.

A pretrained representation can fail on instruments unlike anything it saw (on held-out data,
model rows fell to R² −800 where mean re-centring held). Every model method therefore checks
itself after fitting, on what the user has, and falls back to the classical method that the
project chooses for the same inputs when the check fails — `auto_zero_shot` without target
labels, semi-supervised di-PLS with them — on the raw spectra:

- zero-shot (no labels on the target): the unlabelled target pool holds the same population as
  the master calibration, so its predictions must agree with the master labels in level and
  spread. Tripped when the mean prediction is off by more than `MAX_SHIFT` label SDs, or the
  spread of the predictions differs from that of the master's fitted values by more than a
  factor `MAX_SPREAD`; and when the row's predictions on the pool are further (Wasserstein-1)
  from the master calibration's cross-validated predictions than those of `auto_zero_shot`
  (mean re-centring, di-PLS or EMSC + di-PLS, whichever is closest by that same criterion;
  `methods/auto.py` says why), with no margin to choose: the row is kept only where the
  label-free criterion prefers it to every classical zero-shot candidate — it is one more
  candidate of `auto_zero_shot`. (Mean re-centring alone, the reference before, is far below
  EMSC + di-PLS on corn moisture and on the simulated pair of BENCHMARKS.md §4.5.)
- few-shot (k labelled transfer samples): the reference is the classical few-shot method the
  model rows must not fall far below — semi-supervised di-PLS on the raw spectra, the same head
  as `model_dipls_semisupervised` without the model, refitted without each fold of the k
  samples (`methods.base.cross_validate_transfer` with the row's seed: the same folds as
  `model_dipls_semisupervised`'s; `model_lora` draws its own, and its held-out residuals are
  those of the step they chose, so slightly optimistic). Tripped when the
  row's held-out RMSE on the transfer samples exceeds the reference's, with no margin, as at
  k = 0; the fallback is then that method fitted on all k. The row's held-out residuals are
  its `conformity_scores_` (the cross-validation over the pairs of `model_lora` and of the
  semi-supervised di-PLS head); a row without them is judged on the samples it was fitted on
  (optimistic). Mean re-centring, the reference before, is far below the classical few-shot
  rows at k ≥ 10 (on the simulated pair of BENCHMARKS.md §4.5 a row it let through stayed
  0.1–0.6 R² below them).

The thresholds are fixed a priori (no data set was used to choose them). Where the two
instruments have different axes, the fallbacks run on their overlap (both resampled onto the
coarser axis's points there, as the classical methods read such pairs; `OnOverlap`); where they
share too few points the check only reports.
"""

from __future__ import annotations

import numpy as np

from caltransfer_jax.data import grids, spectra
from caltransfer_jax.methods.auto import AutoZeroShot, distance_to_master, master_cv_predictions
from caltransfer_jax.methods.base import cross_validate_transfer
from caltransfer_jax.methods.classical.dipls import SemiSupervisedDIPLS
from caltransfer_jax.methods.classical.pls import PLSRegressionCV

MAX_SHIFT = 0.5
MAX_SPREAD = 2.0


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
    raw = _RawSpectra(method, X, y, same_axis)
    if "y_transfer" in arrays and len(arrays["y_transfer"]) >= 2:
        report, tripped, fallback = _few_shot(method, arrays, raw)
        action = "semi-supervised di-PLS"
    else:
        report, tripped, fallback = _zero_shot(method, y, arrays, master_fitted, raw)
        action = "auto_zero_shot"
    report["tripped"] = bool(tripped)
    report["action"] = "none" if not tripped else "reported only" if fallback is None else action
    return report, fallback


def _zero_shot(method, y, arrays, master_fitted, raw):
    """(report, tripped, fallback) from the target pool's predictions (no labels)."""
    pool = method.predict(arrays["X_target_unlabelled"])
    shift = abs(float(pool.mean() - y.mean())) / float(y.std())
    spread = float(pool.std()) / max(float(np.std(master_fitted)), 1e-12)
    report = {"criterion": "label-free: target pool predictions", "shift": shift}
    report["spread"] = spread
    tripped = shift > MAX_SHIFT or not 1 / MAX_SPREAD <= spread <= MAX_SPREAD
    classical = raw.fit(AutoZeroShot, {"X_target_unlabelled": arrays["X_target_unlabelled"]})
    if classical is not None:
        reference = master_cv_predictions(classical.master_, y)
        own = distance_to_master(pool, reference)
        baseline = distance_to_master(classical.predict(arrays["X_target_unlabelled"]), reference)
        report["w1"], report["w1_auto_zero_shot"] = own, baseline
        tripped = tripped or own > baseline
    return report, tripped, classical if tripped else None


def _few_shot(method, arrays, raw):
    """(report, tripped, fallback) from held-out errors on the k transfer samples."""
    y_t = arrays["y_transfer"]
    held_out = getattr(method, "conformity_scores_", None)
    if held_out is not None:
        own, basis = _rmse(held_out, 0.0), "held-out rmse"
    else:
        own, basis = _rmse(method.predict(arrays["X_target_transfer"]), y_t), "rmse"
    report = {
        "criterion": f"{basis} on the transfer samples vs semi-supervised di-PLS (held out)",
        "rmse": own,
    }
    keys = ("X_target_unlabelled", "X_target_transfer", "y_transfer")
    reference = raw.cross_validate(SemiSupervisedDIPLS, {key: arrays[key] for key in keys})
    if reference is None:
        return report, False, None
    report["rmse_dipls_semisupervised"], fitted = reference
    tripped = own > report["rmse_dipls_semisupervised"]
    return report, tripped, fitted if tripped else None


class _RawSpectra:
    """Classical fallbacks on the raw spectra a model row read: on their one axis, or on the
    overlap of the two axes (`_overlap`) where they differ, reading target spectra on their own
    axis (`OnOverlap`); nothing where the axes share too few points."""

    def __init__(self, method, X, y, same_axis: bool):
        self.method, self.y, self.same_axis = method, y, same_axis
        self.seed = getattr(method, "seed", 0)
        self.grid = None if same_axis else _overlap(method)
        self.usable = same_axis or self.grid is not None
        self.X = X if not self.usable or same_axis else self._on_grid(X, method.wavenumber)
        self._master = None

    def _on_grid(self, values, axis):
        return spectra.interpolate_rows(values, axis, self.grid)

    def _target_side(self, arrays: dict) -> dict:
        if self.same_axis:
            return arrays
        axis = self.method.target_wavenumber
        return {k: v if k == "y_transfer" else self._on_grid(v, axis) for k, v in arrays.items()}

    def master(self) -> PLSRegressionCV:
        """The master PLS on these spectra (the row's own where it was fitted on them, with the
        cross-validation residuals `auto_zero_shot` reads)."""
        if self._master is None:
            own = getattr(self.method, "master", None)
            fitted_here = getattr(own, "coef_", np.empty(0)).shape == (self.X.shape[1],)
            residuals = getattr(own, "cv_residuals_", None)  # None: a fixed number of LVs
            usable = residuals is not None and len(residuals) == len(self.y)
            if self.same_axis and fitted_here and usable:
                self._master = own
            else:
                self._master = PLSRegressionCV(seed=self.seed).fit(self.X, self.y)
        return self._master

    def _wrap(self, fitted):
        if self.same_axis:
            return fitted
        return OnOverlap(fitted, self.method.target_wavenumber, self.grid)

    def fit(self, method_class, arrays: dict):
        """`method_class(master)` fitted on the master calibration and `arrays`, or None."""
        if not self.usable:
            return None
        fitted = method_class(self.master()).fit(self.X, self.y, **self._target_side(arrays))
        return self._wrap(fitted)

    def cross_validate(self, method_class, arrays: dict):
        """(held-out RMSE over the k transfer samples — refitted without each fold, the row's
        seed — and the fit on all k), or None where it cannot run (too little overlap, or a
        refit on fewer samples fails)."""
        if not self.usable:
            return None
        arrays = self._target_side(arrays)
        empty = np.empty((0, self.X.shape[1]))
        make = lambda: method_class(self.master())  # noqa: E731
        held_out = cross_validate_transfer(make, self.X, self.y, arrays, empty, self.seed)
        if held_out is None:
            return None
        fitted = self._wrap(make().fit(self.X, self.y, **arrays))
        fitted.conformity_scores_ = held_out[1]  # its intervals, calibrated on the target
        return _rmse(held_out[1], 0.0), fitted


class OnOverlap:
    """A fallback fitted on the two instruments' overlap, reading target spectra on their own
    axis (resampled onto the overlap, as the classical methods read them).

    Args:
        method: the fitted fallback on the overlap (`auto_zero_shot` or semi-supervised di-PLS).
        wavenumber: the target spectra's own axis; grid: the overlap's points.
    """

    def __init__(self, method, wavenumber: np.ndarray, grid: np.ndarray):
        self.method, self.wavenumber, self.grid = method, wavenumber, grid

    @property
    def master_(self):
        return self.method.master_

    def predict(self, X_target) -> np.ndarray:
        return self.method.predict(spectra.interpolate_rows(X_target, self.wavenumber, self.grid))


def _overlap(method) -> np.ndarray | None:
    """The points where a fallback can compare a row's master and target spectra when they lie
    on different axes: the coarser axis inside both ranges (`grids.overlap_points`);
    None where the row does not name both axes or they share too few points."""
    master, target = getattr(method, "wavenumber", None), getattr(method, "target_wavenumber", None)
    if master is None or target is None:
        return None
    grid, _ = grids.overlap_points({"master": np.asarray(master), "target": np.asarray(target)})
    return grid if grid is not None and grid.size >= grids.MIN_COMMON_POINTS else None


def _rmse(predicted: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(y)) ** 2)))
