"""What every public-corpus converter shares: settings, the converted spectrum, the conversion
onto the physical axis, a two-column text reader and the build report behind `manifest.json`.

The physical-axis conversion (`physical_spectrum`) turns one measured spectrum into a
`CorpusSpectrum`:
1. the abscissa goes to cm⁻¹: wavenumbers stay, wavelengths become 1e7/nm (1e4/µm); a Raman
   spectrum recorded against the *absolute* scattered wavelength λ becomes the Raman shift
   1e7/λ_laser − 1e7/λ;
2. points are put in ascending order; a repeated abscissa or a non-finite value is refused;
3. Raman spectra are cut to shifts ≥ `raman_min_shift` (the laser line and the anti-Stokes side
   are not part of the spectrum); infrared spectra must have positive wavenumbers, and are
   called NIR when most of their span lies above 4000 cm⁻¹ (the rule of the JCAMP-DX reader);
4. ordinates in transmittance become absorbance −log₁₀ T (percent when the unit says so or the
   values exceed 2; T is floored at `transmittance_floor` so an opaque band stays finite) and
   reflectance becomes log₁₀(1/R); everything else is kept as given, with its unit recorded;
5. with a `step` (cm⁻¹), a spectrum sampled more finely than it is averaged onto the fixed grid
   of multiples of `step` (each grid value is the mean of the linearly interpolated spectrum over
   its cell, so nothing aliases); coarser spectra keep their own points. No spectrum is ever
   stretched over its own range: each point keeps its true wavenumber.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
from typing import Any

import numpy as np

from caltransfer_jax.data.jcamp_dx import NIR_MIN_WAVENUMBER, NIR_SHARE
from caltransfer_jax.data.rawfile import check_text, read_bytes
from caltransfer_jax.data.spectra import (
    MODALITIES,
    SpectraError,
    normalize_unit,
    to_wavenumber,
)
from data_prep.download import Digests, file_digests, write_atomic
from data_prep.public_corpora.lines import RAMAN_INTENSITIES

MIN_POINTS = 16  # fewer points are not a spectrum worth learning from
# Vibrational Raman bands end near 4000 cm⁻¹ (O–H stretch); a wavelength-recorded spectrum
# reaching far beyond was taken with another laser than the one assumed.
RAMAN_MAX_SHIFT = 5000.0
_SEPARATOR = re.compile(r"[,;\s]+")


@dataclasses.dataclass(frozen=True)
class Options:
    """Conversion settings of a build (all recorded in the manifest).

    Attributes:
      step: grid step in cm⁻¹ (see the module docstring, item 5); None keeps measured spectra on
        their own points. Computed line lists are always put on a grid of this step (2 if None).
      hwhm: half width at half maximum (cm⁻¹) of the Lorentzian given to computed modes.
      ir_range, raman_range: (lo, hi) cm⁻¹ of the computed-spectrum grids; USPTO spectra are
        cut to `ir_range`.
      raman_min_shift: measured Raman spectra are cut below this shift (cm⁻¹).
      raman_intensity: 'activity' keeps computed Raman activities; 'cross_section' converts them
        to relative intensities (`lines.raman_cross_section`).
      laser_nm: excitation wavelength: of the cross-section conversion, and of measured Raman
        spectra recorded against absolute wavelength (MPX).
      temperature: K, for the cross-section's Bose–Einstein factor.
      transmittance_floor: smallest transmittance (or reflectance) used for −log₁₀.
      archives: RRUFF archives to download (empty: the default set).
      ids: NIST WebBook compound ids to download.
      max_records: stop after this many spectra (smoke builds).
      strict: stop at the first unreadable record instead of skipping it.
    """

    step: float | None = None
    hwhm: float = 10.0
    ir_range: tuple[float, float] = (400.0, 4000.0)
    raman_range: tuple[float, float] = (100.0, 4000.0)
    raman_min_shift: float = 50.0
    raman_intensity: str = "activity"
    laser_nm: float = 532.0
    temperature: float = 298.15
    transmittance_floor: float = 1e-4
    archives: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    max_records: int | None = None
    strict: bool = False

    def __post_init__(self):
        if self.raman_intensity not in RAMAN_INTENSITIES:
            raise ValueError(
                f"raman_intensity must be one of {RAMAN_INTENSITIES}, got {self.raman_intensity!r}"
            )
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be positive, got {self.step}")
        if self.hwhm <= 0 or self.laser_nm <= 0 or self.temperature <= 0:
            raise ValueError("hwhm, laser_nm and temperature must be positive")
        if not 0 < self.transmittance_floor < 1:
            raise ValueError(
                f"transmittance_floor must be in (0, 1), got {self.transmittance_floor}"
            )


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """A public corpus: what it is and where it comes from."""

    name: str
    title: str
    url: str
    licence: str
    citation: str


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """A downloadable input: URL, path under the raw folder, published sha256 (None when the
    publisher gives none) and the bytes the file starts with."""

    url: str
    path: str
    sha256: str | None = None
    magic: bytes = b""


@dataclasses.dataclass(frozen=True)
class CorpusSpectrum:
    """One converted spectrum.

    Attributes:
      name: stable id within its source (relative file path, block, table row, …).
      wavenumber: (p,) ascending cm⁻¹ (Raman shift for Raman).
      values: (p,) ordinates.
      modality: 'NIR', 'IR' or 'Raman'.
      instrument: instrument (or computation) name.
      value_unit: what `values` measure.
    """

    name: str
    wavenumber: np.ndarray
    values: np.ndarray
    modality: str
    instrument: str
    value_unit: str


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A record that was not converted, and why (the reason names the file)."""

    record: str
    reason: str


def infrared_modality(wavenumber: np.ndarray) -> str:
    """'NIR' when at least NIR_SHARE of the span lies above 4000 cm⁻¹, else 'IR'."""
    low, high = float(wavenumber.min()), float(wavenumber.max())
    return "NIR" if (high - max(low, NIR_MIN_WAVENUMBER)) >= NIR_SHARE * (high - low) else "IR"


def physical_spectrum(
    origin: str,
    name: str,
    axis,
    values,
    *,
    unit: str,
    modality: str,
    instrument: str,
    options: Options,
    value_unit: str = "",
) -> CorpusSpectrum:
    """A measured spectrum on its physical axis (steps 1–5 of the module docstring).

    Args:
      origin: file (and place in it) for error messages.
      name: the record's id.
      axis, values: (p,) abscissae and ordinates as read.
      unit: abscissa unit ('cm-1', 'nm', 'um' or an alias). For Raman, 'nm'/'um' means the
        absolute scattered wavelength (converted with `options.laser_nm`).
      modality: 'Raman' or 'IR' ('IR' becomes 'NIR' by range; 'NIR' is kept).
      instrument: instrument name.
      options: conversion settings.
      value_unit: ordinate unit as the source states it.

    Raises:
      SpectraError: naming `origin` and the problem.
    """
    if modality not in MODALITIES:
        raise SpectraError(f"{origin}: unknown modality {modality!r}; expected one of {MODALITIES}")
    x = np.asarray(axis, dtype=np.float64).ravel()
    y = np.asarray(values, dtype=np.float64).ravel()
    if x.size != y.size:
        raise SpectraError(f"{origin}: {x.size} abscissae but {y.size} ordinates")
    for what, array in (("abscissa", x), ("ordinate", y)):
        if not np.all(np.isfinite(array)):
            bad = int(np.flatnonzero(~np.isfinite(array))[0])
            raise SpectraError(f"{origin}: non-finite {what} at point {bad}")
    unit = normalize_unit(unit, origin)
    if unit != "cm-1" and np.any(x <= 0):
        raise SpectraError(f"{origin}: non-positive wavelength")
    if modality == "Raman" and unit != "cm-1":
        wavenumber = 1e7 / options.laser_nm - to_wavenumber(x, unit)
        if wavenumber.max() > RAMAN_MAX_SHIFT:
            raise SpectraError(
                f"{origin}: scattered wavelengths {x.min():g}-{x.max():g} {unit} give Raman "
                f"shifts up to {wavenumber.max():.0f} cm-1 with a {options.laser_nm:g} nm laser; "
                "the excitation wavelength does not fit these data (see --laser_nm)"
            )
    else:
        wavenumber = to_wavenumber(x, unit)
    order = np.argsort(wavenumber, kind="stable")
    wavenumber, y = wavenumber[order], y[order]
    repeated = np.flatnonzero(np.diff(wavenumber) == 0)
    if repeated.size:
        raise SpectraError(f"{origin}: abscissa {wavenumber[repeated[0]]:.8g} cm-1 appears twice")
    if modality == "Raman":
        keep = wavenumber >= options.raman_min_shift
        wavenumber, y = wavenumber[keep], y[keep]
    elif wavenumber[0] <= 0:
        raise SpectraError(f"{origin}: non-positive wavenumber {wavenumber[0]:g} cm-1")
    if wavenumber.size < MIN_POINTS:
        where = (
            f" at Raman shifts >= {options.raman_min_shift:g} cm-1" if modality == "Raman" else ""
        )
        raise SpectraError(
            f"{origin}: {wavenumber.size} points{where}; at least {MIN_POINTS} needed"
        )
    if modality == "IR":
        modality = infrared_modality(wavenumber)
    y, value_unit = _ordinate(y, value_unit, modality, options)
    if options.step is not None and np.median(np.diff(wavenumber)) < options.step:
        wavenumber, y = bin_average(origin, wavenumber, y, options.step)
    return CorpusSpectrum(name, wavenumber, y, modality, instrument, value_unit)


def _ordinate(y: np.ndarray, unit: str, modality: str, options: Options) -> tuple[np.ndarray, str]:
    """Infrared transmittance/reflectance as −log₁₀ (step 4); other ordinates as given."""
    lowered = unit.lower()
    if modality == "Raman" or not any(w in lowered for w in ("transmittance", "reflectance")):
        return y, unit
    if "%" in lowered or "percent" in lowered or y.max() > 2:
        y = y / 100.0
    clipped = np.clip(y, options.transmittance_floor, None)
    if "transmittance" in lowered:
        return -np.log10(clipped), f"absorbance (-log10 of {unit})"
    return -np.log10(clipped), f"log(1/R) (from {unit})"


def bin_average(
    origin: str, wavenumber: np.ndarray, values: np.ndarray, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cell means of the linear interpolant on the grid k·step (cells lying inside the data).

    Args:
      origin: for error messages.
      wavenumber: (p,) strictly ascending cm⁻¹.
      values: (p,) ordinates.
      step: grid step in cm⁻¹.

    Returns:
      (grid (m,), means (m,)): grid points k·step whose cell [g − step/2, g + step/2] lies within
      [wavenumber[0], wavenumber[-1]].
    """
    first = int(np.ceil((wavenumber[0] + step / 2) / step - 1e-9))
    last = int(np.floor((wavenumber[-1] - step / 2) / step + 1e-9))
    if last - first + 1 < MIN_POINTS:
        raise SpectraError(
            f"{origin}: the range {wavenumber[0]:g}-{wavenumber[-1]:g} cm-1 holds fewer than "
            f"{MIN_POINTS} cells of {step:g} cm-1"
        )
    centres = step * np.arange(first, last + 1, dtype=np.float64)
    edges = np.append(centres - step / 2, centres[-1] + step / 2)
    widths = np.diff(wavenumber)
    slopes = np.diff(values) / widths
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (values[1:] + values[:-1]) * widths)])
    i = np.clip(np.searchsorted(wavenumber, edges, side="right") - 1, 0, wavenumber.size - 2)
    d = edges - wavenumber[i]
    integral = cumulative[i] + values[i] * d + 0.5 * slopes[i] * d * d
    return centres, np.diff(integral) / step


@dataclasses.dataclass(frozen=True)
class TwoColumns:
    """A two-column text file: `##KEY=value` header lines (keys upper case without spaces or
    underscores), an optional column-name line and the (x, y) data."""

    header: dict[str, str]
    columns: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray


def read_two_columns(path: str | os.PathLike) -> TwoColumns:
    """Reads two-column text (RRUFF, CSV exports): '##KEY=value' header lines, an optional line
    of column names, then 'x, y' lines (comma, semicolon or blank separated) up to '##END=' or
    the end of the file. Lines starting with a single '#' are comments.

    Raises:
      SpectraError: naming the file and line of the problem.
    """
    origin, data = read_bytes(path)
    check_text(origin, data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # older exports: accented locality names
    header: dict[str, str] = {}
    columns: tuple[str, ...] = ()
    rows: list[tuple[float, float]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("##"):
            key, _, value = line[2:].partition("=")
            key = re.sub(r"[\s_]", "", key).upper()
            if key == "END":
                break
            header.setdefault(key, value.strip())
            continue
        if not line or line.startswith("#"):
            continue
        fields = [f for f in _SEPARATOR.split(line) if f]
        try:
            x, y = (float(f) for f in fields)
        except ValueError:
            if not rows and not columns and len(fields) == 2:
                columns = tuple(fields)
                continue
            raise SpectraError(
                f"{origin}: line {number}: expected two numbers, got {line[:60]!r}"
            ) from None
        rows.append((x, y))
    if not rows:
        raise SpectraError(f"{origin}: no data lines")
    array = np.array(rows)
    return TwoColumns(header, columns, array[:, 0], array[:, 1])


class Report:
    """Inputs and skipped records of one build, for its manifest."""

    def __init__(self, raw_dir: pathlib.Path):
        self.raw_dir = raw_dir
        self.inputs: dict[str, dict[str, Any]] = {}
        self.skipped: list[Skipped] = []
        self._digests: dict[str, Digests] = {}

    def relative(self, path: pathlib.Path) -> str:
        """The path relative to the raw folder (as given when outside it)."""
        try:
            return path.resolve().relative_to(self.raw_dir.resolve()).as_posix()
        except ValueError:
            return str(path)

    def remember(self, path: pathlib.Path, digests: Digests) -> None:
        """Stores digests computed elsewhere (a download) so the file is not read again."""
        self._digests[self.relative(path)] = digests

    def digests(self, path: pathlib.Path) -> Digests:
        """The file's digests, computed once per build."""
        key = self.relative(path)
        if key not in self._digests:
            self._digests[key] = file_digests(path)
        return self._digests[key]

    def add_input(self, path: pathlib.Path) -> None:
        """Records a file the conversion reads, with its sha256, MD5 and size."""
        digests = self.digests(path)
        self.inputs[self.relative(path)] = {
            "sha256": digests.sha256,
            "md5": digests.md5,
            "bytes": digests.size,
        }

    def skip(self, skipped: Skipped) -> None:
        self.skipped.append(skipped)


def write_json(path: pathlib.Path, content: dict[str, Any]) -> None:
    """Writes `content` as indented JSON, atomically."""
    text = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, lambda file: file.write(text.encode("utf-8")))


def install_build(built: str | os.PathLike, final: pathlib.Path) -> None:
    """Moves a complete build from its staging folder to `final`, replacing an earlier one."""
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(built, final)
