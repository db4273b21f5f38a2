"""Readers of spectra files: wide CSV tables here, MATLAB .mat (`matlab`) and JCAMP-DX (`jcamp_dx`).

Each reader returns `Spectra` on the physical axis of the file. Bad input raises a `SpectraError`
whose message starts with the file and says what is wrong (and where: line, column, variable or
block); no reader writes anything.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np

from caltransfer_jax.data.jcamp_dx import read_jcamp, read_jcamp_blocks
from caltransfer_jax.data.matlab import read_mat
from caltransfer_jax.data.rawfile import PathLike, check_text, read_bytes
from caltransfer_jax.data.spectra import (
    Spectra,
    SpectraError,
    check_axis,
    normalize_unit,
    units_per_label,
)

__all__ = [
    "CsvFormat",
    "LabelTable",
    "read_jcamp",
    "read_jcamp_blocks",
    "read_label_csv",
    "read_mat",
    "read_wide_csv",
]

# Cells that mean "not measured" in a label column.
_MISSING = frozenset({"", "na", "nan", "n/a"})
DELIMITERS = (",", ";", "\t", "|", " ")
DECIMALS = (".", ",")
# The name given to a first column whose header cell is empty: row names, as R's `write.csv`
# and spreadsheet exports write them. Readers take it as the sample ids.
ROW_NAMES = "<row names>"


@dataclasses.dataclass(frozen=True)
class CsvFormat:
    """How a CSV file is written: field delimiter and decimal mark (`,` needs another delimiter)."""

    delimiter: str = ","
    decimal: str = "."

    def check(self, origin: str) -> None:
        if self.delimiter not in DELIMITERS:
            raise SpectraError(
                f"{origin}: delimiter {self.delimiter!r} is not one of {list(DELIMITERS)}"
            )
        if self.decimal not in DECIMALS:
            raise SpectraError(f"{origin}: decimal mark {self.decimal!r} is not one of {DECIMALS}")
        if self.decimal == self.delimiter:
            raise SpectraError(
                f"{origin}: the decimal mark and the delimiter are both {self.decimal!r}; files "
                "with a decimal comma separate fields with ';' (delimiter = \";\")"
            )

    def number(self, cell: str) -> float:
        return float(cell.replace(",", ".") if self.decimal == "," else cell)


# ---------------------------------------------------------------------------------------------
# CSV.


@dataclasses.dataclass(frozen=True)
class _Table:
    origin: str
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # line of each row in the file, for messages
    format: CsvFormat

    def where(self, row: int, column: int) -> str:
        return (
            f"{self.origin}: line {self.lines[row]}, column {column + 1} ({self.header[column]!r})"
        )

    def require(self, names: Sequence[str]) -> list[int]:
        missing = [name for name in names if name not in self.header]
        if missing:
            shown = self.header[:8] + (["…"] if len(self.header) > 8 else [])
            raise SpectraError(
                f"{self.origin}: missing column(s) {missing}; the header has {shown}"
            )
        return [self.header.index(name) for name in names]


def _read_csv(path: PathLike, fmt: CsvFormat = CsvFormat()) -> _Table:
    origin, data = read_bytes(path)
    fmt.check(origin)
    check_text(origin, data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpectraError(f"{origin}: not UTF-8 text (byte offset {error.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=fmt.delimiter)
    rows, lines = [], []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append([cell.strip() for cell in row])
                lines.append(reader.line_num)
    except csv.Error as error:
        raise SpectraError(f"{origin}: line {reader.line_num}: {error}") from None
    if not rows:
        raise SpectraError(f"{origin}: empty file")
    header, rows, lines = rows[0], rows[1:], lines[1:]
    if not rows:
        raise SpectraError(f"{origin}: header only, no data rows")
    if len(header) == 1 and fmt.delimiter not in header[0]:
        other = [d for d in DELIMITERS[:4] if d in header[0]]
        if other:
            raise SpectraError(
                f"{origin}: the header is one column; the file seems separated by {other[0]!r}, "
                f"not {fmt.delimiter!r} (set the delimiter)"
            )
    if header and not header[0]:
        header = [ROW_NAMES, *header[1:]]
    for index, name in enumerate(header):
        if not name:
            raise SpectraError(f"{origin}: column {index + 1} of the header has no name")
        if header.index(name) != index:
            raise SpectraError(f"{origin}: duplicate column name {name!r} in the header")
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            raise SpectraError(
                f"{origin}: line {line} has {len(row)} fields but the header has "
                f"{len(header)} (ragged rows)"
            )
    return _Table(origin, header, rows, lines, fmt)


def _parse(table: _Table, columns: list[int], what: str, missing_ok: bool = False) -> np.ndarray:
    """The cells of `columns` as float64; missing label cells become NaN where allowed."""
    values = np.empty((len(table.rows), len(columns)))
    number = table.format.number
    for i, row in enumerate(table.rows):
        try:
            values[i] = [number(row[j]) for j in columns]
        except ValueError:
            values[i] = [_cell(table, i, j, what, missing_ok) for j in columns]
    bad = np.isinf(values) if missing_ok else ~np.isfinite(values)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        cell = table.rows[i][columns[k]]
        problem = "missing" if cell.lower() in _MISSING else "non-finite"
        raise SpectraError(f"{table.where(i, columns[k])}: {problem} value {cell!r} in {what}")
    return values


def _cell(table: _Table, i: int, j: int, what: str, missing_ok: bool) -> float:
    cell = table.rows[i][j]
    if cell.lower() in _MISSING:
        if missing_ok:
            return math.nan
        raise SpectraError(f"{table.where(i, j)}: missing value {cell!r} in {what}")
    try:
        return table.format.number(cell)
    except ValueError:
        hint = ""
        if "," in cell and table.format.decimal == ".":
            hint = '; for a decimal comma set decimal = ","'
        raise SpectraError(
            f"{table.where(i, j)}: {cell!r} is not a number ({what}){hint}"
        ) from None


def _sample_ids(table: _Table, column: str | None, unique: bool = True) -> list[str] | None:
    if column is None and table.header[0] == ROW_NAMES:
        column = ROW_NAMES
    if column is None:
        return None
    (j,) = table.require([column])
    seen: dict[str, int] = {}
    for i, row in enumerate(table.rows):
        if not row[j]:
            raise SpectraError(f"{table.where(i, j)}: empty sample id")
        if row[j] in seen and unique:
            raise SpectraError(
                f"{table.where(i, j)}: sample id {row[j]!r} repeats that of line {seen[row[j]]}"
            )
        seen.setdefault(row[j], table.lines[i])
    return [row[j] for row in table.rows]


def read_wide_csv(
    path: PathLike,
    *,
    axis_unit: str,
    modality: str,
    instrument: str,
    label_columns: Sequence[str] = (),
    label_units: Sequence[str] | Mapping[str, str] | None = None,
    meta_columns: Sequence[str] = (),
    sample_id_column: str | None = None,
    allow_missing_labels: bool = False,
    value_unit: str = "",
    csv_format: CsvFormat = CsvFormat(),
    unique_ids: bool = True,
) -> Spectra:
    """Reads a CSV file with one spectrum per row and the axis in the header.

    Every column not named as a label, meta or sample-id column is a spectral column whose header
    is its axis value (e.g. corn `m5spec.csv`: 700 wavelengths; the tablet files: `SampleType`,
    three labels, then 650 wavelengths).

    Args:
      path: the CSV file (UTF-8, one header row; `csv_format` gives delimiter and decimal mark).
      axis_unit: unit of the header axis values ('nm', 'um', 'cm-1' or an alias).
      modality: 'NIR', 'IR' or 'Raman'.
      instrument: instrument id given to every spectrum.
      label_columns: columns holding reference values, in the order wanted.
      label_units: one unit per label column (or a name -> unit mapping); '' when unknown.
      meta_columns: other non-spectral columns, skipped (read them with `read_label_csv`).
      sample_id_column: column of sample ids; without it the ids are the row names when the first
        header cell is empty (`ROW_NAMES`), else the row numbers '0', '1', …, so that files of
        two instruments with the same row order pair up.
      allow_missing_labels: read empty/NA label cells as NaN instead of refusing them.
      value_unit: what the values measure (e.g. 'log(1/R)'), recorded on the result.
      csv_format: delimiter and decimal mark.
      unique_ids: refuse a sample id that repeats (False: keep replicates, the caller decides).

    Returns:
      Spectra with the file's axis, in column order.
    """
    table = _read_csv(path, csv_format)
    origin = table.origin
    label_columns = tuple(label_columns)
    if sample_id_column is None and table.header[0] == ROW_NAMES:
        sample_id_column = ROW_NAMES
    declared = [*label_columns, *meta_columns, *([sample_id_column] if sample_id_column else [])]
    label_index = table.require(label_columns)
    table.require(declared)
    unit = normalize_unit(axis_unit, origin)
    columns = [j for j, name in enumerate(table.header) if name not in declared]
    if not columns:
        raise SpectraError(f"{origin}: no spectral columns; every column is a declared one")
    axis = np.empty(len(columns))
    for k, j in enumerate(columns):
        try:
            axis[k] = csv_format.number(table.header[j])
        except ValueError:
            raise SpectraError(
                f"{origin}: column {j + 1} header {table.header[j]!r} is neither an axis value "
                f"({unit}) nor a declared label, meta or sample id column"
            ) from None
    _check_unique(axis, columns, origin)
    values = _parse(table, columns, "spectra")
    labels = _parse(table, label_index, "labels", missing_ok=allow_missing_labels)
    return Spectra.from_axis(
        values,
        check_axis(axis, origin, unit),
        unit,
        modality=modality,
        instrument=instrument,
        sample_id=_sample_ids(table, sample_id_column, unique_ids),
        labels=labels,
        label_names=label_columns,
        label_units=units_per_label(label_units, label_columns, origin),
        origin=origin,
        value_unit=value_unit,
    )


def _check_unique(axis: np.ndarray, columns: list[int], origin: str) -> None:
    unique, counts = np.unique(axis, return_counts=True)
    if np.any(counts > 1):
        value = unique[counts > 1][0]
        where = [columns[k] + 1 for k in np.flatnonzero(axis == value)]
        raise SpectraError(f"{origin}: duplicate axis value {value:g} in columns {where}")


@dataclasses.dataclass(frozen=True)
class LabelTable:
    """Reference values read without spectra (e.g. corn `propvals.csv`).

    Attributes:
      values: (n, m) float64; NaN only where missing values were allowed.
      names: the m label names; units: their units ('' when unknown).
      sample_id: (n,) ids, or None when the file has none (rows then pair by position).
      meta: other requested columns, as strings.
      origin: the file.
    """

    values: np.ndarray
    names: tuple[str, ...]
    units: tuple[str, ...]
    sample_id: np.ndarray | None
    meta: dict[str, np.ndarray]
    origin: str

    def attach(self, spectra: Spectra) -> Spectra:
        """`spectra` with these labels, matched by sample id (or by row when this has no ids)."""
        if self.sample_id is None:
            if len(self.values) != spectra.n:
                raise SpectraError(
                    f"{self.origin}: {len(self.values)} label rows but {spectra.origin} has "
                    f"{spectra.n} spectra; without sample ids they pair by row"
                )
            rows = np.arange(spectra.n)
        else:
            lookup = {s: i for i, s in enumerate(self.sample_id.tolist())}
            missing = [s for s in spectra.sample_id.tolist() if s not in lookup]
            if missing:
                raise SpectraError(
                    f"{self.origin}: no labels for {len(missing)} sample(s) of "
                    f"{spectra.origin}, e.g. {missing[:3]}"
                )
            rows = np.array([lookup[s] for s in spectra.sample_id.tolist()], dtype=int)
        return dataclasses.replace(
            spectra, labels=self.values[rows], label_names=self.names, label_units=self.units
        )


def read_label_csv(
    path: PathLike,
    *,
    label_columns: Sequence[str] | None = None,
    label_units: Sequence[str] | Mapping[str, str] | None = None,
    meta_columns: Sequence[str] = (),
    sample_id_column: str | None = None,
    allow_missing_labels: bool = False,
    csv_format: CsvFormat = CsvFormat(),
) -> LabelTable:
    """Reads reference values (and optional text columns) from a CSV file.

    Args:
      path: the CSV file.
      label_columns: numeric columns to read; None reads every column that is not a meta or
        sample-id column; other columns are ignored.
      label_units: one unit per label column (or a name -> unit mapping).
      meta_columns: text columns to return in `LabelTable.meta` (e.g. the tablets' SampleType).
      sample_id_column: column of sample ids, if the file has one.
      allow_missing_labels: read empty/NA cells as NaN instead of refusing them.
      csv_format: delimiter and decimal mark.
    """
    table = _read_csv(path, csv_format)
    if sample_id_column is None and table.header[0] == ROW_NAMES:
        sample_id_column = ROW_NAMES
    other = [*meta_columns, *([sample_id_column] if sample_id_column else [])]
    if label_columns is None:
        label_columns = [name for name in table.header if name not in other]
    names = tuple(label_columns)
    values = _parse(table, table.require(names), "labels", missing_ok=allow_missing_labels)
    meta = {
        name: np.array([row[j] for row in table.rows])
        for name, j in zip(meta_columns, table.require(meta_columns), strict=True)
    }
    ids = _sample_ids(table, sample_id_column)
    return LabelTable(
        values=values,
        names=names,
        units=units_per_label(label_units, names, table.origin),
        sample_id=None if ids is None else np.array(ids),
        meta=meta,
        origin=table.origin,
    )
