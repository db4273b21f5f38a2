"""The corn and IDRC-2002 tablet data sets shipped with the package.

`load_corn()` and `load_tablets()` read small compressed files in `bundled/` (written by
`data_prep/build_bundled.py` from the original CSV files; provenance, citations, licences and the
sha256 of every source file are in `bundled/README.md`).

File format (numpy .npz, no pickled objects): spectra are stored as int32 first differences along
the axis of the printed decimals, value = cumsum(delta) / 10**decimals. Integer division by a
power of ten is correctly rounded, so this gives back exactly the float64 that Python parses from
the CSV text, at half the size of compressed float64. Reference values are stored as float64.
Format 2 (any user data set, `save_dataset`) adds what format 1 cannot hold: float64 values where
they are not short decimals, and each instrument's own axis where the instruments' axes differ.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os

import numpy as np

from caltransfer_jax.data.dataset import Dataset
from caltransfer_jax.data.spectra import Spectra, SpectraError

FORMAT_VERSION = 1  # written whenever it can hold the data set (the bundled files)
FORMATS = (1, 2)
_MAX_DECIMALS = 9


def load_corn() -> Dataset:
    """Corn: 80 samples × 3 NIR instruments (m5, mp5, mp6), 1100–2498 nm, 4 properties in %."""
    return _read_packaged("corn.npz")


def load_tablets() -> Dataset:
    """IDRC-2002 tablets: 655 tablets × 2 NIR instruments, 600–1898 nm, weight/hardness/assay."""
    return _read_packaged("tablets.npz")


def _read_packaged(name: str) -> Dataset:
    resource = importlib.resources.files("caltransfer_jax.data") / "bundled" / name
    with importlib.resources.as_file(resource) as path:
        return read_bundle(path)


def read_bundle(path: str | os.PathLike) -> Dataset:
    """Reads a data set file written by `to_arrays` + `np.savez_compressed`."""
    origin = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as error:
        raise SpectraError(f"{origin}: not a readable data set file ({error})") from None
    version = int(arrays.get("format_version", -1))
    if version not in FORMATS:
        raise SpectraError(f"{origin}: format version {version}, expected one of {FORMATS}")
    text = {key: str(v) for key, v in arrays.items() if v.dtype.kind == "U" and v.ndim == 0}

    def spectra(prefix: str, labels: bool) -> Spectra:
        values = _values(arrays, prefix)
        n = values.shape[0]
        return Spectra(
            values=values,
            wavenumber=arrays["wavenumber"],
            unit=text["unit"],
            modality=text["modality"],
            instrument=arrays[f"{prefix}instrument"],
            sample_id=arrays[f"{prefix}sample_id"],
            labels=arrays["labels"] if labels else np.zeros((n, 0)),
            label_names=tuple(arrays["label_names"]) if labels else (),
            label_units=tuple(arrays["label_units"]) if labels else (),
            origin=origin,
            value_unit=text["value_unit"],
        )

    split = None
    if "split_sample_id" in arrays:
        split = dict(
            zip(arrays["split_sample_id"].tolist(), arrays["split_subset"].tolist(), strict=True)
        )
    stacked = spectra("", labels=True)
    native = None
    if "native_instruments" in arrays:
        native = {
            name: dataclasses.replace(
                stacked.on_instrument(name),
                values=arrays[f"native{j}_values"],
                wavenumber=arrays[f"native{j}_wavenumber"],
                unit=str(arrays[f"native{j}_unit"]),
            )
            for j, name in enumerate(arrays["native_instruments"].tolist())
        }
    return Dataset(
        name=text["name"],
        spectra=stacked,
        instruments=tuple(arrays["instruments"].tolist()),
        properties=tuple(arrays["label_names"].tolist()),
        standards=spectra("standards_", labels=False) if "standards_values" in arrays else None,
        original_split=split,
        citation=text["citation"],
        native=native,
        overlap=text.get("overlap", ""),
    )


def _values(arrays: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    if f"{prefix}values_float" in arrays:
        return arrays[f"{prefix}values_float"]
    return decode_values(arrays[f"{prefix}values"], int(arrays["decimals"]))


def save_dataset(dataset: Dataset, path) -> None:
    """Writes any data set to one .npz file that `read_bundle` reads back exactly."""
    np.savez_compressed(path, **to_arrays(dataset, {}))


def to_arrays(dataset: Dataset, sources: dict[str, str]) -> dict[str, np.ndarray]:
    """The arrays of a data set file (for `np.savez_compressed`); `read_bundle` inverts it exactly.

    Args:
      dataset: the data set; its standards must share the axis of its spectra.
      sources: source file name -> sha256, recorded in the file.
    """
    spectra = dataset.spectra
    parts = [spectra.values] + ([] if dataset.standards is None else [dataset.standards.values])
    decimals = _decimals(np.concatenate(parts))
    exact = decimals is not None and dataset.native is None
    arrays = {
        "format_version": np.array(FORMAT_VERSION if exact else 2),
        "name": np.array(dataset.name),
        "citation": np.array(dataset.citation),
        "wavenumber": spectra.wavenumber,
        "unit": np.array(spectra.unit),
        "modality": np.array(spectra.modality),
        "value_unit": np.array(spectra.value_unit),
        **_encoded("", spectra.values, decimals),
        "instrument": spectra.instrument,
        "sample_id": spectra.sample_id,
        "labels": spectra.labels,
        "label_names": np.array(spectra.label_names),
        "label_units": np.array(spectra.label_units),
        "instruments": np.array(dataset.instruments),
        "sources": np.array([f"{sha}  {name}" for name, sha in sorted(sources.items())]),
    }
    if dataset.standards is not None:
        standards = dataset.standards
        if not np.array_equal(standards.wavenumber, spectra.wavenumber):
            raise SpectraError(f"{standards.origin}: standards are on another axis than the data")
        arrays.update(_encoded("standards_", standards.values, decimals))
        arrays["standards_instrument"] = standards.instrument
        arrays["standards_sample_id"] = standards.sample_id
    if dataset.original_split is not None:
        ids = sorted(dataset.original_split)
        arrays["split_sample_id"] = np.array(ids)
        arrays["split_subset"] = np.array([dataset.original_split[s] for s in ids])
    if dataset.native is not None:
        arrays["overlap"] = np.array(dataset.overlap)
        arrays["native_instruments"] = np.array(list(dataset.native))
        for j, own in enumerate(dataset.native.values()):
            arrays[f"native{j}_values"] = own.values
            arrays[f"native{j}_wavenumber"] = own.wavenumber
            arrays[f"native{j}_unit"] = np.array(own.unit)
    return arrays


def _encoded(prefix: str, values: np.ndarray, decimals: int | None) -> dict[str, np.ndarray]:
    """Values as exact decimals (int32 deltas) where they are, else as float64."""
    if decimals is None:
        return {f"{prefix}values_float": values}
    out = {f"{prefix}values": encode_values(values, decimals)}
    if not prefix:
        out["decimals"] = np.array(decimals)
    return out


def encode_values(values: np.ndarray, decimals: int) -> np.ndarray:
    """int32 first differences along the axis of round(values * 10**decimals)."""
    scaled = np.round(np.asarray(values) * 10.0**decimals)
    delta = np.diff(scaled, axis=1, prepend=0.0)
    if np.abs(delta).max() >= 2**31:
        raise SpectraError(f"values need more than 32 bits at {decimals} decimals")
    return delta.astype(np.int32)


def decode_values(delta: np.ndarray, decimals: int) -> np.ndarray:
    """Inverse of `encode_values`: exact integer sums, then one correctly rounded division."""
    return np.cumsum(delta, axis=1, dtype=np.int64) / 10.0**decimals


def _decimals(values: np.ndarray) -> int | None:
    """The fewest decimals at which the integer encoding gives back `values` exactly (None: no
    such number up to `_MAX_DECIMALS`, or beyond 32-bit deltas)."""
    for decimals in range(_MAX_DECIMALS + 1):
        scaled = np.round(values * 10.0**decimals)
        if np.abs(scaled).max() < 2**53 and np.array_equal(scaled / 10.0**decimals, values):
            delta = np.diff(scaled, axis=1, prepend=0.0)
            return decimals if np.abs(delta).max() < 2**31 else None
    return None
