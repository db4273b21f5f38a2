"""Simple corrections around an unchanged master calibration.

NoTransfer            the master model applied to target spectra as they are;
MeanRecentring        zero-shot: target spectra re-centred from the target's own mean
                      (of unlabelled spectra) onto the master calibration mean;
StandardsOffset       an additive spectral correction from transfer standards (e.g. glass)
                      measured on both instruments: mean(master standards) − mean(target ones);
SlopeBiasCorrection   SBC: the master model's predictions of the target transfer spectra
                      regressed onto their reference values, y ≈ a + b ŷ.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from caltransfer_jax.methods.base import MasterModelMethod


class NoTransfer(MasterModelMethod):
    """The master calibration applied unchanged to the target instrument."""

    def fit(self, X, y, **transfer):
        X, y, _ = self._check(X, y, transfer)
        self.master_ = self._master(X, y)
        return self

    def predict(self, X_target):
        return self.master_.predict(X_target)


class MeanRecentring(MasterModelMethod):
    """Zero-shot: x − mean(unlabelled target spectra) + mean(master calibration spectra)."""

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_unlabelled"})

    def fit(self, X, y, **transfer):
        X, y, t = self._check(X, y, transfer)
        self.master_ = self._master(X, y)
        self.shift_ = X.mean(axis=0) - t["X_target_unlabelled"].mean(axis=0)
        return self

    def predict(self, X_target):
        return self.master_.predict(np.asarray(X_target) + self.shift_)


class StandardsOffset(MasterModelMethod):
    """Additive correction from standards measured on both instruments (no pairing needed)."""

    requires: ClassVar[frozenset[str]] = frozenset({"X_master_standards", "X_target_standards"})

    def fit(self, X, y, **transfer):
        X, y, t = self._check(X, y, transfer)
        self.master_ = self._master(X, y)
        self.shift_ = t["X_master_standards"].mean(axis=0) - t["X_target_standards"].mean(axis=0)
        return self

    def predict(self, X_target):
        return self.master_.predict(np.asarray(X_target) + self.shift_)


class SlopeBiasCorrection(MasterModelMethod):
    """SBC: y ≈ a + b ŷ fitted on the target transfer samples' predictions and references."""

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_transfer", "y_transfer"})

    def fit(self, X, y, **transfer):
        X, y, t = self._check(X, y, transfer)
        self.master_ = self._master(X, y)
        predicted = self.master_.predict(t["X_target_transfer"])
        reference = t["y_transfer"]
        spread = np.var(predicted)
        # Slope needs spread in the predictions; with none, only the bias is identifiable.
        self.slope_ = (
            float(np.cov(predicted, reference, bias=True)[0, 1] / spread) if spread > 0 else 1.0
        )
        self.bias_ = float(reference.mean() - self.slope_ * predicted.mean())
        return self

    def predict(self, X_target):
        return self.bias_ + self.slope_ * self.master_.predict(X_target)
