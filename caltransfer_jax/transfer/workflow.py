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


def fit_on_dataset(
    dataset: Dataset,
    source: str,
    target: str,
    prop: str,
    transfer: CalibrationTransfer,
    k: int | None = None,
) -> dict:
    """Fits `transfer` on a data set; returns the provenance to save with it.

    Args:
        dataset: the data set (`dataset_file.load`).
        source, target: master and target instrument.
        prop: the property to calibrate.
        transfer: an unfitted `CalibrationTransfer` (its method decides what it sees).
        k: transfer samples chosen by Kennard–Stone among the labelled samples (None: all).
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
    data = (
        PairedData.from_parts(dataset.own(source), dataset.own(target))
        if native
        else PairedData(dataset.spectra, source, target)
    )
    labelled = dataset.labelled([prop]).tolist()
    if len(labelled) < 3:
        raise ValueError(f"{prop}: only {len(labelled)} labelled samples; a calibration needs more")
    ids: list[str] = []
    if not spec.zero_shot:
        if k is not None and not 1 < k <= len(labelled):
            raise ValueError(f"k = {k}: choose 2 … {len(labelled)} (the labelled samples)")
        ids = labelled
        if k is not None:
            ids = [labelled[i] for i in kennard_stone(data.values("source", labelled), k)]
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
        "axes": dataset.overlap or "one axis for every instrument",
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
    if transfer.guard_:
        guard = transfer.guard_
        values = ", ".join(
            f"{k} {v:.3g}" for k, v in guard.items() if k not in ("criterion", "tripped", "action")
        )
        outcome = f"TRIPPED → {guard['action']}" if guard["tripped"] else "passed"
        lines.append(f"- guard ({guard['criterion']}: {values}): {outcome}")
    lines.append("")
    return "\n".join(lines)
