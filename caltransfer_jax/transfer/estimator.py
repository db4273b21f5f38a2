"""A calibration transfer a user keeps: fitted once, saved, loaded, predicting new spectra.

`CalibrationTransfer` wraps any registered method (classical or model) with what it needs to
predict on its own: the preprocessing, the master calibration, the label scaling, the axes, and
a split-conformal interval half-width with the residuals it rests on. `save(directory)` writes a
self-contained, versioned directory; `CalibrationTransfer.load(directory)` gives back a transfer
that predicts the same values to the last bit.

Saved directory:

    transfer.json        format, method, settings, label, interval, provenance
    axes.npz             the master and target axes (cm⁻¹)
    estimator.skops      classical: the fitted preprocessing and method (skops, no pickle)
    head.skops           model: the PLS head; model.npz: the feature shift
    adapters/            model: the LoRA adapter weights (orbax)
    export/              model: a copy of the pretrained export it adapts
    members/<i>/         `auto_model` choosing a mean: member i (a model row's head.skops,
                         model.npz and adapters/, or a classical one's estimator.skops)
"""

from __future__ import annotations

import datetime
import json
import pathlib
import shutil

import numpy as np
import skops.io
from sklearn.base import BaseEstimator, RegressorMixin, clone
from threadpoolctl import threadpool_limits

from caltransfer_jax import __version__
from caltransfer_jax.benchmark.metrics import conformal_quantile
from caltransfer_jax.data.spectra import same_axis
from caltransfer_jax.methods import registry
from caltransfer_jax.methods.auto import CandidateMean
from caltransfer_jax.methods.base import (
    CV_FOLDS,
    TRANSFER_KEYS,
    conformity_scores,
    cross_validate_transfer,
)
from caltransfer_jax.methods.classical.pls import PLSRegressionCV
from caltransfer_jax.methods.classical.preprocessing import make_preprocessing
from caltransfer_jax.methods.learning_curve import LearningCurve, estimate_learning_curve

FORMAT = 1
# How model rows read a pair's spectra (methods/model/grid.py); transfers between instruments on
# different axes saved without it read each instrument on its own full range.
MODEL_INPUTS = "shared range"
PLS_DEFAULTS = {"max_components": 20, "n_folds": 10, "rule": "onesigma"}
# Only the project's own classes may be rebuilt from a saved estimator (besides skops' defaults).
_TRUSTED_PREFIX = "caltransfer_jax."


class CalibrationTransfer(RegressorMixin, BaseEstimator):
    """A master calibration transferred to a target instrument by one method.

    Args:
        method: a name of `methods.registry` (a classical or model method, not a reference row).
        preprocessing: classical preprocessing (`make_preprocessing`), learnt from the master
            calibration spectra; model methods read raw spectra ('none').
        pls: settings of the master PLS calibration (defaults `PLS_DEFAULTS`).
        model: adaptation settings of model methods (configs/adapt.py `model_config()` as a
            dict, `init` naming the pretrained export).
        alpha: miscoverage of the prediction interval (0.1: 90 %).
        seed: seeds the CV folds and the adaptation.
    """

    def __init__(
        self,
        method: str = "dipls_semisupervised",
        preprocessing: str = "none",
        pls: dict | None = None,
        model: dict | None = None,
        alpha: float = 0.1,
        seed: int = 0,
    ):
        self.method = method
        self.preprocessing = preprocessing
        self.pls = pls
        self.model = model
        self.alpha = alpha
        self.seed = seed

    def fit(
        self,
        X,
        y,
        *,
        wavenumber,
        modality: str = "NIR",
        target_wavenumber=None,
        **transfer,
    ) -> CalibrationTransfer:
        """Fits the master calibration and the transfer.

        Args:
            X: (n, p) labelled master calibration spectra on `wavenumber`.
            y: (n,) their reference values.
            wavenumber: (p,) the master axis in cm⁻¹.
            modality: 'NIR', 'IR' or 'Raman'.
            target_wavenumber: the target axis where the target instrument has its own (model
                methods only; classical methods need both on one axis, e.g. a data set's
                common range).
            **transfer: the method's arrays (`methods.base.TRANSFER_KEYS`).
        """
        (spec,) = registry.get([self.method])
        if spec.family == "reference":
            raise ValueError(f"{self.method!r} is a reference row, not a transfer method")
        unknown = set(transfer) - set(TRANSFER_KEYS)
        if unknown:
            raise TypeError(f"unknown transfer arrays {sorted(unknown)}; known: {TRANSFER_KEYS}")
        self.family_ = spec.family
        wavenumber = np.asarray(wavenumber, dtype=np.float64)
        target = wavenumber if target_wavenumber is None else np.asarray(target_wavenumber, float)
        if spec.family != "model":
            if not same_axis(target, wavenumber):
                raise ValueError(
                    f"{self.method} compares spectra point by point: give master and target "
                    "spectra on one axis (a data set's common range)"
                )
            target = wavenumber
        elif self.preprocessing != "none":
            raise ValueError("model methods read raw spectra: use preprocessing='none'")
        if not self.model and spec.family == "model":
            raise ValueError(f"{self.method} needs model settings with `init` (an export)")
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).ravel()
        self.y_mean_, self.y_scale_ = float(y.mean()), float(y.std())
        if not self.y_scale_ > 0:
            raise ValueError("the reference values are constant: nothing to calibrate")
        standardised = (y - self.y_mean_) / self.y_scale_
        self.preprocessing_ = make_preprocessing(self.preprocessing).fit(X)
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in transfer.items() if v is not None}
        if "y_transfer" in arrays:
            arrays["y_transfer"] = (arrays["y_transfer"] - self.y_mean_) / self.y_scale_
        arrays = {k: self._prepared(k, v) for k, v in arrays.items()}
        X = self._prepared("X", X)
        template = PLSRegressionCV(seed=self.seed, **(self.pls or PLS_DEFAULTS))
        with threadpool_limits(1):
            master = clone(template).fit(X, standardised)
        context = {
            "settings": self.model,
            "wavenumber": wavenumber,
            "modality": modality,
            "seed": self.seed,
        }
        if spec.family == "model" and target_wavenumber is not None:
            context["target_wavenumber"] = target
        self.method_ = spec.build(master, template, context)
        missing = self.method_.requires - set(arrays)
        if missing:
            raise ValueError(f"{self.method} needs {sorted(missing)}")
        with threadpool_limits(1):  # reproducible to the last bit (see `predict_interval`)
            self.method_.fit(X, standardised, **arrays)
        scores, self.interval_basis_ = self._scores(
            spec, lambda: spec.build(master, template, context), master, X, standardised, arrays
        )
        # `auto`/`auto_model`: what it chose and why (CV RMSE per candidate, standardised).
        self.choice_ = None
        if hasattr(self.method_, "chosen_"):
            self.choice_ = {
                "chosen": self.method_.chosen_,
                "members": list(getattr(self.method_, "members_", [self.method_.chosen_])),
                "cv_rmse": self.method_.criterion_,
                "strays": list(getattr(self.method_, "strays_", ())),
            }
            if spec.family == "model":  # the transfer is what it chose, saved as such
                self.method_, self.family_ = _model_choice(self.method_)
        self.half_width_ = conformal_quantile(scores * self.y_scale_, self.alpha)
        self.wavenumber_, self.target_wavenumber_, self.modality_ = wavenumber, target, modality
        self.n_transfer_ = len(arrays.get("y_transfer", ()))
        self.guard_ = getattr(self.method_, "guard_", None)
        if isinstance(self.method_, CandidateMean):  # `auto_model`: its model members' checks
            self.choice_["guards"] = {
                name: member.guard_
                for name, member in zip(
                    self.choice_["members"], self.method_.estimators_, strict=True
                )
                if getattr(member, "guard_", None)
            }
        return self

    def learning_curve(self, X, y, *, repeats: int = 5, **transfer) -> LearningCurve:
        """How the error falls with the number of transfer samples, estimated from the transfer
        samples this transfer was fitted with (`methods.learning_curve`), in property units.

        Args:
            X, y, **transfer: what `fit` was given (classical few-shot methods: refitting a
                model method for every subset would take hours).
            repeats: K-fold redraws of the transfer samples.
        """
        (spec,) = registry.get([self.method])
        if spec.family != "classical" or spec.zero_shot:
            raise ValueError(
                f"a learning curve needs a classical few-shot method; {self.method} is "
                f"{'zero-shot' if spec.zero_shot else spec.family}"
            )
        if "y_transfer" not in transfer:
            raise ValueError("a learning curve needs the labelled transfer samples (y_transfer)")
        standardised = (np.asarray(y, dtype=np.float64).ravel() - self.y_mean_) / self.y_scale_
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in transfer.items() if v is not None}
        arrays["y_transfer"] = (arrays["y_transfer"] - self.y_mean_) / self.y_scale_
        arrays = {k: self._prepared(k, v) for k, v in arrays.items()}
        template = PLSRegressionCV(seed=self.seed, **(self.pls or PLS_DEFAULTS))
        context = {"wavenumber": self.wavenumber_, "modality": self.modality_, "seed": self.seed}
        with threadpool_limits(1):
            curve = estimate_learning_curve(
                lambda fitted: spec.build(fitted, template, context),
                template,
                self._prepared("X", np.asarray(X, dtype=np.float64)),
                standardised,
                arrays,
                repeats=repeats,
                seed=self.seed,
            )
        return curve.in_units(self.y_scale_)

    @property
    def fitted_method(self) -> str:
        """The registry name of the fitted method: `method`, or the one row a model-family
        chooser (`auto_model`) chose — the transfer is that row (a mean of rows: `method`)."""
        chooser = registry.METHODS[self.method].family == "model"
        if chooser and self.choice_ and self.choice_["chosen"] in registry.METHODS:
            return self.choice_["chosen"]
        return self.method

    def _scores(self, spec, build, master, X, y, arrays) -> tuple[np.ndarray, str]:
        """Conformity scores for the interval, and what they are: for few-shot methods (model
        rows too) the residuals of refits without each fold of the transfer samples
        (target-calibrated), else the method's own (`methods.base.conformity_scores`)."""
        if not spec.zero_shot and len(arrays["y_transfer"]) >= 2:
            chosen = getattr(self.method_, "interval_builder", None)  # `auto`: see there
            with threadpool_limits(1):
                cv = cross_validate_transfer(
                    chosen() if chosen else build, X, y, arrays, X[:0], self.seed
                )
            if cv is not None:
                return cv[1], (
                    f"cross-validated residuals on the {len(cv[1])} target transfer samples "
                    f"({min(CV_FOLDS, len(cv[1]))} refits)"
                )
        return conformity_scores(self.method_, master)

    def _prepared(self, key: str, values: np.ndarray) -> np.ndarray:
        if key == "y_transfer" or self.family_ == "model":
            return values
        return self.preprocessing_.transform(values)

    def predict(self, X) -> np.ndarray:
        """Property values of (m, q) target spectra on `target_wavenumber_`."""
        return self.predict_interval(X)[0]

    def predict_interval(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prediction, lower, upper) of (m, q) target spectra; bounds are ±inf where too few
        residuals exist for the level."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.target_wavenumber_.size:
            raise ValueError(
                f"spectra must be (m, {self.target_wavenumber_.size}) on the transfer's target "
                f"axis; got shape {X.shape}"
            )
        # One BLAS thread: a multi-threaded product may sum in another order from run to run,
        # and a saved transfer must predict the same values to the last bit.
        with threadpool_limits(1):
            predicted = self.method_.predict(self._prepared("X", X))
        predicted = predicted * self.y_scale_ + self.y_mean_
        return predicted, predicted - self.half_width_, predicted + self.half_width_

    # ------------------------------------------------------------------------------------------
    # Saving and loading.

    def save(self, directory: str | pathlib.Path, provenance: dict | None = None) -> None:
        """Writes the fitted transfer into `directory` (which must not exist yet)."""
        directory = pathlib.Path(directory)
        if directory.exists():
            raise FileExistsError(f"{directory} exists; choose a new directory")
        staging = directory.with_name(directory.name + ".partial")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        try:
            self._write(staging, provenance or {})
            staging.rename(directory)
        finally:
            if staging.exists():
                shutil.rmtree(staging)

    def _write(self, directory: pathlib.Path, provenance: dict) -> None:
        np.savez(
            directory / "axes.npz", wavenumber=self.wavenumber_, target=self.target_wavenumber_
        )
        settings = dict(self.model or {})
        if self.family_ == "model":
            from caltransfer_jax.models.export import resolve

            export = resolve(settings["init"])
            shutil.copytree(export, directory / "export")
            provenance = {**provenance, "export": _export_info(export)}
            settings["init"] = "export"
            if isinstance(self.method_, CandidateMean):  # `auto_model`: one folder per member
                names = self.choice_["members"]
                for i, (name, member) in enumerate(
                    zip(names, self.method_.estimators_, strict=True)
                ):
                    folder = directory / "members" / str(i)
                    folder.mkdir(parents=True)
                    if registry.METHODS[name].family == "model":
                        _write_model_method(folder, member, name)
                    else:
                        skops.io.dump({"method": member}, folder / "estimator.skops")
            else:
                _write_model_method(directory, self.method_, self.fitted_method)
        else:
            skops.io.dump(
                {"preprocessing": self.preprocessing_, "method": self.method_},
                directory / "estimator.skops",
            )
        info = {
            "format": FORMAT,
            "package_version": __version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "method": self.method,
            "choice": self.choice_,
            "family": self.family_,
            "preprocessing": self.preprocessing,
            "pls": self.pls,
            "model": settings or None,
            "seed": self.seed,
            "modality": self.modality_,
            "label": {"mean": self.y_mean_, "scale": self.y_scale_},
            "interval": {
                "alpha": self.alpha,
                "half_width": self.half_width_,
                "basis": self.interval_basis_,
            },
            "n_transfer": self.n_transfer_,
            "guard": self.guard_,
            "provenance": provenance,
        }
        if self.family_ == "model":
            info["model_inputs"] = MODEL_INPUTS
        (directory / "transfer.json").write_text(json.dumps(info, indent=2, default=float))

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> CalibrationTransfer:
        """A transfer saved by `save`."""
        directory = pathlib.Path(directory)
        info = read_info(directory)
        transfer = cls(
            method=info["method"],
            preprocessing=info["preprocessing"],
            pls=info["pls"],
            model=info["model"],
            alpha=info["interval"]["alpha"],
            seed=info["seed"],
        )
        with np.load(directory / "axes.npz") as axes:
            transfer.wavenumber_, transfer.target_wavenumber_ = axes["wavenumber"], axes["target"]
        two_axes = not same_axis(transfer.target_wavenumber_, transfer.wavenumber_)
        if info["family"] == "model" and two_axes and info.get("model_inputs") != MODEL_INPUTS:
            raise ValueError(
                f"{directory}: a model transfer between instruments on different axes saved "
                "before the model read both on the range they share; its head was fitted on "
                "other inputs: fit it again"
            )
        transfer.family_, transfer.modality_ = info["family"], info["modality"]
        transfer.y_mean_, transfer.y_scale_ = info["label"]["mean"], info["label"]["scale"]
        transfer.half_width_ = info["interval"]["half_width"]
        transfer.interval_basis_ = info["interval"]["basis"]
        transfer.n_transfer_ = info["n_transfer"]
        transfer.guard_ = info["guard"]
        transfer.choice_ = info.get("choice")  # absent from transfers saved before it existed
        if info["family"] == "model":
            transfer.preprocessing_ = None
            members = (transfer.choice_ or {}).get("members", [])
            if len(members) > 1:
                transfer.method_ = CandidateMean()
                transfer.method_.estimators_ = [
                    _load_model_method(directory / "members" / str(i), name, directory, transfer)
                    if registry.METHODS[name].family == "model"
                    else _load_skops(directory / "members" / str(i) / "estimator.skops")["method"]
                    for i, name in enumerate(members)
                ]
            else:
                transfer.method_ = _load_model_method(
                    directory, transfer.fitted_method, directory, transfer
                )
        else:
            state = _load_skops(directory / "estimator.skops")
            transfer.preprocessing_, transfer.method_ = state["preprocessing"], state["method"]
        return transfer


def _model_choice(auto) -> tuple[object, str]:
    """(the transfer, its family) of a fitted `auto_model`: the one row it chose, else the mean
    (a model transfer where it holds a model row)."""
    members = auto.method_.estimators_
    if len(members) == 1:
        return members[0], registry.METHODS[auto.members_[0]].family
    families = {registry.METHODS[name].family for name in auto.members_}
    return auto.method_, "model" if "model" in families else "classical"


def read_info(directory: pathlib.Path) -> dict:
    """transfer.json of a saved transfer, checked for its format."""
    path = directory / "transfer.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{directory}: not a saved transfer (no transfer.json)") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable ({error})") from None
    if info.get("format") != FORMAT:
        raise ValueError(f"{path}: transfer format {info.get('format')!r}, expected {FORMAT}")
    return info


def _load_skops(path: pathlib.Path):
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable ({error})") from None
    foreign = [name for name in untrusted if not name.startswith(_TRUSTED_PREFIX)]
    if foreign:
        raise ValueError(f"{path}: refers to types outside this package {foreign[:3]}; refused")
    return skops.io.load(path, trusted=untrusted)


def _write_model_method(directory: pathlib.Path, method, name: str) -> None:
    """A fitted model row's head, guard fallback, mean shift and adapters into `directory`."""
    from caltransfer_jax.methods.model.lora import save_adapters

    skops.io.dump({"head": method.model_, "fallback": method.fallback_}, directory / "head.skops")
    np.savez(directory / "model.npz", shift=np.asarray(method.shift_))
    save_adapters(directory, method.adapters_, {"method": name})


def _load_model_method(
    directory: pathlib.Path, name: str, saved: pathlib.Path, transfer: CalibrationTransfer
):
    """The model row `name` written by `_write_model_method` into `directory`, on the export
    copied into the saved transfer `saved`."""
    from caltransfer_jax.methods.model.lora import read_adapters

    settings = dict(transfer.model)
    settings["init"] = str((saved / "export").resolve())
    (spec,) = registry.get([name])
    context = {
        "settings": settings,
        "wavenumber": transfer.wavenumber_,
        "modality": transfer.modality_,
        "seed": transfer.seed,
    }
    if not same_axis(transfer.target_wavenumber_, transfer.wavenumber_):
        context["target_wavenumber"] = transfer.target_wavenumber_
    method = spec.build(None, None, context)
    with np.load(directory / "model.npz") as state:
        shift = state["shift"]
    state = _load_skops(directory / "head.skops")
    shift = shift[()] if shift.ndim == 0 else shift
    method.restore(state["head"], None, shift, state["fallback"])
    method.adapters_ = read_adapters(directory, method.adaptable_.initial)
    return method


def _export_info(export: pathlib.Path) -> dict:
    path = export / "export.json"
    info = json.loads(path.read_text()) if path.exists() else {}
    return {"path": str(export.resolve()), **{k: info[k] for k in ("step", "format") if k in info}}
