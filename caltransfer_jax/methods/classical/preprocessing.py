"""Spectral preprocessing as scikit-learn transformers: centring, SNV, MSC, Savitzky–Golay.

Per-spectrum transforms (SNV, Savitzky–Golay) learn nothing; MSC and mean centring learn their
reference from the data passed to `fit` only (the master calibration set in the benchmark).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import make_pipeline
from sklearn.utils.validation import check_is_fitted


class MeanCentering(TransformerMixin, BaseEstimator):
    """Subtracts the column means of the fitting data."""

    def fit(self, X, y=None):
        self.mean_ = np.asarray(X, dtype=np.float64).mean(axis=0)
        return self

    def transform(self, X):
        check_is_fitted(self, "mean_")
        return np.asarray(X, dtype=np.float64) - self.mean_


class SNV(TransformerMixin, BaseEstimator):
    """Standard normal variate: each spectrum centred and divided by its standard deviation."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        centred = X - X.mean(axis=1, keepdims=True)
        std = centred.std(axis=1, ddof=1, keepdims=True)
        if np.any(std <= 0):
            raise ValueError(f"SNV: spectrum {int(np.flatnonzero(std <= 0)[0])} is constant")
        return centred / std


class MSC(TransformerMixin, BaseEstimator):
    """Multiplicative scatter correction against the mean spectrum of the fitting data.

    Each spectrum x is regressed on the reference r (x ≈ a + b r) and replaced by (x − a) / b.
    """

    def fit(self, X, y=None):
        self.reference_ = np.asarray(X, dtype=np.float64).mean(axis=0)
        return self

    def transform(self, X):
        check_is_fitted(self, "reference_")
        X = np.asarray(X, dtype=np.float64)
        r = self.reference_ - self.reference_.mean()
        slope = (X - X.mean(axis=1, keepdims=True)) @ r / (r @ r)
        offset = X.mean(axis=1) - slope * self.reference_.mean()
        if np.any(np.abs(slope) < 1e-12):
            raise ValueError("MSC: a spectrum is uncorrelated with the reference")
        return (X - offset[:, None]) / slope[:, None]


class SavitzkyGolay(TransformerMixin, BaseEstimator):
    """Savitzky–Golay smoothing or derivative along the spectral axis."""

    def __init__(self, window: int = 11, polyorder: int = 2, deriv: int = 1):
        self.window = window
        self.polyorder = polyorder
        self.deriv = deriv

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return savgol_filter(
            np.asarray(X, dtype=np.float64),
            self.window,
            self.polyorder,
            deriv=self.deriv,
            axis=1,
            mode="interp",
        )


def make_preprocessing(spec: str):
    """A transformer from a spec such as 'none', 'snv', 'msc', 'sg1', 'snv+sg1', 'sg2(15)'.

    `sgD(W)` is a Savitzky–Golay derivative of order D with window W (default 11), polyorder 2.
    """
    steps = []
    for token in (t.strip().lower() for t in spec.split("+")):
        if token in ("", "none"):
            continue
        if token == "snv":
            steps.append(SNV())
        elif token == "msc":
            steps.append(MSC())
        elif token.startswith("sg") and token[2:3] in "012":
            window = int(token[4:-1]) if "(" in token else 11
            steps.append(SavitzkyGolay(window=window, polyorder=2, deriv=int(token[2])))
        else:
            raise ValueError(f"unknown preprocessing step {token!r} in {spec!r}")
    return make_pipeline(*steps) if steps else make_pipeline("passthrough")
