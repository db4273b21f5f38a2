"""The contract every calibration-transfer method follows.

A method is a scikit-learn regressor. `fit(X, y, **transfer)` receives the master instrument's
labelled calibration spectra `X` (n, p) and property values `y` (n,), plus what a user of the
target instrument has, as keyword arrays:

  X_master_transfer   (k, p)  transfer samples measured on the master instrument
  X_target_transfer   (k, p)  the same samples, same row order, on the target instrument
  y_transfer          (k,)    their reference values
  X_target_unlabelled (m, p)  unlabelled spectra from the target instrument (never test spectra)
  X_master_standards  (s, p)  transfer standards (e.g. glass) on the master instrument
  X_target_standards  (s', p) the standards on the target instrument

`predict(X_target)` returns property values for target-instrument spectra. The class attribute
`requires` names the keyword arrays a method cannot work without, so a benchmark leaves a method
out where they are missing instead of faking them.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone

from caltransfer_jax.methods.classical.pls import PLSRegressionCV

TRANSFER_KEYS = (
    "X_master_transfer",
    "X_target_transfer",
    "y_transfer",
    "X_target_unlabelled",
    "X_master_standards",
    "X_target_standards",
)


class TransferMethod(RegressorMixin, BaseEstimator):
    """Base class: checks inputs against `requires` and holds the master calibration."""

    requires: ClassVar[frozenset[str]] = frozenset()

    def _check(
        self, X, y, transfer: dict, target_columns: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """Checked float arrays; `target_columns`: width of the target arrays where the target
        instrument has its own axis (default: that of X)."""
        unknown = set(transfer) - set(TRANSFER_KEYS)
        if unknown:
            raise TypeError(f"{type(self).__name__}.fit got unknown arguments {sorted(unknown)}")
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).ravel()
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be (n, p) with n = len(y); got {X.shape} and {y.shape}")
        arrays = {}
        for key, value in transfer.items():
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float64)
            width = target_columns if key.startswith("X_target") and target_columns else X.shape[1]
            if key != "y_transfer" and (value.ndim != 2 or value.shape[1] != width):
                raise ValueError(f"{key} must have {width} columns; got shape {value.shape}")
            if len(value) == 0:
                continue
            arrays[key] = value
        missing = {k for k in self.requires if k not in arrays}
        if missing:
            raise ValueError(f"{type(self).__name__} needs {sorted(missing)}")
        if "X_target_transfer" in arrays and "X_master_transfer" in arrays:
            if len(arrays["X_target_transfer"]) != len(arrays["X_master_transfer"]):
                raise ValueError(
                    "X_master_transfer and X_target_transfer must be paired row by row"
                )
        if "y_transfer" in arrays and "X_target_transfer" in arrays:
            if len(arrays["y_transfer"]) != len(arrays["X_target_transfer"]):
                raise ValueError("y_transfer must have one value per transfer sample")
        return X, y, arrays


class MasterModelMethod(TransferMethod):
    """A method built on a master PLS calibration, fitted here or passed in already fitted.

    Passing a fitted `master` lets a benchmark share one master calibration among methods.
    """

    def __init__(self, master: PLSRegressionCV | None = None):
        self.master = master

    def _master(self, X, y) -> PLSRegressionCV:
        if self.master is not None and hasattr(self.master, "coef_"):
            return self.master
        return clone(self.master or PLSRegressionCV()).fit(X, y)


def conformity_scores(method: TransferMethod, master) -> tuple[np.ndarray, str]:
    """Residuals for a method's split-conformal interval (in its label units), and their basis.

    Those of the guard's fallback where a model row fell back to a method that has them
    (semi-supervised di-PLS, held out on the target); else the method's own residuals on target
    transfer samples where it provides them (the few-shot model rows); else held-out residuals
    of its own calibration where it has one (target or augmented PLS, the model's head); else
    those of the master calibration — which say nothing of the target instrument, so such
    intervals are not calibrated for the transfer.
    """
    fallback = getattr(method, "fallback_", None)
    if getattr(fallback, "conformity_scores_", None) is not None:
        return np.asarray(fallback.conformity_scores_), (
            "held-out residuals on the target transfer samples of the guard's fallback "
            "(semi-supervised di-PLS)"
        )
    if fallback is not None:
        return np.asarray(fallback.master_.cv_residuals_), (
            "cross-validation residuals of the master calibration (the model's guard fell back "
            "to a zero-shot method; not calibrated on the target)"
        )
    own = getattr(method, "conformity_scores_", None)
    if own is not None:
        return np.asarray(own), "held-out residuals on the target transfer samples"
    own = getattr(getattr(method, "model_", None), "cv_residuals_", None)
    if own is not None:
        return np.asarray(own), "cross-validation residuals of the method's own calibration"
    return (
        np.asarray(master.cv_residuals_),
        "cross-validation residuals of the master calibration (not calibrated on the target)",
    )


CV_FOLDS = 5
_PAIRED = ("X_master_transfer", "X_target_transfer", "y_transfer")


def cross_validate_transfer(make_method, X, y, arrays, X_new, seed, folds: int = CV_FOLDS):
    """A few-shot method refitted without each fold of its k transfer samples.

    Args:
        make_method: () -> an unfitted method.
        X, y: the master calibration; arrays: the transfer arrays of the full fit.
        X_new: (m, p) spectra to predict with every refit (the test set, or none: (0, p)).
        seed: draws the folds (`folds` of them; leave-one-out for k ≤ folds).

    Returns:
        (predictions (k, m): row i by the refit without i's fold, residuals (k,) |y_i − its
        prediction by that refit|), or None where a refit on fewer samples fails.
    """
    k = len(arrays["y_transfer"])
    assignment = np.random.default_rng(seed).permutation(k) % min(folds, k)
    predictions, residuals = np.empty((k, len(X_new))), np.empty(k)
    for fold in np.unique(assignment):
        held = assignment == fold
        kept = {key: (v[~held] if key in _PAIRED else v) for key, v in arrays.items()}
        try:
            method = make_method().fit(X, y, **kept)
        except (ValueError, np.linalg.LinAlgError):
            return None
        if len(X_new):
            predictions[held] = method.predict(X_new)
        held_out = method.predict(arrays["X_target_transfer"][held])
        residuals[held] = np.abs(arrays["y_transfer"][held] - held_out)
    return predictions, residuals
