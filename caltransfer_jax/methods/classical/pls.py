"""PLS1 regression with the number of latent variables chosen by cross-validation.

NIPALS PLS1 on centred data (no column scaling, as is usual for spectra), computed in its kernel
form: every step of NIPALS lives in the span of the samples, so with n samples and p points the
work is on the n × n Gram matrix instead of n × p deflations. One fit yields the regression vectors
for every number of latent variables at once, and cross-validation reuses one Gram matrix for all
folds. The results equal scikit-learn's `PLSRegression(scale=False)` to round-off.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted


def _kernel_nipals(K: np.ndarray, yc: np.ndarray, max_components: int) -> tuple[np.ndarray, int]:
    """Dual PLS1 coefficients from a centred Gram matrix.

    With Xc the centred spectra and K = Xc Xcᵀ, NIPALS's weights are w_a = Xcᵀ v_a, its scores
    t_a = Q_a K v_a (Q_a projects out earlier scores) and its loadings Xcᵀ t_a / t_aᵀt_a. The
    regression vector with a latent variables is Xcᵀ β_a; this returns β (n, A) cumulatively.

    Returns:
      beta: (n, a) dual coefficients for 1…a latent variables.
      a: how many latent variables the data supported (≤ max_components).
    """
    n = K.shape[0]
    limit = min(max_components, n - 1)
    V, T, tts, qs = np.zeros((n, limit)), np.zeros((n, limit)), np.ones(limit), np.zeros(limit)
    y_res = yc.copy()
    scale = np.trace(K) + 1e-300
    a = 0
    while a < limit:
        norm2 = y_res @ K @ y_res  # ‖Xcᵀ Q y‖², the squared length of the raw weight vector
        if norm2 <= 1e-24 * scale * (yc @ yc + 1e-300):
            break  # X no longer covaries with what is left of y
        v = y_res / np.sqrt(norm2)
        t = K @ v
        t -= T[:, :a] @ ((T[:, :a].T @ t) / tts[:a])
        tt = t @ t
        if tt <= 1e-24 * scale:
            break
        V[:, a], T[:, a], tts[a] = v, t, tt
        qs[a] = (y_res @ t) / tt
        y_res = y_res - qs[a] * t
        a += 1
    if a == 0:
        return np.zeros((n, 1)), 0
    V, T, tts, qs = V[:, :a], T[:, :a], tts[:a], qs[:a]
    # PᵀW = diag(1/tᵀt) Tᵀ K V is upper triangular: its leading blocks give every smaller model.
    M = (T.T @ K @ V) / tts[:, None]
    beta = np.cumsum((V @ np.linalg.inv(M)) * qs, axis=1)
    return beta, a


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
    Xc = X - x_mean
    beta, a = _kernel_nipals(Xc @ Xc.T, y - y_mean, min(max_components, X.shape[1]))
    coefs = (Xc.T @ beta).T if a else np.zeros((1, X.shape[1]))
    return coefs, y_mean - coefs @ x_mean


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
    X = np.asarray(X, dtype=np.float64)
    # One Gram matrix for all folds; centring on the global mean first limits cancellation.
    Xg = X - X.mean(axis=0)
    G = Xg @ Xg.T
    pred = np.full((len(y), max_components), np.nan)
    for train, test in cv_folds(len(y), n_folds, seed):
        G_tt = G[np.ix_(train, train)]
        row_mean = G_tt.mean(axis=0)
        K = G_tt - row_mean[:, None] - row_mean[None, :] + row_mean.mean()
        G_st = G[np.ix_(test, train)]
        K_st = G_st - G_st.mean(axis=1, keepdims=True) - row_mean[None, :] + row_mean.mean()
        y_mean = y[train].mean()
        beta, a = _kernel_nipals(K, y[train] - y_mean, min(max_components, X.shape[1]))
        if a:
            pred[test, :a] = K_st @ beta + y_mean
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


def choose_components(pred: np.ndarray, y: np.ndarray, rule: str) -> int:
    """Number of latent variables from cross-validated predictions (n, A).

    'min': the lowest RMSECV. 'onesigma': the fewest latent variables whose RMSECV is within
    one standard error of the lowest, the standard error being sd(residuals) / √n of the best
    model (the parsimony rule of R's pls::selectNcomp).
    """
    rmse = rmse_columns(pred, y)
    best = int(np.argmin(rmse))
    if rule == "min":
        return best + 1
    if rule == "onesigma":
        residuals = y - pred[:, best]
        limit = rmse[best] + residuals.std(ddof=1) / np.sqrt(len(y))
        return int(np.flatnonzero(rmse <= limit)[0]) + 1
    raise ValueError(f"unknown rule {rule!r}; use 'min' or 'onesigma'")


class PLSRegressionCV(RegressorMixin, BaseEstimator):
    """PLS1 whose number of latent variables is chosen by K-fold cross-validation.

    Args:
      max_components: the largest number of latent variables tried.
      n_folds: folds of the cross-validation (leave-one-out for at most this many samples).
      rule: how the number of latent variables follows from RMSECV ('onesigma' or 'min').
      seed: seed of the fold assignment.
      n_components: a fixed number of latent variables, skipping cross-validation.
    """

    def __init__(
        self,
        max_components: int = 20,
        n_folds: int = 10,
        rule: str = "onesigma",
        seed: int = 0,
        n_components: int | None = None,
    ):
        self.max_components = max_components
        self.n_folds = n_folds
        self.rule = rule
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
            chosen = choose_components(pred, y, self.rule)
            # Held-out residuals of the chosen model size, for conformal intervals.
            self.cv_residuals_ = y - pred[:, chosen - 1]
        coefs, intercepts = pls1_path(X, y, chosen)
        self.n_components_ = coefs.shape[0]
        self.coef_ = np.ascontiguousarray(coefs[-1])  # a saved copy predicts the same bits
        self.intercept_ = float(intercepts[-1])
        return self

    def predict(self, X):
        check_is_fitted(self, "coef_")
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_
