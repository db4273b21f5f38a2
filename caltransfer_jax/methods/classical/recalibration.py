"""Calibrations that use target-instrument labels directly.

TargetPLS     PLS on the labelled target transfer samples only; with the whole labelled
              target pool as "transfer set" it is the full-recalibration reference;
AugmentedPLS  PLS on the master calibration set augmented with the labelled target transfer
              samples, so the model sees both instruments.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import clone

from caltransfer_jax.methods.base import TransferMethod
from caltransfer_jax.methods.classical.pls import PLSRegressionCV


class TargetPLS(TransferMethod):
    """PLS with CV-chosen latent variables on the target transfer samples alone."""

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_transfer", "y_transfer"})

    def __init__(self, pls: PLSRegressionCV | None = None):
        self.pls = pls

    def fit(self, X, y, **transfer):
        X, y, t = self._check(X, y, transfer)
        self.model_ = clone(self.pls or PLSRegressionCV()).fit(
            t["X_target_transfer"], t["y_transfer"]
        )
        return self

    def predict(self, X_target):
        return self.model_.predict(X_target)


class AugmentedPLS(TransferMethod):
    """PLS on master calibration ∪ target transfer samples (latent variables by CV)."""

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_transfer", "y_transfer"})

    def __init__(self, pls: PLSRegressionCV | None = None):
        self.pls = pls

    def fit(self, X, y, **transfer):
        X, y, t = self._check(X, y, transfer)
        self.model_ = clone(self.pls or PLSRegressionCV()).fit(
            np.vstack([X, t["X_target_transfer"]]), np.concatenate([y, t["y_transfer"]])
        )
        return self

    def predict(self, X_target):
        return self.model_.predict(X_target)
