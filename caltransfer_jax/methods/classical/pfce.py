"""Parameter-free calibration enhancement (PFCE): a target model kept correlated with the master's.

PFCE (Zhang, Li, Hu, Zhou, Wang, Guo, Zhang, Lei & Zhang, "A parameter-free framework for
calibration enhancement of near-infrared spectroscopy based on correlation constraint", Analytica
Chimica Acta 1142, 169–178, 2021; extended in Zhang, Zhou & Li, "PFCE2: a versatile parameter-free
calibration enhancement framework for near-infrared spectroscopy", Spectrochimica Acta A 301,
122978, 2023) fits a regression vector b for the target instrument by least squares on the k
transfer samples, subject to a Pearson correlation of at least ρ = 0.98 (the fixed published
threshold, hence "parameter-free") between b and the master regression vector b_m (intercepts
excluded):

    min_{b₀, b} ‖z − b₀ − X_target_transfer b‖²   subject to   corr(b, b_m) ≥ ρ.

The three forms differ only in what the target model must reproduce:
  NS-PFCE (non-supervised): z = the master model's predictions of X_master_transfer;
  SS-PFCE (semi-supervised): z = y_transfer;
  FS-PFCE (full-supervised): both, with equal weight (the published cost ‖ŷ_m − Xb‖²/k +
    ‖y − Xb‖²/k, which equals 2‖(ŷ_m + y)/2 − Xb‖²/k plus a constant, so z = (ŷ_m + y)/2).
The master vector stays fixed in all three (as in the authors' code); re-estimating it jointly is
the multi-task variant of PFCE2, not implemented here.

With k ≤ p the residual can usually be made zero on a whole affine set of b, and the published
solver (SLSQP started at b_m) stops at one point of it. We return the point of that set nearest
to b_m (Euclidean) that satisfies the constraint: the least change to the master model, which is
where that solver heads. When no exact fit reaches correlation ρ, the constraint is active and
the minimum-residual b with correlation exactly ρ is unique.

Solving it exactly and fast: only b's components along the constant vector (which the
correlation ignores), along b_m and within the span of the centred transfer spectra change the
fit, the correlation or the distance to b_m, so the optimum lies in a space of dimension
≤ k + 1. There the problem is small: whether an exact fit reaches ρ is decided in closed form
(the most correlated exact fit is the minimum-norm solution plus r²/a times the part of b_m that
the fit cannot see); the nearest exact fit is a projection, moved onto the cone through the
Lagrangian of one quadratic constraint (a scalar root in the multiplier); the active case is a
convex least-squares problem over the cone, solved by two nested monotone root searches. A fit
takes about a millisecond where a generic solver on all p + 1 variables takes seconds.
"""

from __future__ import annotations

import abc
import warnings
from typing import ClassVar

import numpy as np
from scipy.optimize import brentq
from sklearn.utils.validation import check_is_fitted

from caltransfer_jax.methods.base import MasterModelMethod

THRESHOLD = 0.98


def _orthonormal_rows(rows: np.ndarray) -> np.ndarray:
    """An orthonormal basis (p, q) of the span of the rows of `rows` (from their Gram matrix)."""
    values, vectors = np.linalg.eigh(rows @ rows.T)
    keep = values > 1e-12 * max(values[-1], 1e-300)
    return rows.T @ (vectors[:, keep] / np.sqrt(values[keep]))


def _most_correlated_fit(F: np.ndarray, d: np.ndarray, m_norm: float, threshold: float, tol: float):
    """A least-squares solution c of F c ≈ d with correlation ≥ threshold to e₁, if one exists.

    Decides whether the constraint can hold without giving up fit, and supplies a feasible point
    should the projection in `_nearest_in_cone` fail. It is the most correlated solution where
    the maximum is attained; where it is only approached (a ≤ 0), the first point along the
    approach that reaches the threshold. None when no solution reaches it.
    """
    u, s, vt = np.linalg.svd(F, full_matrices=False)
    rank = int(np.sum(s > tol))
    u, s, vt = u[:, :rank], s[:rank], vt[:rank]
    c_min = vt.T @ ((u.T @ d) / s)  # minimum-norm solution
    mu = np.zeros(F.shape[1])
    mu[0] = m_norm
    mu_free = mu - vt.T @ (vt @ mu)  # part of the master direction the fit cannot see
    a, r2, s2 = mu @ c_min, c_min @ c_min, mu_free @ mu_free
    if rank == 0 or r2 == 0:
        # The fit fixes nothing: keep the master direction and scale.
        return mu_free if mu_free[0] >= threshold * np.linalg.norm(mu_free) else None
    if a > 0:
        # cos(c_min + t mu_free, mu) is maximal at t = r² / a.
        c = c_min + (r2 / a) * mu_free
        return c if c[0] >= threshold * np.linalg.norm(c) else None
    if s2 > threshold**2 * m_norm**2:
        # The supremum is approached only as t → ∞: take the first t where it reaches ρ.
        rho2 = threshold**2 * m_norm**2
        roots = np.roots([s2 * (s2 - rho2), 2 * a * s2, a * a - rho2 * r2])
        t = min(t.real for t in roots if abs(t.imag) < 1e-12 and a + t.real * s2 >= 0)
        return c_min + t * mu_free
    return None


def _nearest_in_cone(
    G: np.ndarray, d: np.ndarray, y_master: np.ndarray, threshold: float, tol: float
):
    """The least-squares solution y of G y ≈ d nearest to y_master with ‖y[2:]‖ ≤ τ y[1].

    The nearest least-squares solution is a projection. When it leaves the cone, the nearest point
    of the cone's slice satisfies ζ = −λ (I + λQ)⁻¹ b with the quadratic form of the cone,
    ζᵀQζ + 2bᵀζ + c, vanishing and λ ≥ 0; the problem being convex, the root whose point lies
    on the cone's positive half (x > 0) is the answer. Below the pole of (I + λQ)⁻¹ the form
    decreases monotonically (a generalised trust-region subproblem); beyond it the roots are
    bracketed on a log grid. Returns None if no such root is found.
    """
    tau2 = 1.0 / threshold**2 - 1.0
    u, s, vt = np.linalg.svd(G, full_matrices=True)
    rank = int(np.sum(s > tol))
    y0 = y_master + vt[:rank].T @ ((u[:, :rank].T @ (d - G @ y_master)) / s[:rank])
    if y0[1] > 0 and y0[2:] @ y0[2:] <= tau2 * y0[1] ** 2:
        return y0
    null = vt[rank:].T  # y = y0 + null ζ keeps the fit
    n_x, n_w = null[1], null[2:]
    theta, vectors = np.linalg.eigh(n_w.T @ n_w - tau2 * np.outer(n_x, n_x))
    beta = vectors.T @ (n_w.T @ y0[2:] - tau2 * y0[1] * n_x)
    gap0 = y0[2:] @ y0[2:] - tau2 * y0[1] ** 2

    def gap(lam):  # the cone's quadratic form at ζ(λ), for a scalar or an array of λ
        lam = np.asarray(lam, dtype=np.float64)[..., None]
        terms = beta**2 * lam * (2.0 + lam * theta) / (1.0 + lam * theta) ** 2
        return gap0 - np.sum(terms, axis=-1)

    if theta[0] < 0:
        pole = -1.0 / theta[0]
        grid = pole * (1.0 + np.logspace(-12, 16, 113))
        values = gap(grid)
        changes = np.flatnonzero(np.sign(values[:-1]) != np.sign(values[1:]))
        brackets = [(0.0, pole * (1.0 - 1e-12))] + [(grid[j], grid[j + 1]) for j in changes]
    else:  # no pole: gap falls to gap0 − Σβ²/θ, or to −∞ along a θ = 0 direction
        flat = theta <= 1e-12 * max(theta[-1], 1e-300)
        if not np.any(beta[flat] ** 2 > 1e-24 * (beta @ beta)) and gap0 >= np.sum(
            beta[~flat] ** 2 / theta[~flat]
        ):
            return None
        hi = 1.0 / max(theta[-1], 1e-300)
        while gap(hi) >= 0:
            hi *= 2.0
        brackets = [(0.0, hi)]
    for lo, hi in brackets:
        if gap(lo) * gap(hi) < 0:
            lam = brentq(gap, lo, hi, xtol=1e-15 * hi, rtol=1e-15)
            y = y0 - null @ (vectors @ (lam * beta / (1.0 + lam * theta)))
            if y[1] > 0:
                return y
    return None


def _active_fit(F: np.ndarray, d: np.ndarray, threshold: float, tol: float) -> np.ndarray:
    """min ‖d − F c‖² subject to c₁ ≥ ρ‖c‖, when the constraint is active.

    With c = (x, w) the constraint is the convex cone ‖w‖ ≤ τx, τ = √(1/ρ² − 1). For fixed x
    the best w solves a ball-constrained least-squares problem (one monotone secular equation in
    its multiplier μ); φ(x), the residual left, is convex in x with derivative
    φ′(x) = −2 f₀ᵀr − 2μτ²x, so a second monotone root search fixes x. Everything is written in
    the singular basis of the w-columns F₁ = U S Vᵀ.
    """
    tau = np.sqrt(1.0 / threshold**2 - 1.0)
    f0, F1 = F[:, 0], F[:, 1:]
    u, sv, vt = np.linalg.svd(F1, full_matrices=False)
    live = sv > tol
    u, sv, vt = u[:, live], sv[live], vt[live]
    kappa, phi, delta = sv**2, u.T @ f0, u.T @ d

    def inner(x):  # best w (in V coordinates) for scale x, and its multiplier μ
        rhs = sv * (delta - phi * x)  # S Uᵀ (d − f₀x)
        radius = tau * x
        if np.sum(rhs**2 / kappa**2) <= radius**2:
            return rhs / kappa, 0.0
        if radius <= 0:
            return np.zeros_like(rhs), np.inf
        top = np.linalg.norm(rhs) / radius
        mu = brentq(
            lambda m: np.sum(rhs**2 / (kappa + m) ** 2) - radius**2,
            0.0,
            top,
            xtol=1e-15 * top,
            rtol=1e-15,
        )
        return rhs / (kappa + mu), mu

    def slope(x):  # φ′(x)
        omega, mu = inner(x)
        residual = d - f0 * x - u @ (sv * omega)
        if np.isinf(mu):  # x = 0: the limit of μτ²x is τ‖SUᵀd‖
            return -2.0 * (f0 @ residual + tau * np.linalg.norm(sv * delta))
        return -2.0 * (f0 @ residual + mu * tau**2 * x)

    if slope(0.0) >= 0:
        # Every positive multiple of b_m worsens the fit: the infimum is the cone's apex (the
        # limit of ε·b_m + α·1, ε → 0, all of correlation 1), leaving only the constant part.
        warnings.warn(
            "PFCE: the transfer samples pull against the master model; the regression vector "
            "degenerates to a constant",
            RuntimeWarning,
            stacklevel=4,
        )
        return np.zeros(F.shape[1])
    hi = max(abs(f0 @ d), 1e-300) / max(f0 @ f0, 1e-300)
    while slope(hi) < 0:
        hi *= 2.0
    x = brentq(slope, 0.0, hi, xtol=1e-15 * hi, rtol=1e-15)
    omega, _ = inner(x)
    return np.concatenate([[x], vt.T @ omega])


def pfce_fit(
    X: np.ndarray, z: np.ndarray, b_master: np.ndarray, threshold: float = THRESHOLD
) -> tuple[np.ndarray, float]:
    """PFCE regression vector: min ‖z − b₀ − X b‖² subject to corr(b, b_master) ≥ threshold.

    Among several minimisers, the one nearest to b_master.

    Args:
      X: (k, p) transfer spectra on the target instrument.
      z: (k,) the values the target model must reproduce.
      b_master: (p,) the master regression vector.
      threshold: ρ, the least correlation allowed, in (0, 1).

    Returns:
      coef: (p,) the target regression vector.
      intercept: its intercept b₀.
    """
    X = np.asarray(X, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    b_master = np.asarray(b_master, dtype=np.float64)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1); got {threshold}")
    k, p = X.shape
    m_centred = b_master - b_master.mean()
    m_norm = np.linalg.norm(m_centred)
    if m_norm == 0:
        raise ValueError("PFCE needs a non-constant master regression vector")
    m_hat = m_centred / m_norm
    # The intercept is eliminated by centring over samples; b = α·1/√p + x·m̂ + B w.
    A = X - X.mean(axis=0)
    d = z - z.mean()
    rows = A - A.mean(axis=1, keepdims=True)
    basis = _orthonormal_rows(rows - np.outer(rows @ m_hat, m_hat))
    F = np.column_stack([A @ m_hat, A @ basis])
    e = A.sum(axis=1) / np.sqrt(p)
    G = np.column_stack([e, F])  # y = (α, x, w) ↦ the centred predictions
    y_master = np.zeros(G.shape[1])
    y_master[:2] = b_master.mean() * np.sqrt(p), m_norm
    # The fit along e is absorbed by α; the rest lives in e's complement. Ranks and zeros are
    # judged on the scale of the unprojected data, so round-off left by projections is not fitted.
    tol = 1e-12 * np.linalg.norm(G)
    has_e = np.linalg.norm(e) > tol
    e_hat = e / np.linalg.norm(e) if has_e else np.zeros_like(e)
    F_free, d_free = F - np.outer(e_hat, e_hat @ F), d - e_hat * (e_hat @ d)
    if np.linalg.norm(d_free) <= 1e-12 * np.linalg.norm(d):
        d_free = np.zeros_like(d)
    c = _most_correlated_fit(F_free, d_free, m_norm, threshold, tol)
    y = None
    if c is not None:  # some exact fit satisfies the constraint: take the nearest to b_m
        y = _nearest_in_cone(G, d, y_master, threshold, tol)
    if y is None:
        if c is None:
            c = _active_fit(F_free, d_free, threshold, tol)
        alpha = e @ (d - F @ c) / (e @ e) if has_e else y_master[0]
        y = np.concatenate([[alpha], c])
    coef = y[0] / np.sqrt(p) + y[1] * m_hat + basis @ y[2:]
    return coef, float(z.mean() - X.mean(axis=0) @ coef)


class _PFCE(MasterModelMethod, abc.ABC):
    """Shared fitting of the PFCE forms; subclasses name the values to reproduce."""

    def __init__(self, master=None, threshold: float = THRESHOLD):
        super().__init__(master)
        self.threshold = threshold

    @abc.abstractmethod
    def _reference(self, master, arrays) -> np.ndarray:
        """The values the target model must reproduce on the target transfer spectra."""

    def fit(self, X, y, **transfer):
        X, y, arrays = self._check(X, y, transfer)
        master = self._master(X, y)
        self.coef_, self.intercept_ = pfce_fit(
            arrays["X_target_transfer"],
            self._reference(master, arrays),
            master.coef_,
            self.threshold,
        )
        return self

    def predict(self, X):
        check_is_fitted(self, "coef_")
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_


class NSPFCE(_PFCE):
    """Non-supervised PFCE: the target model reproduces the master's predictions.

    Args:
      master: the master PLS calibration (fitted or not).
      threshold: the least correlation with the master regression vector (0.98 published).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"X_master_transfer", "X_target_transfer"})

    def _reference(self, master, arrays):
        return master.predict(arrays["X_master_transfer"])


class SSPFCE(_PFCE):
    """Semi-supervised PFCE: the target model reproduces the transfer samples' reference values.

    Arguments as for `NSPFCE`.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_transfer", "y_transfer"})

    def _reference(self, master, arrays):
        return arrays["y_transfer"]


class FSPFCE(_PFCE):
    """Full-supervised PFCE: the target model reproduces master predictions and reference values.

    Arguments as for `NSPFCE`.
    """

    requires: ClassVar[frozenset[str]] = frozenset(
        {"X_master_transfer", "X_target_transfer", "y_transfer"}
    )

    def _reference(self, master, arrays):
        return 0.5 * (master.predict(arrays["X_master_transfer"]) + arrays["y_transfer"])
