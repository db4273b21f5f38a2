"""The benchmark's method registry: name → family, how to build it, and when it applies.

`family` is 'classical' (a transfer method), 'reference' (not a transfer method but a yardstick:
no correction at all, the master model on master spectra, full recalibration on the target) or
'model' (the foundation model). Zero-shot methods use no transfer samples and run at k = 0 only;
the others need transfer samples and run at every k > 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from caltransfer_jax.methods import auto
from caltransfer_jax.methods.base import TransferMethod
from caltransfer_jax.methods.classical import (
    corrections,
    dipls,
    dwpds,
    emsc,
    gct,
    pfce,
    recalibration,
    standardisation,
)
from caltransfer_jax.methods.classical.pls import PLSRegressionCV


def _model_method(name: str, context: dict, master: PLSRegressionCV | None) -> TransferMethod:
    # Imported on use: the classical path (forked workers) must not load JAX.
    from caltransfer_jax.methods.model import estimators

    return getattr(estimators, name)(**context, master=master)


def _one_axis(context: dict) -> dict:
    """`context` for a method whose candidates include classical ones, which compare master and
    target spectra point by point; refused where the instruments have their own axes."""
    target = context.get("target_wavenumber")
    if target is not None and not np.array_equal(target, context["wavenumber"]):
        raise ValueError(
            "auto_model chooses among classical methods too, which need the master and target "
            "spectra on one axis; these instruments have their own (use `auto` on the common "
            "range, or a model row)"
        )
    return context


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str
    # Builds an unfitted method from the fitted master calibration, a PLS template and the
    # context (model settings, the data's axis and modality, the split's seed).
    build: Callable[[PLSRegressionCV, PLSRegressionCV, dict], TransferMethod]
    zero_shot: bool
    description: str
    # In the benchmark's default method list (False: run only when named, e.g. for its cost).
    default: bool = True


_SPECS = [
    MethodSpec(
        "no_transfer",
        "reference",
        lambda master, pls, context: corrections.NoTransfer(master),
        True,
        "master calibration applied to target spectra unchanged",
    ),
    MethodSpec(
        "mean_recentring",
        "classical",
        lambda master, pls, context: corrections.MeanRecentring(master),
        True,
        "target spectra re-centred on the master mean via unlabelled target spectra",
    ),
    MethodSpec(
        "standards_offset",
        "classical",
        lambda master, pls, context: corrections.StandardsOffset(master),
        True,
        "additive correction from transfer standards (corn: NBS glass)",
    ),
    MethodSpec(
        "dipls",
        "classical",
        lambda master, pls, context: dipls.UnsupervisedDIPLS(master),
        True,
        "domain-invariant PLS with unlabelled target spectra",
    ),
    MethodSpec(
        "emsc_dipls",
        "classical",
        lambda master, pls, context: emsc.EMSCDIPLS(master),
        True,
        "EMSC (master mean reference, target−master mean interferent) then unsupervised di-PLS",
    ),
    MethodSpec(
        "sbc",
        "classical",
        lambda master, pls, context: corrections.SlopeBiasCorrection(master),
        False,
        "slope/bias correction of master predictions",
    ),
    MethodSpec(
        "ds",
        "classical",
        lambda master, pls, context: standardisation.DirectStandardisation(master),
        False,
        "direct standardisation, ridge by leave-one-out",
    ),
    MethodSpec(
        "pds",
        "classical",
        lambda master, pls, context: standardisation.PiecewiseDirectStandardisation(master),
        False,
        "piecewise direct standardisation, window and ridge by leave-one-out",
    ),
    MethodSpec(
        "dwpds",
        "classical",
        lambda master, pls, context: dwpds.DoubleWindowPDS(master),
        False,
        "double-window PDS, both windows and ridge by leave-one-out",
        default=False,
    ),
    MethodSpec(
        "dipls_semisupervised",
        "classical",
        lambda master, pls, context: dipls.SemiSupervisedDIPLS(master),
        False,
        "di-PLS with the labelled target transfer samples joining the calibration",
    ),
    MethodSpec(
        "gct_pls",
        "classical",
        lambda master, pls, context: gct.GCTPLS(master),
        False,
        "graph-based calibration transfer PLS on the transfer pairs",
    ),
    MethodSpec(
        "pfce_ns",
        "classical",
        lambda master, pls, context: pfce.NSPFCE(master),
        False,
        "non-supervised parameter-free calibration enhancement",
    ),
    MethodSpec(
        "pfce_ss",
        "classical",
        lambda master, pls, context: pfce.SSPFCE(master),
        False,
        "semi-supervised PFCE (target transfer labels)",
    ),
    MethodSpec(
        "pfce_fs",
        "classical",
        lambda master, pls, context: pfce.FSPFCE(master),
        False,
        "full-supervised PFCE (pairs and labels)",
    ),
    MethodSpec(
        "target_pls",
        "classical",
        lambda master, pls, context: recalibration.TargetPLS(pls),
        False,
        "PLS on the k labelled target transfer samples only",
    ),
    MethodSpec(
        "augmented_pls",
        "classical",
        lambda master, pls, context: recalibration.AugmentedPLS(pls),
        False,
        "PLS on master calibration plus the k labelled target samples",
    ),
    MethodSpec(
        "auto",
        "classical",
        lambda master, pls, context: auto.AutoTransfer(
            master, pls, context, seed=context.get("seed", 0)
        ),
        False,
        "the mean of the better half of the few-shot methods, ranked by cross-validated RMSE "
        "on the transfer samples",
        default=False,  # 10 candidates × 5 refits per transfer: run it when named
    ),
    MethodSpec(
        "auto_model",
        "model",
        lambda master, pls, context: auto.AutoTransfer(
            master, pls, _one_axis(context), auto.MODEL_CANDIDATES, context.get("seed", 0)
        ),
        False,
        "`auto` with the foundation model's few-shot rows among its candidates",
        default=False,  # 12 candidates × 5 refits per transfer, two of them the model's
    ),
    MethodSpec(
        "auto_zero_shot",
        "classical",
        lambda master, pls, context: auto.AutoZeroShot(master, pls, context),
        True,
        "the zero-shot method whose target-pool predictions are distributed most like the "
        "master calibration's cross-validated predictions (label-free)",
    ),
    MethodSpec(
        "model_frozen",
        "model",
        lambda master, pls, context: _model_method("ModelFrozen", context, master),
        True,
        "foundation model: master PLS head on frozen features, no adaptation",
    ),
    MethodSpec(
        "model_ttt",
        "model",
        lambda master, pls, context: _model_method("ModelTTT", context, master),
        True,
        "foundation model: LoRA test-time training on unlabelled target spectra",
    ),
    MethodSpec(
        "model_dipls",
        "model",
        lambda master, pls, context: _model_method("ModelDIPLS", context, master),
        True,
        "foundation model: unsupervised di-PLS on the frozen features (target pool unlabelled)",
    ),
    MethodSpec(
        "model_emsc_dipls",
        "model",
        lambda master, pls, context: _model_method("ModelEMSCDIPLS", context, master),
        True,
        "foundation model: EMSC + unsupervised di-PLS on the frozen features",
    ),
    MethodSpec(
        "model_dipls_semisupervised",
        "model",
        lambda master, pls, context: _model_method("ModelDIPLSSemiSupervised", context, master),
        False,
        "foundation model: semi-supervised di-PLS on the frozen features with the transfer samples",
    ),
    MethodSpec(
        "model_lora",
        "model",
        lambda master, pls, context: _model_method("ModelLoRA", context, master),
        False,
        "foundation model: LoRA few-shot on the transfer pairs and labels",
    ),
]

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}

# Yardsticks computed by the runner itself rather than through a TransferMethod.
FULL_RECALIBRATION = "full_recalibration"
MASTER_ON_MASTER = "master_on_master"


def names(families=("reference", "classical", "model"), default_only=False) -> tuple[str, ...]:
    """Names of the registered methods of the given families, in registry order (only those in
    the benchmark's default list when `default_only`)."""
    return tuple(
        spec.name
        for spec in _SPECS
        if spec.family in families and (spec.default or not default_only)
    )


def get(wanted) -> list[MethodSpec]:
    """Specs for the named methods, in the given order; unknown names raise."""
    unknown = [n for n in wanted if n not in METHODS]
    if unknown:
        raise KeyError(f"unknown method(s) {unknown}; known: {sorted(METHODS)}")
    return [METHODS[n] for n in wanted]
