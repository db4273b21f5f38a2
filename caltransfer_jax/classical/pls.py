"""PLS1 regression with the number of latent variables chosen by cross-validation.

NIPALS PLS1 on centred data (no column scaling, as is usual for spectra); one fit yields the
regression vectors for every number of latent variables at once, so cross-validation over
1…A latent variables costs one fit per fold.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted


def pls1_path(X: np.ndarray, y: np.ndarray, max_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Regression vectors of PLS1 for 1…A latent variables.

    Args:
      X: (n, p) spectra.
      y: (n,) property values.
      max_components: A, the largest number of latent variables; fewer are returned when the
        data run out of rank.

    Returns:
      coefs: (a, p) regression vectors, row j using j + 1 latent variables.
      intercepts: (a,) matching intercepts (so that y ≈ X @ coefs[j] + intercepts[j]).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x_mean, y_mean = X.mean(axis=0), y.mean()
    Xd = X - x_mean
    yc = y - y_mean
    scale = np.linalg.norm(Xd) + 1e-300
    weights, loadings, y_loadings = [], [], []
    for _ in range(min(max_components, X.shape[0] - 1, X.shape[1])):
        w = Xd.T @ yc
        norm = np.linalg.norm(w)
        # Stop once the deflated X no longer covaries with y (rank exhausted).
        if norm <= 1e-12 * scale * (np.linalg.norm(yc) + 1e-300):
            break
        w /= norm
        t = Xd @ w
        tt = t @ t
        if tt <= 1e-24 * scale**2:
            break
        p = Xd.T @ t / tt
        weights.append(w)
        loadings.append(p)
        y_loadings.append((yc @ t) / tt)
        Xd = Xd - np.outer(t, p)
    if not weights:
        coefs = np.zeros((1, X.shape[1]))
        return coefs, np.array([y_mean])
    W = np.stack(weights, axis=1)
    P = np.stack(loadings, axis=1)
    q = np.asarray(y_loadings)
    # R = W (PᵀW)⁻¹; PᵀW is upper triangular, so its leading blocks give every smaller model.
    R = W @ np.linalg.inv(P.T @ W)
    coefs = np.cumsum(R * q, axis=1).T
    intercepts = y_mean - coefs @ x_mean
    return coefs, intercepts


def cv_folds(n: int, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold splits (leave-one-out when n is at most `n_folds`)."""
    if n <= n_folds:
        return [(np.delete(np.arange(n), i), np.array([i])) for i in range(n)]
    return list(KFold(n_folds, shuffle=True, random_state=seed).split(np.arange(n)))


def cv_predictions(
    X: np.ndarray, y: np.ndarray, max_components: int, n_folds: int, seed: int
) -> np.ndarray:
    """Cross-validated predictions for 1…A latent variables, shape (n, A).

    Numbers of latent variables that some fold cannot support are left as NaN.
    """
    pred = np.full((len(y), max_components), np.nan)
    for train, test in cv_folds(len(y), n_folds, seed):
        coefs, intercepts = pls1_path(X[train], y[train], max_components)
        pred[test, : coefs.shape[0]] = X[test] @ coefs.T + intercepts
    return pred


def rmse_columns(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Root mean squared error of each column of `pred` against y; +inf for incomplete columns."""
    with np.errstate(invalid="ignore"):
        rmse = np.sqrt(np.mean((pred - y[:, None]) ** 2, axis=0))
    return np.where(np.isnan(rmse), np.inf, rmse)


def cv_press(
    X: np.ndarray, y: np.ndarray, max_components: int, n_folds: int, seed: int
) -> np.ndarray:
    """Cross-validated RMSE for 1…A latent variables, shape (A,); +inf where unsupported."""
    return rmse_columns(cv_predictions(X, y, max_components, n_folds, seed), y)


def choose_components(rmsecv: np.ndarray, tolerance: float) -> int:
    """Fewest latent variables whose RMSECV is within (1 + tolerance) of the minimum."""
    best = np.min(rmsecv)
    return int(np.flatnonzero(rmsecv <= best * (1.0 + tolerance))[0]) + 1


class PLSRegressionCV(RegressorMixin, BaseEstimator):
    """PLS1 whose number of latent variables is chosen by K-fold cross-validation.

    Args:
      max_components: the largest number of latent variables tried.
      n_folds: folds of the cross-validation (leave-one-out for at most this many samples).
      tolerance: parsimony; the fewest latent variables within (1 + tolerance) × min RMSECV.
      seed: seed of the fold assignment.
      n_components: a fixed number of latent variables, skipping cross-validation.
    """

    def __init__(
        self,
        max_components: int = 20,
        n_folds: int = 10,
        tolerance: float = 0.0,
        seed: int = 0,
        n_components: int | None = None,
    ):
        self.max_components = max_components
        self.n_folds = n_folds
        self.tolerance = tolerance
        self.seed = seed
        self.n_components = n_components

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).ravel()
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        if self.n_components is not None:
            chosen = self.n_components
            self.rmsecv_ = self.cv_residuals_ = None
        else:
            limit = min(self.max_components, max(1, len(y) - 2))
            pred = cv_predictions(X, y, limit, self.n_folds, self.seed)
            self.rmsecv_ = rmse_columns(pred, y)
            chosen = choose_components(self.rmsecv_, self.tolerance)
            # Held-out residuals of the chosen model size, for conformal intervals.
            self.cv_residuals_ = y - pred[:, chosen - 1]
        coefs, intercepts = pls1_path(X, y, chosen)
        self.n_components_ = coefs.shape[0]
        self.coef_ = coefs[-1]
        self.intercept_ = float(intercepts[-1])
        return self

    def predict(self, X):
        check_is_fitted(self, "coef_")
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_
