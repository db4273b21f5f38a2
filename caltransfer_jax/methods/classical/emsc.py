"""Extended multiplicative signal correction (EMSC) and a zero-shot transfer method built on it.

EMSC (Martens & Stark, "Extended multiplicative signal correction and spectral interference
subtraction", J. Pharm. Biomed. Anal. 9(8), 625–635, 1991; Afseth & Kohler, "Extended
multiplicative signal correction in vibrational spectroscopy, a tutorial", Chemom. Intell. Lab.
Syst. 117, 138–144, 2012) models every spectrum x (p points) as a scaled reference spectrum r on
a smooth baseline, plus known interferent spectra d_1 … d_k, plus a residual e:

    x = b r + Σ_{l=0..L} a_l ν^l + Σ_i g_i d_i + e,

with ν the column index mapped linearly onto [−1, 1] (ν_j = 2j / (p − 1) − 1) and L the
polynomial order. The coefficients (b, a, g) are the least-squares solution of x ≈ M c on the
design matrix M = [r, 1, ν, …, ν^L, d_1, …, d_k] (p × (L + 2 + k)), the same for every spectrum,
so all spectra are fitted at once through the pseudo-inverse of M. The corrected spectrum

    x_corr = (x − Σ_l a_l ν^l − Σ_i g_i d_i) / b = r + e / b

removes the baseline and the interferents and undoes the multiplicative (path-length, scatter)
factor b, leaving the reference plus the scaled residual, which carries the chemical variation
that M does not explain. A spectrum whose b is not positive (no usable multiplicative factor) is
refused rather than corrected.

`EMSCDIPLS` uses EMSC for zero-shot transfer: the reference is the mean of the master
calibration spectra and the one interferent is the difference between the mean of the unlabelled
target spectra and that master mean, the average distortion the target instrument adds. That
difference is first orthogonalised against the reference and the baseline polynomials (the part
along them is already modelled as scaling and baseline; Martens et al. likewise orthogonalise
interferent spectra against the reference so they do not remove the analyte signal), and left
out when nothing remains. Master and target spectra are corrected alike, and unsupervised di-PLS
(`dipls.UnsupervisedDIPLS`) is fitted on the corrected master calibration with the corrected
unlabelled target spectra as the target domain.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from caltransfer_jax.methods.base import MasterModelMethod
from caltransfer_jax.methods.classical.dipls import UnsupervisedDIPLS


def polynomial_baseline(p: int, order: int) -> np.ndarray:
    """(p, order + 1) columns 1, ν, …, ν^order on ν = the column index scaled to [−1, 1]."""
    nu = np.linspace(-1.0, 1.0, p) if p > 1 else np.zeros(1)
    return nu[:, None] ** np.arange(order + 1)


def _finite_2d(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"EMSC: {name} must be a 2-D array (n, p); got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        rows = np.flatnonzero(~np.all(np.isfinite(X), axis=1))
        raise ValueError(f"EMSC: {name} has non-finite values (first in row {int(rows[0])})")
    return X


class EMSC(TransformerMixin, BaseEstimator):
    """Extended multiplicative signal correction (see the module docstring for the model).

    Args:
      reference: (p,) reference spectrum; None uses the mean of the spectra passed to `fit`.
      poly_order: L ≥ 0, the order of the polynomial baseline.
      interferents: (k, p) (or (p,) for one) interferent spectra to subtract, or None.

    Attributes:
      reference_: (p,) the reference spectrum used.
      design_: (p, L + 2 + k) the design matrix [r, 1, ν, …, ν^L, d_1, …, d_k].
    """

    def __init__(self, reference=None, poly_order: int = 2, interferents=None):
        self.reference = reference
        self.poly_order = poly_order
        self.interferents = interferents

    def fit(self, X, y=None):
        X = _finite_2d(X, "X")
        if int(self.poly_order) != self.poly_order or self.poly_order < 0:
            raise ValueError(f"EMSC: poly_order must be an integer ≥ 0; got {self.poly_order!r}")
        p = X.shape[1]
        if self.reference is None:
            if len(X) == 0:
                raise ValueError("EMSC: fit needs at least one spectrum to form the reference")
            reference = X.mean(axis=0)
        else:
            reference = np.asarray(self.reference, dtype=np.float64)
            if reference.shape != (p,):
                raise ValueError(
                    f"EMSC: reference must have shape ({p},) like X; got {reference.shape}"
                )
            if not np.all(np.isfinite(reference)):
                raise ValueError("EMSC: reference has non-finite values")
        columns = [reference[:, None], polynomial_baseline(p, int(self.poly_order))]
        if self.interferents is not None:
            interferents = np.atleast_2d(np.asarray(self.interferents, dtype=np.float64))
            if interferents.ndim != 2 or interferents.shape[1] != p:
                raise ValueError(
                    f"EMSC: interferents must have shape (k, {p}); got {interferents.shape}"
                )
            if not np.all(np.isfinite(interferents)):
                raise ValueError("EMSC: interferents have non-finite values")
            columns.append(interferents.T)
        design = np.hstack(columns)
        if design.shape[1] > p:
            raise ValueError(
                f"EMSC: {design.shape[1]} model terms but only {p} points per spectrum"
            )
        # Rank check on unit-norm columns, so the scale of the reference does not matter.
        norms = np.linalg.norm(design, axis=0)
        if np.any(norms == 0):
            raise ValueError("EMSC: the reference or an interferent spectrum is all zeros")
        singular = np.linalg.svd(design / norms, compute_uv=False)
        if singular[-1] < 1e-10 * singular[0]:
            raise ValueError(
                "EMSC: the design [reference, baseline, interferents] is rank deficient; an "
                "interferent is (nearly) a combination of the reference and the baseline"
            )
        self.reference_ = reference
        self.design_ = design
        self.n_baseline_ = int(self.poly_order) + 1
        self.pinv_ = np.linalg.pinv(design / norms) / norms[:, None]  # (q, p)
        return self

    def coefficients(self, X) -> np.ndarray:
        """(n, L + 2 + k) least-squares coefficients (b, a_0 … a_L, g_1 … g_k) per spectrum."""
        check_is_fitted(self, "design_")
        X = _finite_2d(X, "X")
        p = self.design_.shape[0]
        if X.shape[1] != p:
            raise ValueError(f"EMSC: X has {X.shape[1]} columns; the model was fitted on {p}")
        return X @ self.pinv_.T

    def transform(self, X):
        coef = self.coefficients(X)
        X = np.asarray(X, dtype=np.float64)
        b = coef[:, 0]
        bad = ~np.isfinite(b) | (b <= 0)
        if np.any(bad):
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"EMSC: row {row} has multiplicative coefficient b = {b[row]:.3g} (must be a "
                "finite positive number); the spectrum does not resemble the reference"
            )
        return (X - coef[:, 1:] @ self.design_[:, 1:].T) / b[:, None]


class EMSCDIPLS(MasterModelMethod):
    """Zero-shot: EMSC against the master mean with the target − master mean shift as interferent,
    then unsupervised di-PLS on the corrected spectra.

    Args:
      master: the master PLS calibration (fitted or not); as for `UnsupervisedDIPLS`, it supplies
        the number of latent variables.
      poly_order: order of the EMSC polynomial baseline.

    Attributes:
      emsc_: the fitted `EMSC` applied to master and target spectra.
      dipls_: the `UnsupervisedDIPLS` fitted on the corrected spectra.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_unlabelled"})

    def __init__(self, master=None, poly_order: int = 2):
        super().__init__(master)
        self.poly_order = poly_order

    def fit(self, X, y, **transfer):
        X, y, t = self._check(X, y, transfer)
        target = t["X_target_unlabelled"]
        reference = X.mean(axis=0)
        shift = target.mean(axis=0) - reference
        # Keep only the part of the shift that scaling and baseline cannot explain.
        span = np.hstack([reference[:, None], polynomial_baseline(X.shape[1], self.poly_order)])
        basis, _ = np.linalg.qr(span)
        shift = shift - basis @ (basis.T @ shift)
        keep = np.linalg.norm(shift) > 1e-8 * np.linalg.norm(reference)
        self.emsc_ = EMSC(
            reference=reference,
            poly_order=self.poly_order,
            interferents=shift[None, :] if keep else None,
        ).fit(X)
        self.dipls_ = UnsupervisedDIPLS(self.master).fit(
            self.emsc_.transform(X), y, X_target_unlabelled=self.emsc_.transform(target)
        )
        return self

    def transform(self, X_target):
        check_is_fitted(self, "emsc_")
        return self.emsc_.transform(X_target)

    def predict(self, X_target):
        return self.dipls_.predict(self.transform(X_target))
