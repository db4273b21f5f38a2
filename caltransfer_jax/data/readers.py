"""Readers of spectra files: wide CSV tables, MATLAB .mat files and (from `jcamp_dx`) JCAMP-DX.

Each reader returns `Spectra` on the physical axis of the file. Bad input raises a `SpectraError`
whose message starts with the file and says what is wrong (and where: line, column, variable or
block); no reader writes anything.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import struct
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.io

from caltransfer_jax.data.jcamp_dx import read_jcamp, read_jcamp_blocks
from caltransfer_jax.data.rawfile import FLOAT32_MAX, PathLike, check_text, read_bytes
from caltransfer_jax.data.spectra import Spectra, SpectraError, check_axis, normalize_unit

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


def _units(units, names: Sequence[str], origin: str) -> tuple[str, ...]:
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
        label_units=_units(label_units, label_columns, origin),
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
        units=_units(label_units, names, table.origin),
        sample_id=None if ids is None else np.array(ids),
        meta=meta,
        origin=table.origin,
    )


# ---------------------------------------------------------------------------------------------
# MATLAB .mat.

# Largest decoded size of the variables `read_mat` reads (bytes); `max_decoded_bytes=` overrides
# it per call.
MAX_MAT_DECODED_BYTES = 1 << 30
_MAT_HEADER_BYTES = 128
# Deepest nesting of cells/structs read (scipy recurses in C: a few thousand levels crash it).
_MAT_MAX_DEPTH = 64
# v5 element types and array classes (MATLAB's MAT-file format, tables 1-2 and 1-3).
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED, _MI_UTF8 = 1, 5, 6, 14, 15, 16
_MX_CELL, _MX_OBJECT, _MX_OPAQUE = 1, 3, 17
_MX_CONTAINERS = {1: "cell", 2: "struct", 3: "object"}
# Decoded bytes read from a compressed variable to find its name; zlib input/output pieces.
_MAT_NAME_PREFIX = 1 << 16
_INFLATE_INPUT = 1 << 16
_INFLATE_OUTPUT = 1 << 20


def read_mat(
    path: PathLike,
    *,
    key: str,
    axis_unit: str,
    modality: str,
    instrument: str | None = None,
    axis_key: str | None = None,
    labels_key: str | None = None,
    label_names: Sequence[str] | None = None,
    label_units: Sequence[str] | Mapping[str, str] | None = None,
    allow_missing_labels: bool = False,
    value_unit: str = "",
    max_bytes: int | None = None,
    max_decoded_bytes: int | None = None,
) -> Spectra:
    """Reads spectra from a MATLAB v4/v5/v7 .mat file.

    `key` names either a numeric (spectra × points) matrix or an Eigenvector DataSet (saved as a
    `dataset` object or as a struct with its fields). From a DataSet: `data` gives the values, the
    first `axisscale` of mode 2 the axis, the first `label` set of mode 1 the sample ids, `name`
    the default instrument, and `include` selects rows and columns as the DataSet does. Without
    sample labels the ids are the row numbers in the file ('0', '1', …), excluded rows included,
    so that the spectra of two instruments pair up.
    v7.3 files are HDF5 and are refused (re-save with `save(..., '-v7')`).

    Only the named variables are decoded. Before scipy reads them, their elements are checked:
    their decoded size (v7 files are compressed, often a thousandfold for blank data) against
    `max_decoded_bytes`, and their structure against what scipy would allocate or crash on
    (sizes beyond the data, cell/struct arrays declaring more values than they hold, nesting
    deeper than 64). Complex values and values beyond the float32 range (±3.4e38) are refused.

    Args:
      path: the .mat file.
      key: variable holding the spectra.
      axis_unit: unit of the axis ('nm', 'um', 'cm-1' or an alias).
      modality: 'NIR', 'IR' or 'Raman'.
      instrument: instrument id; defaults to the DataSet name, else `key`.
      axis_key: variable holding the axis vector (required for a plain matrix).
      labels_key: variable holding reference values: an (n, m) matrix or a DataSet.
      label_names: names of the m label columns (default: a DataSet's mode-2 labels).
      label_units: one unit per label (or a name -> unit mapping).
      allow_missing_labels: keep NaN labels instead of refusing them.
      value_unit: what the values measure, recorded on the result.
      max_bytes: largest file read (default `caltransfer_jax.data.rawfile.MAX_BYTES`, 512 MiB).
      max_decoded_bytes: largest decoded size of the variables read, in bytes (default
        `MAX_MAT_DECODED_BYTES`, 1 GiB).
    """
    origin, data = read_bytes(path, max_bytes=max_bytes)
    limit = MAX_MAT_DECODED_BYTES if max_decoded_bytes is None else max_decoded_bytes
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise SpectraError(
            f"{origin}: max_decoded_bytes must be a positive whole number, got {limit!r}"
        )
    names = list(dict.fromkeys(k for k in (key, axis_key, labels_key) if k is not None))
    contents = _loadmat(origin, data, names, limit)
    spectra = _variable(contents, key, origin)
    rows, columns = spectra.rows, spectra.columns
    axis = spectra.axis if axis_key is None else _vector(contents, axis_key, origin)
    if axis is None:
        raise SpectraError(f"{origin}: {key!r} has no axis; pass axis_key naming the axis vector")
    if axis.size != spectra.values.shape[1]:
        raise SpectraError(
            f"{origin}: the axis has {axis.size} values but {key!r} has "
            f"{spectra.values.shape[1]} columns"
        )
    unit = normalize_unit(axis_unit, origin)
    labels, names = np.zeros((rows.size, 0)), ()
    if labels_key is not None:
        table = _variable(contents, labels_key, origin)
        if table.values.shape[0] != spectra.values.shape[0]:
            raise SpectraError(
                f"{origin}: {labels_key!r} has {table.values.shape[0]} rows but {key!r} has "
                f"{spectra.values.shape[0]}"
            )
        labels = table.values[np.ix_(rows, table.columns)]
        if label_names is not None:
            names = tuple(label_names)
        elif table.column_names is not None:
            names = tuple(table.column_names[table.columns])
        if len(names) != labels.shape[1]:
            raise SpectraError(
                f"{origin}: label_names must name the {labels.shape[1]} columns of "
                f"{labels_key!r}, got {list(names)}"
            )
        if not allow_missing_labels and np.isnan(labels).any():
            row, column = np.argwhere(np.isnan(labels))[0]
            raise SpectraError(
                f"{origin}: missing value (NaN) in {labels_key!r} row {rows[row] + 1}, column "
                f"{table.columns[column] + 1}"
            )
    return Spectra.from_axis(
        spectra.values[np.ix_(rows, columns)],
        check_axis(axis[columns], origin, unit),
        unit,
        modality=modality,
        instrument=instrument or spectra.name or key,
        sample_id=(rows if spectra.row_ids is None else spectra.row_ids[rows]).astype(str),
        labels=labels,
        label_names=names,
        label_units=_units(label_units, names, origin),
        origin=origin,
        value_unit=value_unit,
    )


def _loadmat(origin: str, data: bytes, names: Sequence[str], max_decoded_bytes: int) -> dict:
    """The variables `names` of a .mat file; the others are not decoded."""
    if data.startswith(b"MATLAB") and len(data) < _MAT_HEADER_BYTES:
        raise _corrupt(origin, f"the file ends at byte {len(data)}, inside its 128-byte header")
    try:
        major, _ = scipy.io.matlab.matfile_version(io.BytesIO(data))
    except Exception as error:  # scipy raises several types for what is not a .mat file
        raise SpectraError(f"{origin}: not a MATLAB .mat file ({error})") from None
    if major == 2:
        raise SpectraError(
            f"{origin}: MATLAB v7.3 (HDF5) .mat files are not supported; re-save it in MATLAB "
            "with save(..., '-v7')"
        )
    source = io.BytesIO(data)  # v4: no compression or nesting; scipy reads what the file holds
    if major == 1:
        # v5/v7: every element of the wanted variables is checked and decoded here, and scipy
        # reads them from an uncompressed copy (it trusts the sizes a file declares).
        available, source = _mat5_variables(origin, data, names, max_decoded_bytes)
        _require_variables(origin, names, available)
    try:
        contents = scipy.io.loadmat(source)
    except MemoryError:
        raise _corrupt(origin, "it declares more data than it holds") from None
    except Exception as error:  # truncated or corrupt: scipy's errors vary by where it breaks
        raise _corrupt(origin, f"{type(error).__name__}: {error}") from None
    contents = {k: v for k, v in contents.items() if not k.startswith("__")}
    _require_variables(origin, names, list(contents))
    return contents


def _corrupt(origin: str, detail: str) -> SpectraError:
    return SpectraError(
        f"{origin}: truncated or corrupt .mat file ({detail}); save it again or download it again"
    )


def _require_variables(origin: str, names: Sequence[str], available: list[str]) -> None:
    if not available:
        raise _corrupt(origin, "it holds no variables")
    for name in names:
        if name not in available:
            raise SpectraError(
                f"{origin}: no variable {name!r}; the file has {sorted(set(available) - {''})} "
                "(check the name; a file cut short may have lost variables)"
            )


def _mat5_variables(
    origin: str, data: bytes, names: Sequence[str], max_decoded_bytes: int
) -> tuple[list[str], _View]:
    """The names of a v5 file's variables, and a v5 file holding only the wanted ones,
    uncompressed and checked element by element (`_check_mat5_tree`)."""
    order = "<" if data[126:128] == b"IM" else ">"
    available: list[str] = []
    wanted = []  # (name, element type, data start, data end, decoded size)
    decoded = _MAT_HEADER_BYTES
    position = _MAT_HEADER_BYTES
    while position < len(data):
        where = f"variable {len(available) + 1} (at byte {position})"
        if len(data) - position < 8:
            raise _corrupt(origin, f"{where}: the file ends inside its tag")
        kind, size = struct.unpack_from(order + "II", data, position)
        start, end = position + 8, position + 8 + size
        if end > len(data):
            raise _corrupt(
                origin, f"{where} declares {size} bytes but only {len(data) - start} follow"
            )
        if kind == _MI_COMPRESSED:
            head = bytearray(_MAT_NAME_PREFIX)
            head = head[: _inflate(origin, where, data, start, end, head)]
        elif kind == _MI_MATRIX:
            head = memoryview(data)[position:end]
        else:
            raise _corrupt(origin, f"{where} is an element of type {kind}, not a variable")
        name = _mat5_name(origin, where, head, order)
        if name in available:
            raise _corrupt(origin, f"variable {name!r} appears twice")
        available.append(name)
        if name in names:
            matrix_size = 8 + struct.unpack_from(order + "I", head, 4)[0]
            decoded += matrix_size
            if decoded > max_decoded_bytes:
                raise SpectraError(
                    f"{origin}: variable {name!r} decodes to {matrix_size} bytes"
                    + (f" (from {size} compressed)" if kind == _MI_COMPRESSED else "")
                    + f", more than the limit of {max_decoded_bytes} bytes for the variables "
                    "read. A decompression bomb? If the file is genuine, pass a larger "
                    "max_decoded_bytes"
                )
            wanted.append((name, kind, start, end, matrix_size))
        position = end
    # One buffer for the whole uncompressed file: no variable is held twice.
    out = bytearray(decoded)
    out[:_MAT_HEADER_BYTES] = data[:116] + bytes(8) + data[124:128]  # no subsystem offset
    offset = _MAT_HEADER_BYTES
    for name, kind, start, end, matrix_size in wanted:
        element = memoryview(out)[offset : offset + matrix_size]
        if kind == _MI_COMPRESSED:
            if _inflate(origin, f"variable {name!r}", data, start, end, element) < matrix_size:
                raise _corrupt(origin, f"the compressed data of variable {name!r} end early")
        else:
            element[:] = memoryview(data)[start - 8 : end]
        _check_mat5_tree(origin, f"variable {name!r}", element, order)
        offset += matrix_size
    return available, _View(out)


class _View:
    """A read-only file over a buffer, for scipy (io.BytesIO would copy a bytearray)."""

    def __init__(self, buffer):
        self._view, self._position = memoryview(buffer), 0

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else self._position + size
        data = self._view[self._position : end].tobytes()
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._position, len(self._view))[whence]
        self._position = max(base + offset, 0)
        return self._position

    def tell(self) -> int:
        return self._position


def _mat5_element(
    origin: str, where: str, buffer, position: int, end: int, order: str
) -> tuple[int, int, int, int]:
    """(type, data start, data end, next position) of the v5 element at `position`."""
    if end - position < 8:
        raise _corrupt(origin, f"{where}: an element's tag is cut off")
    first, second = struct.unpack_from(order + "II", buffer, position)
    if first >> 16:  # small data element: type and size in 4 bytes, its data in the next 4
        kind, size = first & 0xFFFF, first >> 16
        if size > 4:
            raise _corrupt(origin, f"{where}: a small element declares {size} bytes")
        return kind, position + 4, position + 4 + size, position + 8
    start = position + 8
    # Data are padded to 8 bytes; scipy reads the next element right after a nested matrix.
    following = start + second if first == _MI_MATRIX else start + (second + 7) // 8 * 8
    if following > end:
        raise _corrupt(
            origin, f"{where}: an element declares {second} bytes but only {end - start} remain"
        )
    return first, start, start + second, following


def _mat5_name(origin: str, where: str, head, order: str) -> str:
    """The name of the variable whose element starts `head` (its flags, dims and name; `head`
    may be the start of the element only)."""
    if len(head) < 8:
        raise _corrupt(origin, f"the compressed data of {where} end early")
    kind, size = struct.unpack_from(order + "II", head, 0)
    if kind != _MI_MATRIX:
        raise _corrupt(origin, f"{where} is an element of type {kind}, not a variable")
    parts = []
    position, end = 8, min(8 + size, len(head))
    while len(parts) < 3 and position < end:
        element = _mat5_element(origin, where, head, position, end, order)
        parts.append(element)
        position = element[3]
    if len(parts) == 3 or (len(parts) == 2 and _mat5_class(head, parts, order) == _MX_OPAQUE):
        kind, start, end, _ = parts[1 if _mat5_class(head, parts, order) == _MX_OPAQUE else 2]
        if kind in (_MI_INT8, _MI_UTF8):
            return bytes(head[start:end]).decode("latin-1")  # as scipy names it
    raise _corrupt(origin, f"{where} has no readable name")


def _mat5_class(buffer, elements: list, order: str) -> int | None:
    kind, start, end, _ = elements[0]
    if kind != _MI_UINT32 or end - start < 4:
        return None
    return struct.unpack_from(order + "I", buffer, start)[0] & 0xFF


def _check_mat5_tree(origin: str, where: str, element: bytes, order: str) -> None:
    """Checks a variable's element tree against what scipy allocates from it: every element
    lies within its parent, matrices nest at most `_MAT_MAX_DEPTH` deep (scipy recurses in C and
    crashes on deep nesting), and a cell, struct or object array declares as many elements as
    it holds (scipy allocates the declared number first)."""
    _, start, end, _ = _mat5_element(origin, where, element, 0, len(element), order)
    pending = [(start, end, 1)]
    while pending:
        start, end, depth = pending.pop()
        if depth > _MAT_MAX_DEPTH:
            raise SpectraError(
                f"{origin}: {where} nests cells or structs more than {_MAT_MAX_DEPTH} deep; "
                "corrupt or hostile file"
            )
        elements = []
        while start < end:
            elements.append(_mat5_element(origin, where, element, start, end, order))
            start = elements[-1][3]
        if not elements:
            continue  # an empty matrix
        children = [(a, b, depth + 1) for kind, a, b, _ in elements if kind == _MI_MATRIX]
        mclass = _mat5_class(element, elements, order)
        if mclass is None:
            raise _corrupt(origin, f"{where}: a matrix without array flags")
        if mclass in _MX_CONTAINERS:
            count = _mat5_container_size(origin, where, element, elements, mclass, order)
            if count != len(children):
                raise _corrupt(
                    origin,
                    f"{where}: a {_MX_CONTAINERS[mclass]} array declares {count} values but "
                    f"holds {len(children)}",
                )
        pending.extend(children)


def _mat5_container_size(
    origin: str, where: str, buffer, elements: list, mclass: int, order: str
) -> int:
    """Number of values a cell (elements) or struct/object (elements × fields) declares."""
    if len(elements) < 3 or elements[1][0] != _MI_INT32:
        raise _corrupt(origin, f"{where}: a {_MX_CONTAINERS[mclass]} array without dimensions")
    _, start, end, _ = elements[1]
    dims = struct.unpack_from(f"{order}{(end - start) // 4}i", buffer, start)
    if len(dims) < 2 or min(dims) < 0:
        raise _corrupt(origin, f"{where}: dimensions {list(dims)}")
    count = math.prod(dims)
    if mclass == _MX_CELL:
        return count
    # Struct: field-name length and names follow the name; an object has its class name first.
    rest = [e for e in elements[3:] if e[0] != _MI_MATRIX][1 if mclass == _MX_OBJECT else 0 :]
    if len(rest) < 2 or rest[0][0] != _MI_INT32 or rest[0][2] - rest[0][1] != 4:
        raise _corrupt(origin, f"{where}: a {_MX_CONTAINERS[mclass]} array without field names")
    (length,) = struct.unpack_from(order + "i", buffer, rest[0][1])
    if length <= 0 or (rest[1][2] - rest[1][1]) % length:
        raise _corrupt(origin, f"{where}: field names of length {length}")
    return count * ((rest[1][2] - rest[1][1]) // length)


def _inflate(origin: str, where: str, data: bytes, start: int, end: int, out) -> int:
    """Decodes the zlib stream data[start:end] into `out` (a writable buffer) until it is full
    or the stream ends, piece by piece so that no more than `out` is ever held; returns the
    number of bytes written."""
    inflater = zlib.decompressobj()
    view, out = memoryview(data), memoryview(out)
    total = 0
    try:
        for offset in range(start, end, _INFLATE_INPUT):
            pending = view[offset : min(offset + _INFLATE_INPUT, end)]
            while len(pending) and total < len(out) and not inflater.eof:
                part = inflater.decompress(pending, min(_INFLATE_OUTPUT, len(out) - total))
                if not part and len(inflater.unconsumed_tail) == len(pending):
                    break  # no progress
                out[total : total + len(part)] = part
                total += len(part)
                pending = inflater.unconsumed_tail
            if total >= len(out) or inflater.eof:
                break
    except zlib.error as error:
        raise _corrupt(origin, f"the compressed data of {where} are damaged: {error}") from None
    return total


@dataclasses.dataclass(frozen=True)
class _MatVariable:
    values: np.ndarray  # (n, p) float64, every row and column
    axis: np.ndarray | None  # (p,) from a DataSet's axisscale
    row_ids: np.ndarray | None  # (n,) from a DataSet's mode-1 labels
    column_names: np.ndarray | None  # (p,) from a DataSet's mode-2 labels
    name: str | None
    rows: np.ndarray  # included rows
    columns: np.ndarray  # included columns


def _variable(contents: dict, key: str, origin: str) -> _MatVariable:
    if key not in contents:
        raise SpectraError(f"{origin}: no variable {key!r}; the file has {sorted(contents)}")
    variable = contents[key]
    if variable.dtype.names is None:
        values = _matrix(variable, f"{origin}: variable {key!r}")
        n, p = values.shape
        return _MatVariable(values, None, None, None, None, np.arange(n), np.arange(p))
    where = f"{origin}: DataSet {key!r}"
    if variable.size != 1 or "data" not in variable.dtype.names:
        raise SpectraError(
            f"{where}: expected one numeric matrix or DataSet (a struct with a 'data' field), "
            f"got a struct array of size {variable.size} with fields {variable.dtype.names}"
        )
    record = variable.flat[0]
    field = {name: record[name] for name in variable.dtype.names}
    kind = _text(field.get("type"))
    if kind not in (None, "data"):
        raise SpectraError(f"{where}: DataSet type {kind!r} is not supported (only 'data')")
    values = _matrix(field["data"], where)
    n, p = values.shape
    axis = _cell_entry(field.get("axisscale"), 1)
    if axis is not None:
        axis = _matrix(axis, f"{where} axisscale").ravel()
    return _MatVariable(
        values=values,
        axis=axis,
        row_ids=_strings(_cell_entry(field.get("label"), 0), n, f"{where} mode-1 labels"),
        column_names=_strings(_cell_entry(field.get("label"), 1), p, f"{where} mode-2 labels"),
        name=_text(field.get("name")),
        rows=_included(field.get("include"), 0, n, where),
        columns=_included(field.get("include"), 1, p, where),
    )


def _matrix(value, where: str) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.kind == "c":
        raise SpectraError(
            f"{where}: holds complex numbers; only real values are read (save real(X) or abs(X) "
            "in MATLAB, whichever the data mean)"
        )
    if value.dtype.kind not in "biuf":
        raise SpectraError(f"{where}: expected a real numeric matrix, got {value.dtype} data")
    if value.ndim != 2:
        raise SpectraError(f"{where}: expected a 2-D matrix, got shape {value.shape}")
    value = value.astype(np.float64, copy=False)
    large = np.isfinite(value) & (np.abs(value) > FLOAT32_MAX)
    if large.any():
        row, column = np.argwhere(large)[0]
        raise SpectraError(
            f"{where}: value {value[row, column]:.4g} at row {row + 1}, column {column + 1} is "
            f"beyond the float32 range (±{FLOAT32_MAX:.3g})"
        )
    return value


def _vector(contents: dict, key: str, origin: str) -> np.ndarray:
    values = _variable(contents, key, origin).values
    if min(values.shape) != 1:
        raise SpectraError(f"{origin}: axis {key!r} has shape {values.shape}; expected a vector")
    return values.ravel()


def _cell_entry(cell, mode: int):
    """The first set of one mode of a DataSet cell field ({mode, column[, set]}), or None."""
    if cell is None:
        return None
    cell = np.asarray(cell)
    if cell.dtype != object or cell.ndim < 2 or cell.shape[0] <= mode:
        return None
    entry = cell[(mode,) + (0,) * (cell.ndim - 1)]
    return None if np.asarray(entry).size == 0 else entry


def _text(value) -> str | None:
    if value is None or np.asarray(value).size == 0:
        return None
    return "".join(str(v) for v in np.asarray(value).ravel()).strip() or None


def _strings(entry, size: int, where: str) -> np.ndarray | None:
    """Labels from a char matrix (one string per row) or a cell of strings."""
    if entry is None:
        return None
    items = [np.asarray(item).ravel() for item in np.asarray(entry, dtype=object).ravel()]
    strings = np.array([str(item[0]).strip() if item.size else "" for item in items])
    if strings.size != size:
        raise SpectraError(f"{where}: {strings.size} labels for {size} entries")
    return strings


def _included(include, mode: int, size: int, where: str) -> np.ndarray:
    entry = _cell_entry(include, mode)
    if entry is None:
        return np.arange(size)
    index = np.asarray(entry).ravel()
    if index.dtype.kind not in "iuf" or np.any(index != np.round(index)):  # NaN too
        raise SpectraError(f"{where}: include of mode {mode + 1} is not a list of indices")
    if index.size == 0 or index.min() < 1 or index.max() > size:  # checked before the cast
        raise SpectraError(f"{where}: include of mode {mode + 1} must hold indices in 1..{size}")
    return index.astype(int) - 1  # MATLAB indices start at 1
