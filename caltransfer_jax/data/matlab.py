"""MATLAB .mat files (v4, v5/v7; Eigenvector DataSet objects) read into `Spectra`.

The file's structure is checked before scipy decodes anything (element sizes inside their
parents, nesting depth, declared cell/struct sizes) and only the requested variables are
decoded, in bounded pieces, against a decoded-size limit: a small hostile file can neither
exhaust memory nor crash the reader. Errors are `SpectraError`s naming the file and variable.
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.io

from caltransfer_jax.data.rawfile import FLOAT32_MAX, PathLike, read_bytes
from caltransfer_jax.data.spectra import (
    Spectra,
    SpectraError,
    check_axis,
    normalize_unit,
    units_per_label,
)

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
        label_units=units_per_label(label_units, names, origin),
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
