"""The benchmark's method registry: name → family, how to build it, and when it applies.

`family` is 'classical' (a transfer method), 'reference' (not a transfer method but a yardstick:
no correction at all, the master model on master spectra, full recalibration on the target) or
'model' (the foundation model). Zero-shot methods use no transfer samples and run at k = 0 only;
the others need transfer samples and run at every k > 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from caltransfer_jax.classical import (
    corrections,
    dipls,
    gct,
    pfce,
    recalibration,
    standardisation,
)
from caltransfer_jax.classical.base import TransferMethod
from caltransfer_jax.classical.pls import PLSRegressionCV


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str
    # Builds an unfitted method from the fitted master calibration and a PLS template.
    build: Callable[[PLSRegressionCV, PLSRegressionCV], TransferMethod]
    zero_shot: bool
    description: str


_SPECS = [
    MethodSpec(
        "no_transfer",
        "reference",
        lambda master, pls: corrections.NoTransfer(master),
        True,
        "master calibration applied to target spectra unchanged",
    ),
    MethodSpec(
        "mean_recentring",
        "classical",
        lambda master, pls: corrections.MeanRecentring(master),
        True,
        "target spectra re-centred on the master mean via unlabelled target spectra",
    ),
    MethodSpec(
        "standards_offset",
        "classical",
        lambda master, pls: corrections.StandardsOffset(master),
        True,
        "additive correction from transfer standards (corn: NBS glass)",
    ),
    MethodSpec(
        "dipls",
        "classical",
        lambda master, pls: dipls.UnsupervisedDIPLS(master),
        True,
        "domain-invariant PLS with unlabelled target spectra",
    ),
    MethodSpec(
        "sbc",
        "classical",
        lambda master, pls: corrections.SlopeBiasCorrection(master),
        False,
        "slope/bias correction of master predictions",
    ),
    MethodSpec(
        "ds",
        "classical",
        lambda master, pls: standardisation.DirectStandardisation(master),
        False,
        "direct standardisation, ridge by leave-one-out",
    ),
    MethodSpec(
        "pds",
        "classical",
        lambda master, pls: standardisation.PiecewiseDirectStandardisation(master),
        False,
        "piecewise direct standardisation, window and ridge by leave-one-out",
    ),
    MethodSpec(
        "dipls_semisupervised",
        "classical",
        lambda master, pls: dipls.SemiSupervisedDIPLS(master),
        False,
        "di-PLS with the labelled target transfer samples joining the calibration",
    ),
    MethodSpec(
        "gct_pls",
        "classical",
        lambda master, pls: gct.GCTPLS(master),
        False,
        "graph-based calibration transfer PLS on the transfer pairs",
    ),
    MethodSpec(
        "pfce_ns",
        "classical",
        lambda master, pls: pfce.NSPFCE(master),
        False,
        "non-supervised parameter-free calibration enhancement",
    ),
    MethodSpec(
        "pfce_ss",
        "classical",
        lambda master, pls: pfce.SSPFCE(master),
        False,
        "semi-supervised PFCE (target transfer labels)",
    ),
    MethodSpec(
        "pfce_fs",
        "classical",
        lambda master, pls: pfce.FSPFCE(master),
        False,
        "full-supervised PFCE (pairs and labels)",
    ),
    MethodSpec(
        "target_pls",
        "classical",
        lambda master, pls: recalibration.TargetPLS(pls),
        False,
        "PLS on the k labelled target transfer samples only",
    ),
    MethodSpec(
        "augmented_pls",
        "classical",
        lambda master, pls: recalibration.AugmentedPLS(pls),
        False,
        "PLS on master calibration plus the k labelled target samples",
    ),
]

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}

# Yardsticks computed by the runner itself rather than through a TransferMethod.
FULL_RECALIBRATION = "full_recalibration"
MASTER_ON_MASTER = "master_on_master"


def get(names) -> list[MethodSpec]:
    """Specs for the named methods, in the given order; unknown names raise."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise KeyError(f"unknown method(s) {unknown}; known: {sorted(METHODS)}")
    return [METHODS[n] for n in names]
