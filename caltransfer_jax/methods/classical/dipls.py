"""Domain-invariant partial least squares (di-PLS): PLS whose latent variables ignore the domain.

di-PLS (Nikzad-Langerodi, Zellinger, Lughofer & Saminger-Platz, "Domain-invariant partial least
squares regression", Analytical Chemistry 90(11), 6693–6701, 2018) is PLS1 in which every weight
vector minimises ‖X − y wᵀ‖² + γ |wᵀ C w|, the PLS fit plus the difference between the variances
of the latent variable in the source and the target domain, C = Xsᵀ Xs / (ns − 1) −
Xtᵀ Xt / (nt − 1). With D = |C|, which replaces the eigenvalues of C by their absolute values (the
convex relaxation of Nikzad-Langerodi, Zellinger, Saminger-Platz & Moser, "Domain-invariant
regression under Beer–Lambert's law", ICMLA 2019, and Knowledge-Based Systems 210, 106447, 2020,
which keeps the problem convex for every γ), the minimiser is

    w ∝ (I + γ / (yᵀy) · D)⁻¹ Xᵀy,

with X, y the current (deflated) labelled data and Xs, Xt the current source and target spectra,
each centred on its own domain mean. Source and target spectra are deflated with their own
scores; target spectra are predicted after centring on the target mean. γ = 0 gives ordinary PLS.

Unsupervised di-PLS uses the labelled master calibration and unlabelled target spectra; the
semi-supervised form of the same paper adds labelled target samples (here the transfer samples)
to the labelled data.

The penalty defaults to the balancing heuristic of the authors' diPLSlib, which needs no labels
on the target instrument: per latent variable, γ makes the two terms of the objective equal at
the unpenalised (PLS) minimiser w = Xᵀy / yᵀy, γ = ‖X − y wᵀ‖² / wᵀDw. diPLSlib evaluates both
terms at the unit vector w / ‖w‖ instead, where ‖X − y wᵀ‖² adds quantities in the units of X
and of y, so its γ, and the model, change with the units of y; at the minimiser the balance is
unit-free and the model equivariant. The number of latent variables is the one cross-validation
chose for the master PLS calibration.

All domain quantities live in the row space of [Xs; Xt] (at most ns + nt dimensions), so each
latent variable needs one eigendecomposition of that size rather than of p × p.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.utils.validation import check_is_fitted

from caltransfer_jax.methods.base import MasterModelMethod


def regression_vectors(weights: np.ndarray, loadings: np.ndarray, y_loadings: np.ndarray):
    """PLS regression vectors for 1…A latent variables from weights W, loadings P and q.

    Works on stacks: W, P of shape (..., p, A) and q of shape (..., A) give (..., A, p), row j
    using j + 1 latent variables (R = W (PᵀW)⁻¹; PᵀW is upper triangular, so its leading blocks
    give every smaller model).
    """
    rotations = weights @ np.linalg.inv(np.swapaxes(loadings, -1, -2) @ weights)
    return np.swapaxes(np.cumsum(rotations * y_loadings[..., None, :], axis=-1), -1, -2)


def dipls_path(
    X: np.ndarray,
    y: np.ndarray,
    X_source: np.ndarray,
    X_target: np.ndarray,
    gamma: float | str,
    max_components: int,
) -> tuple[np.ndarray, np.ndarray]:
    """di-PLS regression vectors for 1…A latent variables, on data centred per domain.

    Args:
      X: (n, p) labelled spectra, each row centred on the mean of its domain.
      y: (n,) centred property values.
      X_source: (ns, p) source-domain spectra, centred.
      X_target: (nt, p) target-domain spectra, centred.
      gamma: the penalty γ ≥ 0, or "heuristic" to balance the two terms at the PLS minimiser of
        every latent variable.
      max_components: A; fewer are returned when the labelled data run out of rank.

    Returns:
      coefs: (a, p) regression vectors, row j using j + 1 latent variables.
      gammas: (a,) the penalty used for each latent variable.
    """
    X = np.array(X, dtype=np.float64)
    y = np.array(y, dtype=np.float64)
    ns, nt = len(X_source), len(X_target)
    if ns < 2 or nt < 2:
        raise ValueError("di-PLS needs at least two source and two target spectra")
    # Orthonormal basis Q = Zᵀ B of the domain row space, from the (ns + nt)² Gram matrix.
    Z = np.vstack([X_source / np.sqrt(ns - 1), X_target / np.sqrt(nt - 1)])
    gram_values, gram_vectors = np.linalg.eigh(Z @ Z.T)
    keep = gram_values > 1e-12 * max(gram_values[-1], 1e-300)
    basis = gram_vectors[:, keep] / np.sqrt(gram_values[keep])
    coords = gram_vectors[:, keep] * np.sqrt(gram_values[keep])  # Z Q
    # Deflation of each domain is a left projection of its rows; kept as explicit projectors.
    proj_s, proj_t = np.eye(ns), np.eye(nt)
    scale = np.linalg.norm(X) + 1e-300
    weights, loadings, y_loadings, gammas = [], [], [], []
    for _ in range(min(max_components, X.shape[0] - 1, X.shape[1])):
        v = X.T @ y
        v_norm = np.linalg.norm(v)
        if v_norm <= 1e-12 * scale * (np.linalg.norm(y) + 1e-300):
            break
        cs, ct = proj_s @ coords[:ns], proj_t @ coords[ns:]
        eigvals, eigvecs = np.linalg.eigh(cs.T @ cs - ct.T @ ct)
        eigvals = np.abs(eigvals)
        u = eigvecs.T @ (basis.T @ (Z @ v))  # v in the eigenbasis of D
        yy = y @ y
        if gamma == "heuristic":
            # Both terms at the PLS minimiser w = v / yᵀy: ‖X − y wᵀ‖² and wᵀDw.
            fit = max(np.sum(X**2) - v_norm**2 / yy, 0.0)
            discrepancy = eigvals @ u**2 / yy**2
            g = fit / discrepancy if discrepancy > 0 else 0.0
        else:
            g = float(gamma)
        c = g / yy
        # (I + c|D|)⁻¹ v = v − Q E diag(cλ / (1 + cλ)) Eᵀ Qᵀ v.
        w = v - Z.T @ (basis @ (eigvecs @ (c * eigvals / (1.0 + c * eigvals) * u)))
        w /= np.linalg.norm(w)
        t = X @ w
        tt = t @ t
        if tt <= 1e-24 * scale**2:
            break
        p = X.T @ t / tt
        q = (y @ t) / tt
        X -= np.outer(t, p)
        y -= q * t
        scores = basis.T @ (Z @ w)
        for proj, block in ((proj_s, cs), (proj_t, ct)):
            s = block @ scores
            s_norm = np.linalg.norm(s)
            if s_norm > 1e-12 * np.linalg.norm(block) * np.linalg.norm(scores):
                s /= s_norm
                proj -= np.outer(s, s)
        weights.append(w)
        loadings.append(p)
        y_loadings.append(q)
        gammas.append(g)
    if not weights:
        return np.zeros((1, X.shape[1])), np.zeros(1)
    coefs = regression_vectors(
        np.stack(weights, axis=1), np.stack(loadings, axis=1), np.asarray(y_loadings)
    )
    return coefs, np.asarray(gammas)


class UnsupervisedDIPLS(MasterModelMethod):
    """di-PLS from the labelled master calibration and unlabelled target spectra.

    Args:
      master: a master PLS calibration (fitted or not); it supplies the number of latent
        variables, chosen by cross-validation on the master data.
      gamma: the penalty γ, or "heuristic" (the default) for the label-free balancing rule.
      n_components: a fixed number of latent variables instead of the master's.

    Attributes:
      coef_, intercept_: the model ŷ = x · coef_ + intercept_ for target spectra.
      gamma_: the penalty used for each latent variable.
      n_components_: the number of latent variables.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_unlabelled"})

    def __init__(
        self, master=None, gamma: float | str = "heuristic", n_components: int | None = None
    ):
        super().__init__(master)
        self.gamma = gamma
        self.n_components = n_components

    def _labelled(self, Xs, yc, target_mean, y_mean, arrays):
        """The labelled data, centred per domain: here the master calibration alone."""
        return Xs, yc

    def fit(self, X, y, **transfer):
        X, y, arrays = self._check(X, y, transfer)
        if not (self.gamma == "heuristic" or float(self.gamma) >= 0):
            raise ValueError(f"gamma must be 'heuristic' or ≥ 0; got {self.gamma!r}")
        n_components = self.n_components or self._master(X, y).n_components_
        x_mean, y_mean = X.mean(axis=0), y.mean()
        target = arrays["X_target_unlabelled"]
        target_mean = target.mean(axis=0)
        Xs, yc = X - x_mean, y - y_mean
        X_labelled, y_labelled = self._labelled(Xs, yc, target_mean, y_mean, arrays)
        coefs, self.gamma_ = dipls_path(
            X_labelled, y_labelled, Xs, target - target_mean, self.gamma, n_components
        )
        self.n_components_ = len(self.gamma_)
        self.coef_ = np.ascontiguousarray(coefs[-1])  # a saved copy predicts the same bits
        # Target spectra are centred on the target mean, whose property mean is the master's.
        self.intercept_ = float(y_mean - self.coef_ @ target_mean)
        return self

    def predict(self, X):
        check_is_fitted(self, "coef_")
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_


class SemiSupervisedDIPLS(UnsupervisedDIPLS):
    """di-PLS that also learns from the labelled transfer samples on the target instrument.

    The semi-supervised form of Nikzad-Langerodi et al. (2018): the target transfer spectra,
    centred on the target mean, join the master calibration as labelled rows, so the weights
    covary with y on both instruments while the unlabelled target spectra alone define the
    target domain (in the benchmark they include the transfer samples' target spectra).
    Arguments as for `UnsupervisedDIPLS`.
    """

    requires: ClassVar[frozenset[str]] = frozenset(
        {"X_target_unlabelled", "X_target_transfer", "y_transfer"}
    )

    def _labelled(self, Xs, yc, target_mean, y_mean, arrays):
        X_labelled = np.vstack([Xs, arrays["X_target_transfer"] - target_mean])
        return X_labelled, np.concatenate([yc, arrays["y_transfer"] - y_mean])
