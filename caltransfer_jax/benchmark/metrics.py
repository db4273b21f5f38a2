"""Figures of merit for calibration transfer and split-conformal prediction intervals.

Conventions (those of chemometrics):
  R²     1 − Σ(ŷ − y)² / Σ(y − ȳ)², on the test set (can be negative);
  RMSEP  √mean((ŷ − y)²);
  bias   mean(ŷ − y);
  SEP    bias-corrected standard error of prediction, √(Σ(ŷ − y − bias)² / (n − 1));
  RPD    sd(y) / SEP, with the sample standard deviation (n − 1);
  slope  of the least-squares line ŷ = a + slope · y (predicted against reference).
"""

from __future__ import annotations

import math

import numpy as np


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """R², RMSEP, RPD, bias, slope and SEP of predictions against reference values."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape or y_true.size < 2:
        raise ValueError(f"need ≥ 2 paired values; got {y_true.shape} and {y_pred.shape}")
    if not np.all(np.isfinite(y_pred)):
        raise ValueError("predictions contain non-finite values")
    error = y_pred - y_true
    bias = float(error.mean())
    sep = float(np.sqrt(np.sum((error - bias) ** 2) / (y_true.size - 1)))
    centred = y_true - y_true.mean()
    ss_tot = float(centred @ centred)
    return {
        "r2": 1.0 - float(error @ error) / ss_tot if ss_tot > 0 else float("nan"),
        "rmsep": float(np.sqrt(np.mean(error**2))),
        "rpd": float(y_true.std(ddof=1) / sep) if sep > 0 else float("inf"),
        "bias": bias,
        "slope": float(centred @ (y_pred - y_pred.mean()) / ss_tot) if ss_tot > 0 else float("nan"),
        "sep": sep,
    }


def conformal_quantile(scores, alpha: float) -> float:
    """Split-conformal quantile of absolute residuals from held-out calibration data.

    Returns the ⌈(n + 1)(1 − alpha)⌉-th smallest score, so that a new exchangeable residual
    falls within it with probability ≥ 1 − alpha; +inf when n is too small for that level.
    """
    scores = np.sort(np.abs(np.asarray(scores, dtype=np.float64).ravel()))
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    rank = math.ceil((scores.size + 1) * (1 - alpha))
    return float(scores[rank - 1]) if rank <= scores.size else float("inf")


def interval_coverage(y_true, y_pred, half_width: float) -> float:
    """Fraction of reference values inside ŷ ± half_width."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    return float(np.mean(np.abs(y_true - y_pred) <= half_width))


def cv_plus_interval(
    fold_predictions: np.ndarray, residuals: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """CV+ prediction intervals (Barber, Candès, Ramdas & Tibshirani, Ann. Statist. 49, 2021).

    Args:
        fold_predictions: (n, m) — row i: the predictions for the m test points of the model
            refitted without calibration point i's fold.
        residuals: (n,) |y_i − prediction of point i by that same model|.
        alpha: miscoverage (coverage ≥ 1 − 2·alpha guaranteed, ≈ 1 − alpha in practice).

    Returns:
        (lower, upper), (m,) each; ∓inf when n is too small for the level.
    """
    residuals = np.abs(np.asarray(residuals, dtype=np.float64))[:, None]
    n = residuals.shape[0]
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    high = math.ceil((1 - alpha) * (n + 1))
    low = math.floor(alpha * (n + 1))
    m = fold_predictions.shape[1]
    if high > n or low < 1:
        return np.full(m, -np.inf), np.full(m, np.inf)
    lower = np.sort(fold_predictions - residuals, axis=0)[low - 1]
    upper = np.sort(fold_predictions + residuals, axis=0)[high - 1]
    return lower, upper
