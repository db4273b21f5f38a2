"""The spectra container: values on their physical axis, with instrument, sample and labels.

Every spectrum keeps its physical axis. Internally the axis is a wavenumber in cm⁻¹ (the unit the
model's positional encoding uses); the unit the data came in is remembered for display. A column
index never stands in for a position on the axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

MODALITIES = ("NIR", "IR", "Raman")
# Factors to wavenumber in cm⁻¹: wavenumber = factor / value for wavelengths, identity for cm⁻¹.
_WAVELENGTH_TO_CM1 = {"nm": 1e7, "um": 1e4}
UNITS = ("nm", "um", "cm-1")
_UNIT_ALIASES = {
    "nm": "nm",
    "nanometers": "nm",
    "nanometer": "nm",
    "um": "um",
    "µm": "um",
    "micrometers": "um",
    "micrometer": "um",
    "microns": "um",
    "cm-1": "cm-1",
    "cm^-1": "cm-1",
    "1/cm": "cm-1",
    "cm⁻¹": "cm-1",
    "wavenumbers": "cm-1",
    "wavenumber": "cm-1",
}


class SpectraError(ValueError):
    """Bad spectral input; the message names the file (or origin) and the problem."""


def normalize_unit(unit: str, origin: str = "<memory>") -> str:
    """Returns the canonical unit name ('nm', 'um' or 'cm-1') or raises naming the origin."""
    key = str(unit).strip().lower().replace(" ", "")
    if key not in _UNIT_ALIASES:
        raise SpectraError(
            f"{origin}: unknown axis unit {unit!r}; expected one of nm, um, cm-1 (or an alias)"
        )
    return _UNIT_ALIASES[key]


def to_wavenumber(axis: np.ndarray, unit: str) -> np.ndarray:
    """Converts an axis in `unit` to wavenumber (cm⁻¹) exactly (1e7 / nm, 1e4 / µm)."""
    axis = np.asarray(axis, dtype=np.float64)
    if unit == "cm-1":
        return axis.copy()
    return _WAVELENGTH_TO_CM1[unit] / axis


def from_wavenumber(wavenumber: np.ndarray, unit: str) -> np.ndarray:
    """Inverse of `to_wavenumber`."""
    wavenumber = np.asarray(wavenumber, dtype=np.float64)
    if unit == "cm-1":
        return wavenumber.copy()
    return _WAVELENGTH_TO_CM1[unit] / wavenumber


def check_axis(axis: np.ndarray, origin: str, unit: str | None = None) -> np.ndarray:
    """Checks that an axis is 1-D, finite, strictly monotonic (and positive for wavelengths)."""
    axis = np.asarray(axis, dtype=np.float64)
    if axis.ndim != 1 or axis.size < 2:
        raise SpectraError(
            f"{origin}: axis must be 1-D with at least 2 points, got shape {axis.shape}"
        )
    if not np.all(np.isfinite(axis)):
        bad = int(np.flatnonzero(~np.isfinite(axis))[0])
        raise SpectraError(f"{origin}: axis has a non-finite value at position {bad}")
    steps = np.diff(axis)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        bad = int(np.flatnonzero(np.sign(steps) != np.sign(steps[0]))[0]) if np.any(steps) else 0
        raise SpectraError(
            f"{origin}: axis is not strictly monotonic (first problem between points {bad} and "
            f"{bad + 1}: {float(axis[bad])} -> {float(axis[bad + 1])})"
        )
    if unit in _WAVELENGTH_TO_CM1 and np.any(axis <= 0):
        raise SpectraError(f"{origin}: wavelength axis has non-positive values")
    return axis


@dataclasses.dataclass(frozen=True, eq=False)
class Spectra:
    """A set of spectra sharing one physical axis.

    Attributes:
      values: (n, p) float64 intensities (absorbance, reflectance, counts, …), all finite.
      wavenumber: (p,) axis in cm⁻¹, strictly monotonic, in the column order of `values`.
      unit: the unit the axis came in ('nm', 'um' or 'cm-1'); `axis` gives it back in that unit.
      modality: 'NIR', 'IR' or 'Raman'.
      instrument: (n,) instrument id per spectrum.
      sample_id: (n,) sample id per spectrum; equal ids on two instruments mean the same sample.
      labels: (n, m) float64 reference values (NaN where a value was not measured).
      label_names: m names; label_units: m units ('' when unknown).
      origin: where the data came from (a file path), used in every error message.
      value_unit: what `values` measure, as the source states it (e.g. 'ABSORBANCE',
        'TRANSMITTANCE', 'log(1/R)'); '' when unknown.
    """

    values: np.ndarray
    wavenumber: np.ndarray
    unit: str
    modality: str
    instrument: np.ndarray
    sample_id: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...] = ()
    label_units: tuple[str, ...] = ()
    origin: str = "<memory>"
    value_unit: str = ""

    def __post_init__(self):
        origin = self.origin
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2:
            raise SpectraError(f"{origin}: values must be 2-D (n, p), got shape {values.shape}")
        n, p = values.shape
        if n == 0 or p == 0:
            raise SpectraError(f"{origin}: no spectra (shape {values.shape})")
        if not np.all(np.isfinite(values)):
            row, col = np.argwhere(~np.isfinite(values))[0]
            raise SpectraError(
                f"{origin}: non-finite value {float(values[row, col])} in spectrum {row}, point {col}"
            )
        unit = normalize_unit(self.unit, origin)
        wavenumber = check_axis(self.wavenumber, origin)
        if np.any(wavenumber <= 0) and self.modality != "Raman":
            raise SpectraError(f"{origin}: wavenumber axis has non-positive values")
        if wavenumber.size != p:
            raise SpectraError(
                f"{origin}: axis has {wavenumber.size} points but spectra have {p} columns"
            )
        if self.modality not in MODALITIES:
            raise SpectraError(
                f"{origin}: unknown modality {self.modality!r}; expected one of {MODALITIES}"
            )
        instrument = _per_spectrum(self.instrument, n, "instrument", origin)
        sample_id = _per_spectrum(self.sample_id, n, "sample_id", origin)
        labels = np.asarray(self.labels, dtype=np.float64)
        if labels.ndim == 1 and labels.size == 0:
            labels = np.zeros((n, 0))
        if labels.ndim != 2 or labels.shape[0] != n:
            raise SpectraError(f"{origin}: labels must have shape ({n}, m), got {labels.shape}")
        names = tuple(str(x) for x in self.label_names)
        units = tuple(str(x) for x in self.label_units) or ("",) * len(names)
        if len(names) != labels.shape[1] or len(units) != labels.shape[1]:
            raise SpectraError(
                f"{origin}: {labels.shape[1]} label columns but {len(names)} names and "
                f"{len(units)} units"
            )
        if len(set(names)) != len(names):
            raise SpectraError(f"{origin}: duplicate label names {names}")
        if np.any(np.isinf(labels)):
            row, col = np.argwhere(np.isinf(labels))[0]
            raise SpectraError(f"{origin}: infinite label {names[col]!r} in row {row}")
        for name, value in (
            ("values", values),
            ("wavenumber", wavenumber),
            ("unit", unit),
            ("instrument", instrument),
            ("sample_id", sample_id),
            ("labels", labels),
            ("label_names", names),
            ("label_units", units),
        ):
            object.__setattr__(self, name, value)
        for array in (values, wavenumber, instrument, sample_id, labels):
            array.setflags(write=False)

    # ----------------------------------------------------------------------------------------
    # Construction.

    @classmethod
    def from_axis(
        cls,
        values,
        axis,
        unit: str,
        *,
        modality: str,
        instrument: str | Sequence[str],
        sample_id: Sequence[str] | None = None,
        labels=None,
        label_names: Sequence[str] = (),
        label_units: Sequence[str] = (),
        origin: str = "<memory>",
        value_unit: str = "",
    ) -> Spectra:
        """Builds spectra from an axis in any supported unit (converted exactly to cm⁻¹)."""
        unit = normalize_unit(unit, origin)
        axis = check_axis(axis, origin, unit)
        values = np.asarray(values, dtype=np.float64)
        n = values.shape[0] if values.ndim == 2 else 0
        if isinstance(instrument, str):
            instrument = [instrument] * n
        if sample_id is None:
            sample_id = [str(i) for i in range(n)]
        if labels is None:
            labels = np.zeros((n, 0))
        return cls(
            values=values,
            wavenumber=to_wavenumber(axis, unit),
            unit=unit,
            modality=modality,
            instrument=np.asarray(instrument),
            sample_id=np.asarray(sample_id),
            labels=labels,
            label_names=tuple(label_names),
            label_units=tuple(label_units),
            origin=origin,
            value_unit=str(value_unit),
        )

    # ----------------------------------------------------------------------------------------
    # Views.

    @property
    def n(self) -> int:
        return self.values.shape[0]

    @property
    def axis(self) -> np.ndarray:
        """The axis in the unit the data came in."""
        return from_wavenumber(self.wavenumber, self.unit)

    def label(self, name: str, rows=None) -> np.ndarray:
        """One label column (of the given rows, default all); raises if it is absent or if a
        requested row has no value (other rows may lack one)."""
        if name not in self.label_names:
            raise SpectraError(
                f"{self.origin}: no label {name!r}; available labels are {list(self.label_names)}"
            )
        rows = np.arange(self.n) if rows is None else np.asarray(rows, dtype=int)
        column = self.labels[rows, self.label_names.index(name)]
        missing = np.flatnonzero(np.isnan(column))
        if missing.size:
            row = rows[missing[0]]
            raise SpectraError(
                f"{self.origin}: label {name!r} is missing for {missing.size} of the requested "
                f"spectra (first: row {row}, sample {str(self.sample_id[row])!r})"
            )
        return column

    def has_label(self, name: str) -> np.ndarray:
        """(n,) whether each spectrum has a value of label `name`."""
        if name not in self.label_names:
            self.label(name)  # raises, naming the available labels
        return ~np.isnan(self.labels[:, self.label_names.index(name)])

    def select(self, index) -> Spectra:
        """Rows by integer index or boolean mask."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return dataclasses.replace(
            self,
            values=self.values[index],
            instrument=self.instrument[index],
            sample_id=self.sample_id[index],
            labels=self.labels[index],
        )

    def on_instrument(self, instrument: str) -> Spectra:
        """The spectra measured on one instrument."""
        mask = self.instrument == instrument
        if not mask.any():
            raise SpectraError(
                f"{self.origin}: no spectra from instrument {instrument!r}; "
                f"instruments are {sorted(set(self.instrument.tolist()))}"
            )
        return self.select(mask)

    def resample(self, wavenumber: np.ndarray) -> Spectra:
        """Linear interpolation onto a new wavenumber grid. Refuses to extrapolate."""
        target = check_axis(wavenumber, f"{self.origin} (resampling grid)")
        lo, hi = np.min(self.wavenumber), np.max(self.wavenumber)
        # Relative tolerance covers round-off of exact unit conversions of the same grid.
        tol = 1e-9 * max(abs(lo), abs(hi))
        if target.min() < lo - tol or target.max() > hi + tol:
            raise SpectraError(
                f"{self.origin}: resampling grid [{target.min():.6g}, {target.max():.6g}] cm-1 "
                f"extends beyond the measured range [{lo:.6g}, {hi:.6g}] cm-1; "
                "refusing to extrapolate"
            )
        values = interpolate_rows(self.values, self.wavenumber, np.clip(target, lo, hi))
        return dataclasses.replace(self, values=values, wavenumber=target)


def interpolate_rows(values: np.ndarray, wavenumber: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(n, len(at)): each row of `values`, on `wavenumber` (any order), linearly interpolated at
    `at` (which the caller keeps inside the measured range)."""
    order = np.argsort(wavenumber)
    xs, values = np.asarray(wavenumber)[order], np.asarray(values)[:, order]
    return np.stack([np.interp(at, xs, row) for row in values])


def _per_spectrum(array, n: int, name: str, origin: str) -> np.ndarray:
    array = np.asarray(array).astype(str)
    if array.shape != (n,):
        raise SpectraError(
            f"{origin}: {name} must have one entry per spectrum ({n}), got {array.shape}"
        )
    return array


# Two axes are the same when every point agrees to this fraction of the smallest point spacing:
# files of one instrument printed with 4 or 5 decimals (3e-5 nm apart) share an axis.
SAME_AXIS_TOLERANCE = 1e-3


def same_axis(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two wavenumber axes are the same points, up to the printing of their values."""
    if a.shape != b.shape:
        return False
    spacing = np.min(np.abs(np.diff(a))) if a.size > 1 else abs(float(a[0]))
    return bool(np.max(np.abs(a - b)) <= SAME_AXIS_TOLERANCE * spacing)


def concatenate(parts: Sequence[Spectra], origin: str | None = None) -> Spectra:
    """Stacks spectra that share an axis (`same_axis`; the first part's is kept), modality, label
    names and value unit."""
    if not parts:
        raise SpectraError("concatenate: nothing to concatenate")
    first = parts[0]
    for part in parts[1:]:
        if not same_axis(part.wavenumber, first.wavenumber):
            raise SpectraError(
                f"{part.origin}: axis does not match that of {first.origin}; resample first"
            )
        if part.modality != first.modality or part.label_names != first.label_names:
            raise SpectraError(
                f"{part.origin}: modality/labels {part.modality}/{part.label_names} differ from "
                f"{first.origin}: {first.modality}/{first.label_names}"
            )
        if part.value_unit != first.value_unit:
            raise SpectraError(
                f"{part.origin}: values are {part.value_unit!r} but those of {first.origin} are "
                f"{first.value_unit!r}"
            )
    return dataclasses.replace(
        first,
        values=np.concatenate([p.values for p in parts]),
        instrument=np.concatenate([p.instrument for p in parts]),
        sample_id=np.concatenate([p.sample_id for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        origin=origin or first.origin,
    )


def paired(a: Spectra, b: Spectra) -> tuple[Spectra, Spectra]:
    """Rows of `a` and `b` reordered so row i is the same sample on both (by sample_id).

    Raises:
      SpectraError: a sample id repeats within `a` or `b` (pairing would be ambiguous).
    """
    for part in (a, b):
        check_unique_ids(part)
    in_b = set(b.sample_id.tolist())
    common = [s for s in a.sample_id.tolist() if s in in_b]
    if not common:
        raise SpectraError(f"{a.origin} / {b.origin}: no sample ids in common; cannot pair")
    index_a = {s: i for i, s in enumerate(a.sample_id)}
    index_b = {s: i for i, s in enumerate(b.sample_id)}
    return (
        a.select([index_a[s] for s in common]),
        b.select([index_b[s] for s in common]),
    )


def check_unique_ids(spectra: Spectra) -> None:
    """Refuses repeated sample ids on one instrument (replicates must be averaged or renamed)."""
    for instrument in np.unique(spectra.instrument):
        ids = spectra.sample_id[spectra.instrument == instrument]
        unique, counts = np.unique(ids, return_counts=True)
        if np.any(counts > 1):
            repeated = unique[counts > 1]
            raise SpectraError(
                f"{spectra.origin}: sample id {str(repeated[0])!r} appears {int(counts.max())} "
                f"times on instrument {str(instrument)!r} ({repeated.size} repeated ids); average "
                "replicates or give them distinct ids"
            )


def units_per_label(units, names: Sequence[str], origin: str) -> tuple[str, ...]:
    """One unit per label name from a sequence or a name -> unit mapping ('' when unknown)."""
    if units is None:
        return ("",) * len(names)
    if isinstance(units, Mapping):
        unknown = sorted(set(units) - set(names))
        if unknown:
            raise SpectraError(f"{origin}: units given for unknown label(s) {unknown}")
        return tuple(str(units.get(name, "")) for name in names)
    units = tuple(str(unit) for unit in units)
    if len(units) != len(names):
        raise SpectraError(f"{origin}: {len(units)} label units for {len(names)} labels")
    return units
