"""`auto` and `auto_zero_shot`: the transfer method chosen from what the user has.

Which method transfers best changes with the data set, the property and k (corn m5→mp6
moisture: di-PLS at small k, GCT-PLS or DS at larger k; tablets assay: PDS). `AutoTransfer`
refits every candidate few-shot method without each fold of the k transfer samples
(`base.cross_validate_transfer`, 5 folds, leave-one-out below; the same folds for every
candidate) and refits the chosen one on all k. The choice: the candidate with the smallest
held-out RMSE replaces the default, semi-supervised di-PLS, only where it is better by more than
one standard error of the paired difference of their squared held-out errors (the
one-standard-error rule, paired because every candidate predicts the same held-out samples).
Why a default, and that one: with k = 5–30 held-out residuals the CV ranking of ten methods is
noisy, and the minimum of ten noisy estimates picks a lucky method as often as a good one (one
such pick fell to R² −5 on tablet weight); semi-supervised di-PLS is the candidate that also
learns from the unlabelled target pool, so it depends least on which k samples were measured.
Nothing but the master calibration and the transfer samples is used, so the choice can be made
by any user.

`AutoZeroShot` (k = 0: no target labels) chooses among the zero-shot methods by a label-free
criterion: the Wasserstein-1 distance between the distribution of a candidate's predictions on
the unlabelled target pool and that of the master calibration's cross-validated predictions on
the master pool. Why: every zero-shot method already assumes that the target pool is a sample of
the master's population (mean re-centring equates the means, di-PLS the covariances); under that
assumption a correct transfer predicts the target pool with the distribution the master
calibration has on its own population out of sample, while a transfer error e shifts the
predictions (bias) or widens them (var ŷ = var y_cal-pred + var e for errors independent of the
property). The criterion is blind to errors that leave the distribution unchanged (e.g. the
right distribution assigned to the wrong samples), and it is meaningless when the target pool
is not the same population — the cases it cannot see are those no label-free rule can.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.stats import wasserstein_distance

from caltransfer_jax.methods.base import TransferMethod, cross_validate_transfer

# The classical few-shot methods `auto` chooses among (DWPDS is left out for its cost), and the
# one it keeps unless another is clearly better on the transfer samples.
DEFAULT = "dipls_semisupervised"
CANDIDATES = (
    "sbc",
    "ds",
    "pds",
    "dipls_semisupervised",
    "gct_pls",
    "pfce_ns",
    "pfce_ss",
    "pfce_fs",
    "target_pls",
    "augmented_pls",
)
# `auto_model` (a pretrained export given): the model's few-shot rows join the candidates. The
# same rule and default, so a model row is chosen only where it is clearly better on the user's
# transfer samples. (Both on one axis: the classical candidates compare spectra point by point.)
MODEL_CANDIDATES = CANDIDATES + ("model_dipls_semisupervised", "model_lora")
# The zero-shot methods `auto_zero_shot` chooses among (standards_offset where standards exist).
ZERO_SHOT_CANDIDATES = ("mean_recentring", "dipls", "emsc_dipls", "standards_offset")


def master_cv_predictions(master, y) -> np.ndarray | None:
    """The master calibration's cross-validated predictions of its labels `y` (the reference
    distribution of the label-free criterion); None where it holds no CV residuals for them."""
    residuals = getattr(master, "cv_residuals_", None)
    if residuals is None or len(residuals) != len(y):
        return None
    return np.asarray(y, dtype=np.float64) - np.asarray(residuals)


def distance_to_master(predicted, reference: np.ndarray) -> float:
    """The label-free criterion (module docstring): Wasserstein-1 between predictions on the
    unlabelled target pool and `master_cv_predictions`."""
    return float(wasserstein_distance(np.asarray(predicted, dtype=np.float64).ravel(), reference))


class AutoTransfer(TransferMethod):
    """The default candidate unless another has a clearly smaller cross-validated RMSE on the k
    transfer samples (module docstring: the rule and why).

    Args:
        master: the fitted master calibration the candidates share; pls: their PLS template.
        context: what the registry's builders need (axis, modality, seed).
        candidates: registry names to choose among.
        seed: draws the folds.

    Attributes:
        chosen_: the chosen method's name; criterion_: name -> CV RMSE (standardised units);
        margin_: the best candidate's paired advantage over the default and its standard error
        (squared-error units), or None where the default could not be cross-validated;
        method_: the chosen method refitted on all transfer samples.
    """

    requires: ClassVar[frozenset[str]] = frozenset(
        {"X_master_transfer", "X_target_transfer", "y_transfer"}
    )

    def __init__(self, master=None, pls=None, context=None, candidates=CANDIDATES, seed=0):
        self.master = master
        self.pls = pls
        self.context = context
        self.candidates = candidates
        self.seed = seed

    def fit(self, X, y, **transfer):
        from caltransfer_jax.methods import registry  # the registry builds `auto` itself

        X, y, arrays = self._check(X, y, transfer)
        specs = registry.get(self.candidates)
        self.criterion_, squared = {}, {}
        for spec in specs:
            build = self._builder(spec)
            if not build().requires <= set(arrays):
                continue
            cv = cross_validate_transfer(build, X, y, arrays, X[:0], self.seed)
            if cv is not None:
                squared[spec.name] = cv[1] ** 2
                self.criterion_[spec.name] = float(np.sqrt(np.mean(squared[spec.name])))
        if not self.criterion_:
            raise ValueError("auto: no candidate method could be cross-validated")
        best = min(self.criterion_, key=self.criterion_.get)
        self.chosen_, self.margin_ = best, None
        if DEFAULT in squared and best != DEFAULT:
            gain = squared[DEFAULT] - squared[best]  # per held-out sample, paired
            se = float(gain.std(ddof=1) / np.sqrt(gain.size)) if gain.size > 1 else np.inf
            self.margin_ = (float(gain.mean()), se)
            if not gain.mean() > se:
                self.chosen_ = DEFAULT
        (spec,) = registry.get([self.chosen_])
        self.method_ = self._builder(spec)().fit(X, y, **arrays)
        return self

    def _builder(self, spec):
        return lambda: spec.build(self.master, self.pls, self.context or {})

    def chosen_builder(self):
        """() -> an unfitted copy of the chosen method (its intervals are cross-validated with
        the choice held fixed, so slightly optimistic)."""
        from caltransfer_jax.methods import registry

        (spec,) = registry.get([self.chosen_])
        return self._builder(spec)

    def predict(self, X):
        return self.method_.predict(X)


class AutoZeroShot(TransferMethod):
    """The zero-shot candidate whose target-pool predictions are distributed most like the
    master calibration's out-of-sample predictions (Wasserstein-1; module docstring: why).

    Args:
        master: the fitted master calibration (its `cv_residuals_` give the reference
            distribution); pls: the candidates' PLS template; context: the registry's context.
        candidates: registry names to choose among (those whose inputs are missing are skipped).

    Attributes:
        chosen_: the chosen method's name; criterion_: name -> distance (standardised units);
        method_: the chosen method, fitted.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_unlabelled"})

    def __init__(self, master=None, pls=None, context=None, candidates=ZERO_SHOT_CANDIDATES):
        self.master = master
        self.pls = pls
        self.context = context
        self.candidates = candidates

    def fit(self, X, y, **transfer):
        from caltransfer_jax.methods import registry

        X, y, arrays = self._check(X, y, transfer)
        reference = master_cv_predictions(self.master, y)
        if reference is None:
            raise ValueError(
                "auto_zero_shot needs the master calibration's cross-validated residuals on the "
                "master spectra it is given (fit the master with cross-validation on X)"
            )
        pool = arrays["X_target_unlabelled"]
        self.criterion_, fitted = {}, {}
        for spec in registry.get(self.candidates):
            method = spec.build(self.master, self.pls, self.context or {})
            if not method.requires <= set(arrays):
                continue
            fitted[spec.name] = method.fit(X, y, **arrays)
            self.criterion_[spec.name] = distance_to_master(method.predict(pool), reference)
        if not self.criterion_:
            raise ValueError("auto_zero_shot: no candidate method has the inputs it needs")
        self.chosen_ = min(self.criterion_, key=self.criterion_.get)
        self.method_ = fitted[self.chosen_]
        return self

    def predict(self, X):
        return self.method_.predict(X)
