"""`auto`: the transfer method chosen from the user's own transfer samples.

Which method transfers best changes with the data set, the property and k (corn m5→mp6
moisture: di-PLS at small k, GCT-PLS or DS at larger k; tablets assay: PDS). `AutoTransfer`
refits every candidate few-shot method without each fold of the k transfer samples
(`base.cross_validate_transfer`, 5 folds, leave-one-out below), takes the one whose held-out
target residuals have the smallest RMSE, and refits it on all k. Nothing but the master
calibration and the transfer samples is used, so the choice can be made by any user.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from caltransfer_jax.methods.base import TransferMethod, cross_validate_transfer

# The classical few-shot methods `auto` chooses among (DWPDS is left out for its cost).
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


class AutoTransfer(TransferMethod):
    """The candidate with the smallest cross-validated RMSE on the k transfer samples.

    Args:
        master: the fitted master calibration the candidates share; pls: their PLS template.
        context: what the registry's builders need (axis, modality, seed).
        candidates: registry names to choose among.
        seed: draws the folds.

    Attributes:
        chosen_: the chosen method's name; criterion_: name -> CV RMSE (standardised units);
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
        self.criterion_ = {}
        for spec in specs:
            build = self._builder(spec)
            if not build().requires <= set(arrays):
                continue
            cv = cross_validate_transfer(build, X, y, arrays, X[:0], self.seed)
            if cv is not None:
                self.criterion_[spec.name] = float(np.sqrt(np.mean(cv[1] ** 2)))
        if not self.criterion_:
            raise ValueError("auto: no candidate method could be cross-validated")
        self.chosen_ = min(self.criterion_, key=self.criterion_.get)
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
