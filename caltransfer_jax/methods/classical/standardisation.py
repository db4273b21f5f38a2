"""Spectral standardisation: direct standardisation (DS) and piecewise DS (PDS).

Both map target-instrument spectra into the master instrument's space with a linear map learnt
from transfer samples measured on both, then apply the unchanged master calibration:

  DS:  x_master ≈ m_master + (x_target − m_target) F, one ridge map F (p × p);
  PDS: master point j ≈ m_master[j] + (target window around j − its mean) f_j, one local ridge
       regression per point (window edges padded by repeating the end points).

Centring on the transfer samples' means gives each map its intercept (the additive background
term of Wang, Veltkamp & Kowalski, Anal. Chem. 1991). The ridge strength, and for PDS the window,
are chosen by exact leave-one-out over the transfer pairs, judged on what matters downstream: the
master model's prediction of the transferred spectrum against its prediction of the same sample's
master spectrum. No label is needed.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from caltransfer_jax.methods.base import MasterModelMethod

RIDGE_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # × the largest squared singular value
PDS_HALF_WINDOWS = (1, 2, 3, 5, 7)


def _thin_svd(Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD (U, s², Vᵀ) of a batch of small matrices through the smaller Gram matrix.

    PDS fits hundreds of tiny k × w problems; a batched eigendecomposition of the w × w (or
    k × k) Gram matrix is several times faster than a batched SVD. Directions with negligible
    singular values get zero vectors so they drop out of every ridge formula.
    """
    k, q = Xc.shape[-2:]
    XcT = np.swapaxes(Xc, -1, -2)
    s2, vecs = np.linalg.eigh(XcT @ Xc if q <= k else Xc @ XcT)
    s2, vecs = s2[..., ::-1], vecs[..., ::-1]  # descending, as an SVD orders them
    keep = s2 > 1e-12 * s2[..., :1]
    s = np.sqrt(np.where(keep, s2, 1.0))
    if q <= k:
        V = vecs * keep[..., None, :]
        U = (Xc @ V) / s[..., None, :]
    else:
        U = vecs * keep[..., None, :]
        V = (XcT @ U) / s[..., None, :]
    return U, np.where(keep, s2, 0.0), np.swapaxes(V, -1, -2)


def _ridge_loo(X: np.ndarray, y: np.ndarray, alphas) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out residuals of centred ridge regressions y ≈ X f, batched.

    Args:
      X: (..., k, q) inputs (k samples), any leading batch shape.
      y: (..., k) outputs.
      alphas: ridge strengths relative to each batch element's largest squared singular value.

    Returns:
      residuals: (a, ..., k) exact leave-one-out residuals (intercept refitted without i).
      scales: (..., 1) the largest squared singular values (for turning alphas into lambdas).
    """
    Xc = X - X.mean(axis=-2, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    U, s2, _ = _thin_svd(Xc)
    k = X.shape[-2]
    scale = s2[..., :1]
    Uty = np.einsum("...km,...k->...m", U, yc)
    # Every ridge strength at once, kept as the last axis so each product is one batched matmul.
    shrink = s2[..., None] / (s2[..., None] + scale[..., None] * np.asarray(alphas))  # (..., m, a)
    fitted = U @ (shrink * Uty[..., None])  # (..., k, a)
    leverage = 1.0 / k + (U**2) @ shrink
    loo = np.moveaxis((yc[..., None] - fitted) / (1.0 - leverage), -1, 0)
    # A model that interpolates a left-out sample (leverage 1) has no usable estimate.
    return np.nan_to_num(loo, nan=np.inf, posinf=np.inf, neginf=np.inf), scale


def _ridge_map(X: np.ndarray, Y: np.ndarray, alpha: float) -> np.ndarray:
    """Centred ridge map F (..., q, r) with λ = alpha × the largest squared singular value."""
    Xc = X - X.mean(axis=-2, keepdims=True)
    Yc = Y - Y.mean(axis=-2, keepdims=True)
    U, s2, Vt = _thin_svd(Xc)
    gain = np.sqrt(s2) / (s2 + alpha * s2[..., :1])
    return np.swapaxes(Vt, -1, -2) @ (gain[..., :, None] * (np.swapaxes(U, -1, -2) @ Yc))


class DirectStandardisation(MasterModelMethod):
    """DS with a ridge-regularised map chosen by leave-one-out on the transfer pairs."""

    requires: ClassVar[frozenset[str]] = frozenset({"X_master_transfer", "X_target_transfer"})

    def __init__(self, master=None, alphas=RIDGE_GRID):
        super().__init__(master)
        self.alphas = alphas

    def fit(self, X, y, **transfer):
        X, y, t = self._check(X, y, transfer)
        self.master_ = self._master(X, y)
        Xm, Xt = t["X_master_transfer"], t["X_target_transfer"]
        b = self.master_.coef_
        # Prediction-space error of each left-out pair: b · (x_master − x̂_master).
        residuals, _ = _ridge_loo(Xt, Xm @ b, self.alphas)
        self.alpha_ = self.alphas[int(np.argmin(np.sum(residuals**2, axis=1)))]
        self.mean_master_, self.mean_target_ = Xm.mean(axis=0), Xt.mean(axis=0)
        self.F_ = _ridge_map(Xt, Xm, self.alpha_)
        return self

    def transform(self, X_target):
        return self.mean_master_ + (np.asarray(X_target) - self.mean_target_) @ self.F_

    def predict(self, X_target):
        return self.master_.predict(self.transform(X_target))


def _windows(X: np.ndarray, half: int) -> np.ndarray:
    """(p, k, 2·half + 1) windows around every point, ends padded by repetition."""
    padded = np.pad(X, ((0, 0), (half, half)), mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=1)
    return np.ascontiguousarray(np.swapaxes(view, 0, 1))


class PiecewiseDirectStandardisation(MasterModelMethod):
    """PDS with local ridge models; window and ridge strength chosen by leave-one-out."""

    requires: ClassVar[frozenset[str]] = frozenset({"X_master_transfer", "X_target_transfer"})

    def __init__(self, master=None, half_windows=PDS_HALF_WINDOWS, alphas=RIDGE_GRID):
        super().__init__(master)
        self.half_windows = half_windows
        self.alphas = alphas

    def fit(self, X, y, **transfer):
        X, y, t = self._check(X, y, transfer)
        self.master_ = self._master(X, y)
        Xm, Xt = t["X_master_transfer"], t["X_target_transfer"]
        b = self.master_.coef_
        targets = Xm.T  # (p, k): master point j for every pair
        best = (np.inf, None, None)
        for half in self.half_windows:
            residuals, _ = _ridge_loo(_windows(Xt, half), targets, self.alphas)
            # Per left-out pair, the master prediction error: Σ_j b_j · residual_j.
            errors = np.einsum("j,ajk->ak", b, residuals)
            press = np.sum(errors**2, axis=1)
            a = int(np.argmin(press))
            if press[a] < best[0]:
                best = (press[a], half, self.alphas[a])
        _, self.half_window_, self.alpha_ = best
        windows = _windows(Xt, self.half_window_)
        self.coefs_ = _ridge_map(windows, targets[..., None], self.alpha_)[..., 0]  # (p, window)
        self.window_means_ = windows.mean(axis=1)  # (p, window)
        self.mean_master_ = Xm.mean(axis=0)
        return self

    def transform(self, X_target):
        windows = _windows(np.asarray(X_target, dtype=np.float64), self.half_window_)
        return self.mean_master_ + np.einsum(
            "pkw,pw->kp", windows - self.window_means_[:, None, :], self.coefs_
        )

    def predict(self, X_target):
        return self.master_.predict(self.transform(X_target))
