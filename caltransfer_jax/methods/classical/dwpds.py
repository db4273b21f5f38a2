"""Double-window piecewise direct standardisation (DWPDS).

PDS (`standardisation.PiecewiseDirectStandardisation`) learns, for every master point j, a local
ridge regression from the target window of half-width h around j, from the k transfer pairs
alone. With few transfer samples each of those regressions has only k rows. Double-window PDS
(Wang, Lysaght & Kowalski, "Improvement of multivariate calibration through instrument
standardization", Anal. Chem. 64(5), 562–564, 1992; Wang, Veltkamp & Kowalski, Anal. Chem.
63(23), 2750–2756, 1991) assumes the transfer function varies slowly along the spectrum and
borrows the pairs of the neighbouring points: the model f_j of point j is fitted on the stacked
pairs

    (target window around i − its transfer mean,  master point i − its transfer mean)

of every transfer sample and every point i in a second window of half-width h₂ around j, k (2h₂ + 1)
rows in all, and applied at point j only:

    x̂_master[j] = m_master[j] + (target window around j − its transfer mean) f_j.

Centring each stacked point on its own transfer means gives every point i its own intercept (the
additive background term), so only the shape of the local transfer is shared; h₂ = 0 is PDS.
Window ends are padded by repeating the end points, as in PDS.

The two half-widths and the ridge strength are chosen as PDS chooses its window and ridge: by
exact leave-one-out over the transfer samples, judged on the master model's prediction of the
transferred spectrum against its prediction of the same sample's master spectrum. Leaving one
sample out removes its 2h₂ + 1 stacked rows together, so the leave-one-out residuals are the
grouped ones, e₍ₛ₎ = (I − H_ss)⁻¹ e_s, with H the hat matrix of the ridge model with unpenalised
per-point intercepts (exact for a fixed ridge penalty λ = α × the largest squared singular
value, as in PDS). No label is needed.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from caltransfer_jax.methods.base import MasterModelMethod
from caltransfer_jax.methods.classical.standardisation import (
    PDS_HALF_WINDOWS,
    RIDGE_GRID,
    _ridge_map,
    _thin_svd,
    _windows,
)

SECOND_HALF_WINDOWS = (1, 2, 3, 5)


def _stack(Xm: np.ndarray, Xt: np.ndarray, half: int, half2: int):
    """Per-point centred stacked pairs of the double window.

    Returns:
      inputs: (p, k, m, w) target windows around point i = j + offset, centred on their
        transfer means, for m = 2·half2 + 1 offsets and windows of w = 2·half + 1 points.
      outputs: (p, k, m) master point i, centred on its transfer mean.
      windows: (p, k, w) the uncentred target windows around every point.
    """
    p = Xm.shape[1]
    windows = _windows(Xt, half)
    centred = windows - windows.mean(axis=1, keepdims=True)
    master = (Xm - Xm.mean(axis=0)).T  # (p, k)
    points = np.clip(np.arange(p)[:, None] + np.arange(-half2, half2 + 1), 0, p - 1)  # (p, m)
    inputs = np.moveaxis(centred[points], 1, 2)  # (p, m, k, w) → (p, k, m, w)
    outputs = np.swapaxes(master[points], 1, 2)  # (p, m, k) → (p, k, m)
    return np.ascontiguousarray(inputs), np.ascontiguousarray(outputs), windows


def _grouped_loo(inputs: np.ndarray, outputs: np.ndarray, alphas) -> np.ndarray:
    """Leave-one-sample-out residuals at the centre point of centred stacked ridge regressions.

    Args:
      inputs: (p, k, m, w) stacked inputs, each of the m points centred over the k samples.
      outputs: (p, k, m) stacked outputs, centred likewise.
      alphas: ridge strengths relative to each regression's largest squared singular value.

    Returns:
      (a, p, k) residuals of the centre point (offset 0) of each left-out sample, the model
      (per-point intercepts and the shared map) refitted without all of that sample's rows;
      inf where the left-out rows are interpolated and no estimate exists.
    """
    p, k, m, w = inputs.shape
    U, s2, _ = _thin_svd(inputs.reshape(p, k * m, w))
    r = U.shape[-1]
    scale = s2[:, :1]
    Uty = np.einsum("pnr,pn->pr", U, outputs.reshape(p, k * m))
    U = U.reshape(p, k, m, r)
    centre = m // 2
    residuals = np.empty((len(alphas), p, k))
    for a, alpha in enumerate(alphas):
        shrink = s2 / (s2 + alpha * scale)  # (p, r)
        fitted = np.einsum("pkmr,pr->pkm", U, shrink * Uty)
        # Hat block of one sample's rows: its m intercepts (1/k each) plus the ridge part.
        Us = U * shrink[:, None, None, :]
        complement = np.eye(m) * (1.0 - 1.0 / k) - Us @ np.swapaxes(U, -1, -2)  # I − H_ss
        residuals[a] = _solve_centre(complement, outputs - fitted, centre)
    return residuals


def _solve_centre(A: np.ndarray, e: np.ndarray, centre: int) -> np.ndarray:
    """Entry `centre` of A⁻¹ e for a batch of symmetric (m, m) A; inf where A is singular."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        try:
            solution = np.linalg.solve(A, e[..., None])[..., centre, 0]
        except np.linalg.LinAlgError:  # an exactly singular block: the slower, safe route
            values, vectors = np.linalg.eigh(A)
            inverse = np.where(values > 1e-12, 1.0 / values, np.inf)
            proj = np.einsum("...ji,...j->...i", vectors, e)
            solution = np.einsum("...i,...i->...", vectors[..., centre, :], inverse * proj)
    return np.nan_to_num(solution, nan=np.inf, posinf=np.inf, neginf=np.inf)


class DoubleWindowPDS(MasterModelMethod):
    """DWPDS: PDS whose local models also learn from the neighbouring points' transfer pairs.

    Args:
      master: the master PLS calibration (fitted or not), applied to the standardised spectra.
      half_windows: candidate half-widths h of the target window of each local model.
      second_half_windows: candidate half-widths h₂ of the window of neighbouring points whose
        pairs are stacked (0 would be PDS).
      alphas: candidate ridge strengths, × each local model's largest squared singular value.

    Attributes:
      half_window_, second_half_window_, alpha_: the leave-one-out choices.
      coefs_: (p, 2h + 1) the local maps; window_means_: (p, 2h + 1) the target windows'
        transfer means; mean_master_: (p,) the master transfer mean.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"X_master_transfer", "X_target_transfer"})

    def __init__(
        self,
        master=None,
        half_windows=PDS_HALF_WINDOWS,
        second_half_windows=SECOND_HALF_WINDOWS,
        alphas=RIDGE_GRID,
    ):
        super().__init__(master)
        self.half_windows = half_windows
        self.second_half_windows = second_half_windows
        self.alphas = alphas

    def fit(self, X, y, **transfer):
        X, y, t = self._check(X, y, transfer)
        Xm, Xt = t["X_master_transfer"], t["X_target_transfer"]
        if len(Xm) < 2:
            raise ValueError("DoubleWindowPDS needs at least two transfer pairs")
        if not (np.all(np.isfinite(Xm)) and np.all(np.isfinite(Xt))):
            raise ValueError("DoubleWindowPDS: transfer spectra have non-finite values")
        self.master_ = self._master(X, y)
        b = self.master_.coef_
        best = (np.inf, None, None, None)
        for half in self.half_windows:
            for half2 in self.second_half_windows:
                inputs, outputs, _ = _stack(Xm, Xt, half, half2)
                residuals = _grouped_loo(inputs, outputs, self.alphas)
                # Per left-out pair, the master prediction error: Σ_j b_j · residual_j.
                errors = np.einsum("j,ajk->ak", b, residuals)
                press = np.sum(errors**2, axis=1)
                a = int(np.argmin(press))
                if press[a] < best[0]:
                    best = (press[a], half, half2, self.alphas[a])
        if best[1] is None:
            raise ValueError(
                "DoubleWindowPDS: no window and ridge strength gives a finite leave-one-out error"
            )
        _, self.half_window_, self.second_half_window_, self.alpha_ = best
        inputs, outputs, windows = _stack(Xm, Xt, self.half_window_, self.second_half_window_)
        p, k, m, w = inputs.shape
        self.coefs_ = _ridge_map(
            inputs.reshape(p, k * m, w), outputs.reshape(p, k * m, 1), self.alpha_
        )[..., 0]
        self.window_means_ = windows.mean(axis=1)  # (p, w)
        self.mean_master_ = Xm.mean(axis=0)
        return self

    def transform(self, X_target):
        X_target = np.asarray(X_target, dtype=np.float64)
        p = self.mean_master_.shape[0]
        if X_target.ndim != 2 or X_target.shape[1] != p:
            raise ValueError(
                f"DoubleWindowPDS: X_target must have shape (n, {p}); got {X_target.shape}"
            )
        windows = _windows(X_target, self.half_window_)
        return self.mean_master_ + np.einsum(
            "pkw,pw->kp", windows - self.window_means_[:, None, :], self.coefs_
        )

    def predict(self, X_target):
        return self.master_.predict(self.transform(X_target))
