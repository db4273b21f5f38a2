"""Graph-based calibration transfer PLS (GCT-PLS): PLS that pulls paired latent variables together.

GCT-PLS (Nikzad-Langerodi & Sobieczky, "Graph-based calibration transfer", Journal of
Chemometrics 35(4), e3319, 2021) connects each transfer sample's master and target spectrum by an
edge of a graph and adds the graph-Laplacian penalty γ Σᵢ (tᵢᵐᵃˢᵗᵉʳ − tᵢᵗᵃʳᵍᵉᵗ)² on the latent
variable t = Xw to the PLS objective. With Δ = X_master_transfer − X_target_transfer the penalty is
γ wᵀΔᵀΔw, and every weight vector has the di-PLS closed form

    w ∝ (I + γ / (yᵀy) · ΔᵀΔ)⁻¹ Xᵀy

on the (deflated) centred master calibration X, y. Δ is not centred, so an offset between the
instruments is penalised too, and target spectra are predicted after centring on the master
calibration mean.

Penalty and number of latent variables are chosen jointly by K-fold cross-validation over the
transfer pairs: each fold refits with the remaining pairs and predicts the held-out target
spectra. The errors are taken against `y_transfer` where it is given, otherwise against the
master calibration's predictions for the held-out master spectra (what the master instrument
would report), so the method also works with unlabelled transfer samples. Where the transfer
samples also belong to the master calibration, as in the benchmark, their master spectra stay in
the calibration during CV, which makes RMSECV somewhat optimistic. The penalty grid is relative:
γ = ρ · yᵀy / s₁², with s₁² the largest eigenvalue of ΔᵀΔ, so ρ is the shrinkage ratio on the
leading difference direction in the first latent variable; ρ = ∞ projects the row space of Δ out
of every weight vector, so paired spectra get identical predictions.

All weights lie in the span of the rows of X and Δ (at most n + k dimensions), and ΔᵀΔ is fixed,
so every fold and penalty runs as one batch of small dense products.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.utils.validation import check_is_fitted

from caltransfer_jax.methods.base import MasterModelMethod
from caltransfer_jax.methods.classical.dipls import regression_vectors
from caltransfer_jax.methods.classical.pls import cv_folds

DEFAULT_RATIOS = (0.0, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, np.inf)


def gct_path(
    X: np.ndarray,
    y: np.ndarray,
    directions: np.ndarray,
    sq_values: np.ndarray,
    gammas: np.ndarray,
    max_components: int,
) -> np.ndarray:
    """GCT-PLS regression vectors for every pair of penalty matrix and γ, in any orthonormal basis.

    Args:
      X: (n, r) centred calibration spectra.
      y: (n,) centred property values.
      directions: (F, r, d) right singular vectors of F pair-difference matrices Δ (zero
        columns allowed, to pad).
      sq_values: (F, d) the matching eigenvalues of ΔᵀΔ.
      gammas: (G,) penalties γ ≥ 0 (∞ allowed), each used with every Δ.
      max_components: A; at most n − 1.

    Returns:
      (F, G, A, r) regression vectors, [f, g, j] using j + 1 latent variables.
    """
    n, r = X.shape
    n_components = min(max_components, n - 1)
    shape = (len(directions), len(gammas))
    residual = np.broadcast_to(y, (*shape, n)).copy()
    weights = np.zeros((*shape, r, n_components))
    loadings = np.zeros((*shape, r, n_components))
    y_loadings = np.zeros((*shape, n_components))
    scores = np.zeros((*shape, n, n_components))  # orthonormal
    tiny = 1e-300
    for a in range(n_components):
        # X is never deflated: y stays orthogonal to earlier scores, so Xₐᵀyₐ = Xᵀyₐ.
        v = residual @ X
        c = gammas / np.maximum(np.sum(residual**2, axis=-1), tiny)
        # cs² / (1 + cs²), written to allow γ = ∞ (projection onto the complement of Δ's rows).
        with np.errstate(divide="ignore", invalid="ignore"):
            sq = sq_values[:, None, :]
            shrink = np.where(sq > 0, 1.0 / (1.0 + 1.0 / (c[..., None] * sq)), 0.0)
        w = v - (shrink * (v @ directions)) @ np.swapaxes(directions, 1, 2)
        w /= np.maximum(np.linalg.norm(w, axis=-1, keepdims=True), tiny)
        t = w @ X.T
        # Scores of the deflated X: Gram–Schmidt against the earlier scores.
        earlier = scores[..., :a]
        t -= (earlier @ (t[..., None, :] @ earlier)[..., 0, :, None])[..., 0]
        tt = np.maximum(np.sum(t**2, axis=-1), tiny)
        q = np.sum(residual * t, axis=-1) / tt
        weights[..., a] = w
        loadings[..., a] = (t @ X) / tt[..., None]
        y_loadings[..., a] = q
        residual -= q[..., None] * t
        scores[..., a] = t / np.sqrt(tt)[..., None]
    return regression_vectors(weights, loadings, y_loadings)


def _difference_directions(delta: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Right singular vectors (r, width) and eigenvalues (width,) of ΔᵀΔ, zero-padded."""
    _, s, vt = np.linalg.svd(delta, full_matrices=False)
    directions = np.zeros((delta.shape[1], width))
    sq_values = np.zeros(width)
    directions[:, : len(s)] = vt.T
    sq_values[: len(s)] = s**2
    return directions, sq_values


class GCTPLS(MasterModelMethod):
    """GCT-PLS with penalty and number of latent variables chosen by CV over transfer pairs.

    Args:
      master: a master PLS calibration (fitted or not); its predictions are the CV reference
        for transfer samples without `y_transfer`.
      ratios: the penalty grid, as ratios ρ (γ = ρ · yᵀy / s₁²); 0 is plain PLS.
      max_components: the largest number of latent variables tried.
      n_folds: folds over the transfer pairs (leave-one-out for at most this many pairs).
      seed: seed of the fold assignment.

    Attributes:
      coef_, intercept_: the model ŷ = x · coef_ + intercept_ for target spectra.
      ratio_, gamma_, n_components_: the chosen penalty (as ratio and as γ) and size.
      rmsecv_: (A, len(ratios)) cross-validated RMSE over the transfer pairs, row j for j + 1
        latent variables.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"X_master_transfer", "X_target_transfer"})

    def __init__(
        self,
        master=None,
        ratios: tuple[float, ...] = DEFAULT_RATIOS,
        max_components: int = 20,
        n_folds: int = 5,
        seed: int = 0,
    ):
        super().__init__(master)
        self.ratios = ratios
        self.max_components = max_components
        self.n_folds = n_folds
        self.seed = seed

    def fit(self, X, y, **transfer):
        X, y, arrays = self._check(X, y, transfer)
        master_pairs, target_pairs = arrays["X_master_transfer"], arrays["X_target_transfer"]
        k = len(target_pairs)
        if k < 2:
            raise ValueError("GCT-PLS needs at least 2 transfer pairs to cross-validate")
        if "y_transfer" in arrays:
            reference = arrays["y_transfer"]
        else:
            reference = self._master(X, y).predict(master_pairs)
        ratios = np.asarray(self.ratios, dtype=np.float64)
        if ratios.ndim != 1 or len(ratios) == 0 or np.any(ratios < 0):
            raise ValueError(f"ratios must be a non-empty list of values ≥ 0; got {self.ratios}")
        x_mean, y_mean = X.mean(axis=0), y.mean()
        Xc, yc = X - x_mean, y - y_mean
        delta = master_pairs - target_pairs
        # Orthonormal basis of the rows of X and Δ, from their Gram matrix.
        stacked = np.vstack([Xc, delta])
        gram_values, gram_vectors = np.linalg.eigh(stacked @ stacked.T)
        keep = gram_values > 1e-12 * max(gram_values[-1], 1e-300)
        coords = gram_vectors[:, keep] * np.sqrt(gram_values[keep])  # rows in the basis
        X_basis, delta_basis = coords[: len(Xc)], coords[len(Xc) :]
        dual = gram_vectors[:, keep] / np.sqrt(gram_values[keep])  # basis = stackedᵀ · dual
        test_basis = ((target_pairs - x_mean) @ stacked.T) @ dual
        top = np.linalg.norm(delta_basis, 2) ** 2
        gammas = ratios * (yc @ yc) / top if top > 0 else np.zeros_like(ratios)
        limit = min(self.max_components, len(y) - 1)

        folds = cv_folds(k, self.n_folds, self.seed)
        width = max(len(train) for train, _ in folds)
        fold_dirs = [_difference_directions(delta_basis[train], width) for train, _ in folds]
        coefs = gct_path(
            X_basis,
            yc,
            np.stack([d for d, _ in fold_dirs]),
            np.stack([s for _, s in fold_dirs]),
            gammas,
            limit,
        )
        errors = np.zeros((coefs.shape[2], len(gammas)))
        for f, (_, test) in enumerate(folds):
            pred = np.einsum("tr,gar->tag", test_basis[test], coefs[f]) + y_mean
            errors += np.sum((pred - reference[test, None, None]) ** 2, axis=0)
        self.rmsecv_ = np.sqrt(errors / k)
        # First minimum in (components, ratio) order: fewest components, then smallest penalty.
        a, g = np.unravel_index(int(np.argmin(self.rmsecv_)), self.rmsecv_.shape)
        self.n_components_, self.ratio_, self.gamma_ = a + 1, float(ratios[g]), float(gammas[g])

        directions, sq_values = _difference_directions(delta_basis, k)
        coef = gct_path(
            X_basis, yc, directions[None], sq_values[None], np.array([self.gamma_]), a + 1
        )[0, 0, -1]
        self.coef_ = stacked.T @ (dual @ coef)
        self.intercept_ = float(y_mean - self.coef_ @ x_mean)
        return self

    def predict(self, X):
        check_is_fitted(self, "coef_")
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_
