"""The foundation model as `TransferMethod`s, so the benchmark runs it like any classical method.

Each method fits, on the master pool, a PLS head on the frozen export's features (components by
CV; its CV residuals serve the benchmark's conformal intervals), then adapts LoRA adapters to the
target with what the method may see:

- `ModelFrozen` (k = 0): no adaptation — the master head on the base model's features.
- `ModelTTT` (k = 0): test-time training on the unlabelled target pool (`model.ttt`), then the
  remaining mean difference between the master pool's base features and the target pool's
  adapted features is removed.
- `ModelLoRA` (k ≥ 2): few-shot training on the k transfer pairs and labels (`model.fewshot`,
  its length chosen by cross-validation over the pairs), then the remaining mean difference
  between each transfer sample's master features and its adapted target features is removed.
  Its conformal scores (`conformity_scores_`) are those cross-validated residuals on the target
  transfer samples, not the master's CV residuals.
- `ModelDIPLS` (k = 0) and `ModelDIPLSSemiSupervised` (k > 0): no adaptation; the head is
  di-PLS on the frozen features instead of PLS (unlabelled target pool; plus the k transfer
  samples) — the domain-invariant head on the model's representation. The semi-supervised
  head's conformity scores are its residuals on the transfer samples with the head refitted
  without each fold of them. `ModelEMSCDIPLS` (k = 0) puts EMSC before the unsupervised
  di-PLS, as the classical `emsc_dipls` does on raw spectra.

Why the final mean shift: the model reads standardised spectra, and the features are returned to
each spectrum's own level and scale outside it (`model.adaptable`), so no adapter can move a
level difference between instruments; a mean shift in feature space can, from the same label-free
(zero-shot) or paired (few-shot) data the adaptation saw.

Models and compiled steps are cached per process (`adaptable_model`), so only the first transfer
of a worker pays for loading and compiling.
"""

from __future__ import annotations

import functools
import json
from typing import ClassVar

import ml_collections
import numpy as np

from caltransfer_jax.methods.base import TransferMethod, cross_validate_transfer
from caltransfer_jax.methods.classical import dipls
from caltransfer_jax.methods.classical.emsc import EMSCDIPLS
from caltransfer_jax.methods.classical.pls import PLSRegressionCV
from caltransfer_jax.methods.model import guard
from caltransfer_jax.methods.model.adaptable import AdaptableModel
from caltransfer_jax.methods.model.fewshot import few_shot
from caltransfer_jax.methods.model.grid import ModelGrid
from caltransfer_jax.methods.model.ttt import run_ttt
from caltransfer_jax.models.export import resolve


@functools.cache
def _adaptable(settings_json: str) -> AdaptableModel:
    settings = ml_collections.ConfigDict(json.loads(settings_json))
    return AdaptableModel(settings.init, settings.lora, settings.features)


def adaptable_model(
    settings: ml_collections.ConfigDict,
    wavenumber: np.ndarray,
    modality: str,
    target_wavenumber: np.ndarray | None = None,
) -> tuple[AdaptableModel, ModelGrid, ModelGrid]:
    """The cached adaptable model for `settings` (configs/adapt.py `model_config`) and the grids
    of the master and the target instrument (the same where they share an axis)."""
    # The grids need only the export's data config, read before the model is built.
    config = _export_config(settings.init)
    target_wavenumber = wavenumber if target_wavenumber is None else target_wavenumber
    master = ModelGrid(config, wavenumber, modality, other=target_wavenumber)
    target = ModelGrid(config, target_wavenumber, modality, other=wavenumber)
    return _adaptable(settings.to_json(sort_keys=True)), master, target


@functools.cache
def _export_config(init: str) -> ml_collections.ConfigDict:
    path = resolve(init) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{init}: not a model export (no config.json)")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


class ModelMethod(TransferMethod):
    """Shared part: the master head on base features and prediction with the fitted adapters.

    Args:
        settings: the adaptation settings (configs/adapt.py `model_config()`), as a dict.
        wavenumber: (p,) axis of the master spectra the method will see, in cm⁻¹.
        modality: 'NIR', 'IR' or 'Raman'.
        seed: seeds the adaptation's draws (held-out part, batches, masks).
        target_wavenumber: (q,) axis of the target spectra where it differs (another range or
            step); None: the master's.
        master: the master PLS calibration on the same master spectra, if one is fitted
            already (the guard's fallback reuses it, where the two instruments share an axis
            and it holds cross-validation residuals, instead of fitting its own).
    """

    def __init__(
        self,
        settings: dict,
        wavenumber: np.ndarray,
        modality: str,
        seed: int = 0,
        target_wavenumber: np.ndarray | None = None,
        master: PLSRegressionCV | None = None,
    ):
        self.settings = settings
        self.wavenumber = wavenumber
        self.modality = modality
        self.seed = seed
        self.target_wavenumber = target_wavenumber
        self.master = master

    def fit(self, X, y, **transfer):
        target = None if self.target_wavenumber is None else len(self.target_wavenumber)
        X, y, arrays = self._check(X, y, transfer, target_columns=target)
        settings = ml_collections.ConfigDict(self.settings)
        self.adaptable_, self.master_grid_, self.grid_ = adaptable_model(
            settings, self.wavenumber, self.modality, self.target_wavenumber
        )
        model = self.adaptable_
        master = self.master_grid_(X)
        features = model.features_of(model.initial, master)
        self.model_ = self._fit_head(features, y, arrays, settings)
        self.adapters_, self.log_ = self._adapt(model, master, features, arrays, settings)
        self.shift_ = self._shift(features, arrays)
        self.fallback_ = None
        if "X_target_unlabelled" in arrays:
            self.guard_, self.fallback_ = guard.check(
                self, X, y, arrays, self.model_.predict(features)
            )
        return self

    def restore(self, head, adapters: dict, shift, fallback=None) -> ModelMethod:
        """This method as fitted before: its head, adapter weights, feature shift and guard
        fallback (from a saved transfer), without adapting again."""
        self.adaptable_, self.master_grid_, self.grid_ = adaptable_model(
            ml_collections.ConfigDict(self.settings),
            self.wavenumber,
            self.modality,
            self.target_wavenumber,
        )
        self.model_, self.adapters_, self.shift_, self.log_ = head, adapters, shift, []
        self.fallback_ = fallback
        return self

    def _fit_head(self, features, y, arrays, settings):
        """The calibration head on the master pool's base features: PLS, components by CV."""
        return PLSRegressionCV(seed=self.seed, **settings.head).fit(features, y)

    def _base_features(self, X) -> np.ndarray:
        """Base-model features of (m, q) target spectra."""
        return self.adaptable_.features_of(self.adaptable_.initial, self.grid_(np.asarray(X)))

    def _adapt(self, model, master, features, arrays, settings) -> tuple[dict, list[dict]]:
        """(adapters, log) from the master inputs, their base features and the transfer data.

        The base: no adaptation.
        """
        return model.initial, []

    def _shift(self, master_features: np.ndarray, arrays: dict) -> np.ndarray | float:
        """Feature offset added before the head (0: none)."""
        return 0.0

    def features(self, X) -> np.ndarray:
        """Adapted features of (n, q) target spectra, shifted, as the head reads them."""
        features = self.adaptable_.features_of(self.adapters_, self.grid_(np.asarray(X)))
        return features + self.shift_

    def predict(self, X):
        if getattr(self, "fallback_", None) is not None:
            return self.fallback_.predict(X)  # the guard found this transfer unsafe
        return self.model_.predict(self.features(X))


class ModelFrozen(ModelMethod):
    """The master head on the base model's features; no adaptation (the zero-shot baseline)."""


class ModelTTT(ModelMethod):
    """Zero-shot: test-time training on the unlabelled target spectra."""

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_unlabelled"})

    def _adapt(self, model, master, features, arrays, settings):
        target = self.grid_(arrays["X_target_unlabelled"])
        return run_ttt(model, master, features, target, settings.ttt, self.seed)

    def _shift(self, master_features, arrays):
        target = self.adaptable_.features_of(
            self.adapters_, self.grid_(arrays["X_target_unlabelled"])
        )
        return master_features.mean(0) - target.mean(0)


class ModelLoRA(ModelMethod):
    """Few-shot: LoRA on the k transfer pairs and their labels."""

    requires: ClassVar[frozenset[str]] = frozenset(
        {"X_master_transfer", "X_target_transfer", "y_transfer"}
    )

    def _adapt(self, model, master, features, arrays, settings):
        head = (self.model_.coef_, self.model_.intercept_)
        adapters, log, residuals = few_shot(
            model,
            master,
            features,
            self.master_grid_(arrays["X_master_transfer"]),
            self.grid_(arrays["X_target_transfer"]),
            arrays["y_transfer"],
            head,
            settings.few_shot,
            self.seed,
        )
        # Conformity scores on the target instrument: each transfer sample's residual from the
        # adapters (and pair shift) fitted without its fold, at the chosen step (below 9 scores
        # a 90 % interval is unbounded, as split-conformal must be).
        self.conformity_scores_ = residuals
        return adapters, log

    def _shift(self, master_features, arrays):
        model = self.adaptable_
        master = model.features_of(model.initial, self.master_grid_(arrays["X_master_transfer"]))
        target = model.features_of(self.adapters_, self.grid_(arrays["X_target_transfer"]))
        return (master - target).mean(0)


class ModelDIPLS(ModelMethod):
    """Zero-shot: unsupervised di-PLS on the frozen model's features — latent variables that
    predict the property on the master pool and whose scores the unlabelled target pool shares
    (the model supplies the representation, di-PLS the domain invariance)."""

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_unlabelled"})

    def _fit_head(self, features, y, arrays, settings):
        pls = super()._fit_head(features, y, arrays, settings)  # the number of components
        target = self._base_features(arrays["X_target_unlabelled"])
        return dipls.UnsupervisedDIPLS(pls).fit(features, y, X_target_unlabelled=target)


class ModelEMSCDIPLS(ModelMethod):
    """Zero-shot: EMSC (master mean reference, polynomial baseline, the target − master mean
    shift as interferent) then unsupervised di-PLS, on the frozen model's features — the
    classical `emsc_dipls` with the model's representation in place of the raw spectra."""

    requires: ClassVar[frozenset[str]] = frozenset({"X_target_unlabelled"})

    def _fit_head(self, features, y, arrays, settings):
        pls = super()._fit_head(features, y, arrays, settings)
        target = self._base_features(arrays["X_target_unlabelled"])
        return EMSCDIPLS(pls).fit(features, y, X_target_unlabelled=target)


class ModelDIPLSSemiSupervised(ModelMethod):
    """Few-shot: semi-supervised di-PLS on the frozen model's features, the k labelled target
    transfer samples joining the master calibration."""

    requires: ClassVar[frozenset[str]] = frozenset(
        {"X_target_unlabelled", "X_target_transfer", "y_transfer"}
    )

    def _fit_head(self, features, y, arrays, settings):
        pls = super()._fit_head(features, y, arrays, settings)
        on_features = {
            "X_target_unlabelled": self._base_features(arrays["X_target_unlabelled"]),
            "X_target_transfer": self._base_features(arrays["X_target_transfer"]),
            "y_transfer": arrays["y_transfer"],
        }
        # Held-out residuals on the target (the head refitted without each fold of the k
        # samples; the features are fixed, so this costs five head fits): the guard judges the
        # row on them and its split-conformal interval is calibrated on the target.
        held_out = cross_validate_transfer(
            lambda: dipls.SemiSupervisedDIPLS(pls),
            features,
            y,
            on_features,
            np.empty((0, features.shape[1])),
            self.seed,
        )
        self.conformity_scores_ = None if held_out is None else held_out[1]
        return dipls.SemiSupervisedDIPLS(pls).fit(features, y, **on_features)
