"""The user path around `CalibrationTransfer`: fit on a data set, predict a spectra file.

`fit_on_dataset` takes the labelled samples of one property as the master calibration (their
master spectra), every target spectrum as the unlabelled target pool, and as transfer samples
either every labelled sample (the default) or k of them chosen by Kennard–Stone on the master
spectra; zero-shot methods get no transfer samples. `predict_file` reads target spectra from a
CSV file, puts them on the transfer's target axis (resampled, never extrapolated) and writes one
row per spectrum: id, prediction, lower, upper.
"""

from __future__ import annotations

import csv
import os
import pathlib

import numpy as np

from caltransfer_jax.benchmark.protocol import PairedData
from caltransfer_jax.data.dataset import Dataset
from caltransfer_jax.data.readers import CsvFormat, read_wide_csv
from caltransfer_jax.data.spectra import SpectraError, same_axis
from caltransfer_jax.methods import registry
from caltransfer_jax.methods.classical.selection import kennard_stone
from caltransfer_jax.transfer.estimator import CalibrationTransfer

# A 90 % range of k wider than this factor is called out in the report (the estimate is weak).
WIDE_RANGE = 3.0


def fit_on_dataset(
    dataset: Dataset,
    source: str,
    target: str,
    prop: str,
    transfer: CalibrationTransfer,
    k: int | None = None,
    tolerance: float | None = None,
) -> dict:
    """Fits `transfer` on a data set; returns the provenance to save with it.

    Args:
        dataset: the data set (`dataset_file.load`).
        source, target: master and target instrument.
        prop: the property to calibrate.
        transfer: an unfitted `CalibrationTransfer` (its method decides what it sees).
        k: transfer samples chosen by Kennard–Stone among the labelled samples (None: all).
        tolerance: an RMSEP (property units) the user needs: the provenance then holds the
            learning curve estimated from the transfer samples and the k that reaches it
            (`CalibrationTransfer.learning_curve`; classical few-shot methods).
    """
    for name in (source, target):
        if name not in dataset.instruments:
            raise ValueError(
                f"unknown instrument {name!r}; {dataset.name} has {dataset.instruments}"
            )
    if prop not in dataset.properties:
        raise ValueError(f"unknown property {prop!r}; {dataset.name} has {dataset.properties}")
    (spec,) = registry.get([transfer.method])
    model = spec.family == "model"
    if model:
        from caltransfer_jax.models.export import check_unseen

        check_unseen((transfer.model or {}).get("init", ""), dataset.name)
    native = model and dataset.native is not None
    if native:
        data = PairedData.from_parts(dataset.own(source), dataset.own(target))
        axes = "the model reads each instrument from its own axis, over the range the two share"
    else:
        on_axis, target_on_axis, axes = dataset.pair(source, target)
        data = PairedData.from_parts(on_axis, target_on_axis)
        if not axes and dataset.native is not None:
            axes = f"{source} and {target} share their axis"
    labelled = dataset.labelled([prop]).tolist()
    if len(labelled) < 3:
        raise ValueError(f"{prop}: only {len(labelled)} labelled samples; a calibration needs more")
    ids: list[str] = []
    if not spec.zero_shot:
        if k is not None and not 1 < k <= len(labelled):
            raise ValueError(f"k = {k}: choose 2 … {len(labelled)} (the labelled samples)")
        ids = labelled
        if k is not None:
            # On the master's own spectra, as the benchmark selects them.
            own = PairedData.from_parts(dataset.own(source), dataset.own(source))
            ids = [labelled[i] for i in kennard_stone(own.values("source", labelled), k)]
    all_target = data.target.sample_id.tolist()
    arrays = {"X_target_unlabelled": data.values("target", all_target)}
    if ids:
        arrays |= {
            "X_master_transfer": data.values("source", ids),
            "X_target_transfer": data.values("target", ids),
            "y_transfer": data.labels(prop, ids),
        }
    if dataset.standards is not None and not model:
        arrays |= {
            "X_master_standards": dataset.standards.on_instrument(source).values,
            "X_target_standards": dataset.standards.on_instrument(target).values,
        }
    transfer.fit(
        data.values("source", labelled),
        data.labels(prop, labelled),
        wavenumber=data.source.wavenumber,
        target_wavenumber=data.target.wavenumber if native else None,
        modality=dataset.spectra.modality,
        **arrays,
    )
    unit = data.source.label_units[data.source.label_names.index(prop)]
    curve = None
    if tolerance is not None:
        fitted = transfer.learning_curve(
            data.values("source", labelled), data.labels(prop, labelled), **arrays
        )
        # None for ∞ (JSON has no infinity): the fitted floor is above the tolerance.
        needed, low, high = (
            float(v) if np.isfinite(v) else None for v in fitted.k_for_tolerance(tolerance)
        )
        curve = {
            "sizes": fitted.sizes.tolist(),
            "rmse": fitted.rmse.tolist(),
            "rmse_sd": fitted.rmse_sd.tolist(),
            "mse_params": list(fitted.params),
            "tolerance": tolerance,
            "k": needed,
            "k_range_90": [low, high],
        }
    return {
        "dataset": dataset.name,
        "source": source,
        "target": target,
        "property": prop,
        "property_unit": unit,
        "axis_unit": data.target.unit,
        "calibration_ids": labelled,
        "transfer_ids": ids,
        "selection": "none" if not ids else ("all labelled" if k is None else "kennard_stone"),
        "axes": axes or "one axis for every instrument",
        "learning_curve": curve,
    }


def predict_file(
    transfer: CalibrationTransfer,
    spectra_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    axis_unit: str,
    csv_format: CsvFormat | None = None,
    id_column: str | None = None,
) -> np.ndarray:
    """Predicts the spectra of a wide CSV file and writes `out` (id, prediction, lower, upper).

    Raises:
        SpectraError: the file is unreadable, or its axis does not cover the transfer's.
    """
    spectra = read_wide_csv(
        spectra_path,
        axis_unit=axis_unit,
        modality=transfer.modality_,
        instrument="target",
        sample_id_column=id_column,
        csv_format=csv_format or CsvFormat(),
    )
    needed = transfer.target_wavenumber_
    if not same_axis(spectra.wavenumber, needed):
        try:
            spectra = spectra.resample(needed)
        except SpectraError as error:
            raise SpectraError(
                f"{spectra_path}: the spectra do not cover the transfer's axis ({error})"
            ) from None
    predicted, lower, upper = transfer.predict_interval(spectra.values)
    out = pathlib.Path(out)
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prediction", "lower", "upper"])
        for row in zip(spectra.sample_id, predicted, lower, upper, strict=True):
            writer.writerow([row[0], *(repr(float(v)) for v in row[1:])])
    os.replace(tmp, out)
    return predicted


def report(transfer: CalibrationTransfer, provenance: dict) -> str:
    """A short markdown report of a fitted transfer."""
    unit = provenance.get("property_unit", "")
    width = transfer.half_width_
    lines = [
        f"# Calibration transfer: {provenance['dataset']} {provenance['source']} → "
        f"{provenance['target']}, {provenance['property']}",
        "",
        f"- method: `{transfer.method}` ({transfer.family_}), preprocessing "
        f"`{transfer.preprocessing}`",
        f"- master calibration: {len(provenance['calibration_ids'])} labelled samples",
        f"- transfer samples: {len(provenance['transfer_ids'])} ({provenance['selection']})",
        f"- axes: {provenance['axes']}",
        f"- {100 * (1 - transfer.alpha):.0f} % interval: prediction ± {width:.4g} {unit}"
        if np.isfinite(width)
        else "- interval: unbounded (too few residuals for this level)",
        f"- interval basis: {transfer.interval_basis_}",
    ]
    if transfer.choice_:
        rmse = ", ".join(f"{k} {v:.3g}" for k, v in sorted(transfer.choice_["cv_rmse"].items()))
        members = transfer.choice_.get("members", [transfer.choice_["chosen"]])
        strays = transfer.choice_.get("strays")  # absent from transfers saved before it
        chosen = f"`{members[0]}`"
        if len(members) > 1:
            half = "the better half, less those left out below" if strays else "the better half"
            chosen = "the mean of " + ", ".join(f"`{m}`" for m in members) + f" ({half})"
        lines.append(
            f"- chosen: {chosen} (cross-validated RMSE on the transfer samples, label SDs: {rmse})"
        )
        if strays:
            left_out = ", ".join(f"`{m}`" for m in strays)
            lines.append(
                f"- left out of the mean: {left_out} (predictions on the unlabelled target "
                "spectra far from the members' median, beyond what cross-validated errors allow)"
            )
    guards = {"": transfer.guard_} if transfer.guard_ else {}
    guards |= {f" of `{name}`": g for name, g in (transfer.choice_ or {}).get("guards", {}).items()}
    for whose, guard in guards.items():
        values = ", ".join(
            f"{k} {v:.3g}" for k, v in guard.items() if k not in ("criterion", "tripped", "action")
        )
        outcome = f"TRIPPED → {guard['action']}" if guard["tripped"] else "passed"
        lines.append(f"- guard{whose} ({guard['criterion']}: {values}): {outcome}")
    lines.append("")
    curve = provenance.get("learning_curve")
    if curve:
        lines += _learning_curve_lines(curve, unit)
    return "\n".join(lines)


def _learning_curve_lines(curve: dict, unit: str) -> list[str]:
    """The report's "How many transfer samples?" section (`k` None: never reached)."""
    a, b, c = curve["mse_params"]
    low, high = ("∞" if v is None else f"{v:.0f}" for v in curve["k_range_90"])
    if curve["k"] is None:
        answer = (
            f"RMSEP {curve['tolerance']:g} {unit} is not reached at any k: the fitted floor, "
            f"{np.sqrt(a):.3g} {unit}, is above it (90 % range of k {low}–{high})."
        )
    else:
        answer = (
            f"RMSEP {curve['tolerance']:g} {unit} is reached at k ≈ {curve['k']:.0f} transfer "
            f"samples (90 % range {low}–{high})"
            + (
                f"; beyond the largest size refitted ({max(curve['sizes'])}), an extrapolation."
                if round(curve["k"]) > max(curve["sizes"])
                else "."
            )
        )
    k_low, k_high = curve["k_range_90"]
    if curve["k"] is not None and (k_high is None or k_high > WIDE_RANGE * max(k_low or 0, 1)):
        answer += (
            f" The range spans more than a factor {WIDE_RANGE:g}: these samples pin the curve down "
            "loosely (where the error falls little with k the point estimate has often missed "
            "the measured k by more than 1.5×, BENCHMARKS.md §5.0, §5.3); read the range."
        )
    return [
        "## How many transfer samples?",
        "",
        "Refits on subsets of the transfer samples, each predicting the ones it left out",
        f"(repeated 5-fold); fitted RMSEP(m) = √({a:.3g} + {b:.3g}·m^−{c:.2g}) {unit}.",
        "",
        "| m | held-out RMSEP | sd |",
        "|---|---|---|",
        *(
            f"| {m} | {r:.4g} | {sd:.2g} |"
            for m, r, sd in zip(curve["sizes"], curve["rmse"], curve["rmse_sd"], strict=True)
        ),
        "",
        answer,
        "",
    ]


def plot_learning_curve(provenance: dict, path: pathlib.Path) -> None:
    """The estimated learning curve and the tolerance, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = provenance["learning_curve"]
    a, b, c = curve["mse_params"]
    sizes = np.asarray(curve["sizes"], dtype=float)
    upper = max(sizes.max(), curve["k"] or 0) * 1.3
    m = np.linspace(sizes.min(), upper, 200)
    fig, ax = plt.subplots(figsize=(8.5, 5.0))
    ax.errorbar(
        sizes,
        curve["rmse"],
        yerr=curve["rmse_sd"],
        fmt="o",
        capsize=3,
        label="held-out RMSEP (± sd over resamples)",
    )
    ax.plot(m, np.sqrt(a + b * m**-c), lw=2, label="fitted curve")
    ax.axhline(curve["tolerance"], color="#c0392b", ls="--", label="tolerance")
    if curve["k"] is not None:
        ax.axvline(curve["k"], color="#c0392b", ls=":", label=f"k ≈ {curve['k']:.0f}")
    ax.set_xlabel("transfer samples m")
    ax.set_ylabel(f"RMSEP ({provenance.get('property_unit', '')})")
    ax.set_title(f"{provenance['source']} → {provenance['target']}, {provenance['property']}")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
