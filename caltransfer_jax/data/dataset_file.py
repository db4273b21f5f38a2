"""Dataset files: a small TOML file that describes a multi-instrument data set.

    name = "corn"
    axis_unit = "nm"               # unit of the spectra files' axis: nm, um or cm-1
    pairing = "row"                # or "id": rows pair by an ID column (`id_column`)
    [instruments.m5]
    spectra = "m5spec.csv"         # wide CSV: header row = axis positions, one row per spectrum
    [instruments.mp6]
    spectra = "mp6spec.csv"
    [labels]
    file = "propvals.csv"          # property names are the column headers
    units = { Moisture = "%", Oil = "%", Protein = "%", Starch = "%" }

Fields (paths are relative to the dataset file or absolute; every table also takes the CSV
options `delimiter` and `decimal`, and `id_column`, which default to the top-level values):

- top level: `name`; `axis_unit`; `modality` (NIR, IR or Raman; default NIR); `pairing`;
  `id_column` (with pairing "id"; a first column with an empty header cell — row names — is used
  when it is absent); `delimiter` (default ","), `decimal` ("." or ","); `replicates` ("refuse",
  the default, or "mean": spectra with the same id on one instrument are averaged);
  `value_unit`, `citation`, `description`.
- `[instruments.NAME]`: `spectra` (a file, a list of files read as one, or a folder of JCAMP-DX
  files); `format` (csv, mat or jcamp; default from the extension); `axis_unit` (overrides);
  `variable` and `axis_variable` for MATLAB files; `standards` (a file of transfer standards
  measured on this instrument, rows paired across instruments by order).
- `[labels]`: `file`; `units` (property -> unit); `columns` (which properties; default every
  column but the id column). Missing values (empty, NA) are allowed; a sample without labels is
  never used for calibration or testing of that property.
- `[split]` (optional, the data set's own split): `file`, `column` (values calibrate, validate,
  test; test samples are the test set of split 0, the others its pool).

Instead of `instruments` and `labels`, `bundle = "FILE.npz"` names a data set saved with
`bundled.save_dataset` (the bundled corn and tablets are described this way).

Instruments measured on different axes are put on their common range for the classical methods
(`grids.common_axis`; the overlap is reported in `Dataset.overlap`), and kept on their own axes
for the model (`Dataset.native`). Every error names the file and the field; nothing is written.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import importlib.resources
import pathlib
import tomllib
from collections.abc import Mapping

import numpy as np

from caltransfer_jax.data import bundled, grids
from caltransfer_jax.data.dataset import Dataset
from caltransfer_jax.data.jcamp_dx import read_jcamp
from caltransfer_jax.data.readers import CsvFormat, read_label_csv, read_mat, read_wide_csv
from caltransfer_jax.data.spectra import (
    MODALITIES,
    Spectra,
    SpectraError,
    check_unique_ids,
    concatenate,
    normalize_unit,
    same_axis,
)

BUNDLED = {"corn": "corn.toml", "tablets": "tablets.toml"}
FORMATS = ("csv", "mat", "jcamp")
PAIRINGS = ("row", "id")
REPLICATES = ("refuse", "mean")
SUBSETS = ("calibrate", "validate", "test")
_TOP = (
    "name", "axis_unit", "modality", "pairing", "id_column", "delimiter", "decimal",
    "replicates", "value_unit", "citation", "description", "instruments", "labels", "split",
    "bundle",
)  # fmt: skip
_CSV = ("delimiter", "decimal", "id_column")
_INSTRUMENT = ("spectra", "format", "axis_unit", "variable", "axis_variable", "standards", *_CSV)
_LABELS = ("file", "units", "columns", *_CSV)
_SPLIT = ("file", "column", *_CSV)
# Where NIR, IR and Raman axes plausibly lie (cm⁻¹): a unit typo moves them far outside.
_PLAUSIBLE = {"NIR": (3000.0, 30000.0), "IR": (100.0, 10000.0)}


def load(spec: str | pathlib.Path) -> Dataset:
    """A data set by bundled name ('corn', 'tablets'), dataset file (.toml) or saved .npz."""
    text = str(spec)
    if text in BUNDLED:
        resource = importlib.resources.files("caltransfer_jax.data") / "bundled" / BUNDLED[text]
        with importlib.resources.as_file(resource) as path:
            return read_dataset_file(path)
    path = pathlib.Path(text)
    if path.suffix == ".npz":
        return bundled.read_bundle(path)
    if path.suffix != ".toml":
        raise SpectraError(
            f"{text}: not a data set; give a bundled name ({', '.join(BUNDLED)}), a dataset "
            "file (.toml) or a saved data set (.npz)"
        )
    return read_dataset_file(path)


class _Table:
    """One TOML table with its location, for messages naming the file and the field."""

    def __init__(self, origin: str, where: str, table, known: tuple[str, ...]):
        self.origin, self.where = origin, where
        if not isinstance(table, Mapping):
            raise self.error(f"must be a table, got {type(table).__name__}")
        self.table = dict(table)
        for key in self.table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {list(known)}"
                raise SpectraError(f"{origin}: unknown field {self.field(key)!r}{hint}")

    def field(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def location(self, key: str | None = None) -> str:
        """'FILE: field' — the prefix of every message about this table (or one of its keys)."""
        return f"{self.origin}: {self.field(key) if key else (self.where or 'top level')}"

    def error(self, problem: str, key: str | None = None) -> SpectraError:
        return SpectraError(f"{self.location(key)}: {problem}")

    def get(self, key: str, default=None, kind=str, choices=None, required=False):
        if key not in self.table:
            if required:
                raise self.error("missing (required)", key)
            return default
        value = self.table[key]
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise self.error(f"must be a {kind.__name__}, got {value!r}", key)
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(f"{value!r} is not one of {list(choices)}{hint}", key)
        return value


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every table inherits from the top level."""

    base: pathlib.Path
    origin: str
    axis_unit: str | None
    modality: str
    pairing: str
    id_column: str | None
    csv: CsvFormat
    replicates: str
    value_unit: str

    def path(self, table: _Table, key: str, value: str) -> pathlib.Path:
        path = pathlib.Path(value)
        path = path if path.is_absolute() else self.base / path
        if not path.exists():
            raise table.error(f"{value!r}: no such file or folder ({path})", key)
        return path

    def csv_format(self, table: _Table) -> CsvFormat:
        fmt = CsvFormat(
            table.get("delimiter", self.csv.delimiter), table.get("decimal", self.csv.decimal)
        )
        fmt.check(table.location())
        return fmt


def read_dataset_file(path: str | pathlib.Path) -> Dataset:
    """Reads a dataset file (see the module docstring) into a `Dataset`.

    Raises:
      SpectraError: naming the dataset file and the field (or the data file and its row or
        column) of the first problem found.
    """
    path = pathlib.Path(path)
    origin = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpectraError(f"{origin}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpectraError(f"{origin}: cannot be read as UTF-8 text ({error})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpectraError(f"{origin}: not valid TOML ({error})") from None
    top = _Table(origin, "", raw, _TOP)
    name = top.get("name", required=True)
    if "bundle" in top.table:
        return _from_bundle(top, path.parent, name)
    for key in ("instruments", "labels"):
        top.get(key, kind=dict, required=True)
    context = _context(top, path.parent)
    if len(raw["instruments"]) < 2:
        raise top.error("a transfer data set needs at least two instruments", "instruments")
    parts, standards = {}, {}
    for instrument, fields in raw["instruments"].items():
        table = _Table(origin, f"instruments.{instrument}", fields, _INSTRUMENT)
        parts[instrument], standards[instrument] = _read_instrument(context, table, instrument)
    parts = _paired(context, top, parts)
    labels = _Table(origin, "labels", raw["labels"], _LABELS)
    parts, properties = _attach_labels(context, labels, parts)
    return _assemble(context, top, name, parts, standards, properties)


def _context(top: _Table, base: pathlib.Path) -> _Context:
    modality = top.get("modality", "NIR", choices=MODALITIES)
    unit = top.get("axis_unit")
    if unit is not None:
        unit = _unit(top, "axis_unit", unit)
    return _Context(
        base=base,
        origin=top.origin,
        axis_unit=unit,
        modality=modality,
        pairing=top.get("pairing", "row", choices=PAIRINGS),
        id_column=top.get("id_column"),
        csv=CsvFormat(top.get("delimiter", ","), top.get("decimal", ".")),
        replicates=top.get("replicates", "refuse", choices=REPLICATES),
        value_unit=top.get("value_unit", ""),
    )


def _unit(table: _Table, key: str, unit: str) -> str:
    return normalize_unit(unit, table.location(key))


def _read_instrument(context: _Context, table: _Table, instrument: str):
    """(spectra, standards or None) of one instrument, as its files hold them."""
    unit = table.get("axis_unit")
    unit = _unit(table, "axis_unit", unit) if unit is not None else context.axis_unit
    if unit is None:
        raise table.error("missing; set axis_unit here or at the top level", "axis_unit")
    files = table.table.get("spectra")
    if files is None:
        raise table.error("missing (required)", "spectra")
    files = [files] if isinstance(files, str) else files
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise table.error("must be a file name or a non-empty list of file names", "spectra")
    paths = [context.path(table, "spectra", f) for f in files]
    fmt = table.get("format", _guess_format(paths[0]), choices=FORMATS)
    id_column = table.get("id_column", context.id_column)
    if context.pairing == "id" and fmt == "csv" and id_column is None:
        for p in paths:
            if not _has_row_names(p, context.csv_format(table)):
                raise table.error(
                    f"{p}: pairing by id needs an id column (set id_column) or row names (a "
                    "first column with an empty header cell)",
                    "id_column",
                )
    read = _reader(context, table, fmt, unit, instrument, id_column)
    parts = [read(p) for p in paths]
    spectra = concatenate(parts, origin=", ".join(str(p) for p in paths))
    _check_plausible(table, spectra, unit)
    standards = None
    if "standards" in table.table:
        standards_path = context.path(table, "standards", table.get("standards"))
        standards = _reader(context, table, fmt, unit, instrument, id_column)(standards_path)
        if not same_axis(standards.wavenumber, spectra.wavenumber):
            raise table.error("the standards are on another axis than the spectra", "standards")
        standards = dataclasses.replace(standards, wavenumber=spectra.wavenumber)
    return spectra, standards


def _has_row_names(path: pathlib.Path, fmt: CsvFormat) -> bool:
    """Whether a CSV file's first header cell is empty (its first column holds row names)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f, delimiter=fmt.delimiter), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # the reader reports the problem with its own message
    return bool(header) and not header[0].strip()


def _guess_format(path: pathlib.Path) -> str:
    if path.is_dir() or path.suffix.lower() in (".jdx", ".dx", ".jcamp"):
        return "jcamp"
    return "mat" if path.suffix.lower() == ".mat" else "csv"


def _reader(context: _Context, table: _Table, fmt: str, unit: str, instrument: str, id_column):
    """A function path -> Spectra for one instrument's files."""
    modality = context.modality
    if fmt == "csv":
        csv_format = context.csv_format(table)
        return lambda path: read_wide_csv(
            path,
            axis_unit=unit,
            modality=modality,
            instrument=instrument,
            sample_id_column=id_column,
            value_unit=context.value_unit,
            csv_format=csv_format,
            unique_ids=False,  # replicates are refused or averaged by `_replicates`
        )
    if fmt == "mat":
        variable = table.get("variable", required=True)
        return lambda path: read_mat(
            path,
            key=variable,
            axis_key=table.get("axis_variable"),
            axis_unit=unit,
            modality=modality,
            instrument=instrument,
            value_unit=context.value_unit,
        )

    def jcamp(path: pathlib.Path) -> Spectra:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        if not files:
            raise table.error(f"{path}: the folder holds no JCAMP-DX files", "spectra")
        parts = [read_jcamp(f, instrument=instrument, modality=modality) for f in files]
        return concatenate(parts, origin=str(path))

    return jcamp


def _check_plausible(table: _Table, spectra: Spectra, unit: str) -> None:
    bounds = _PLAUSIBLE.get(spectra.modality)
    if bounds is None:
        return
    lo, hi = float(spectra.wavenumber.min()), float(spectra.wavenumber.max())
    if hi < bounds[0] / 10 or lo > bounds[1] * 10:
        axis = spectra.axis
        raise table.error(
            f"the axis runs {axis.min():.6g}–{axis.max():.6g} {unit}, far outside where "
            f"{spectra.modality} spectra lie ({bounds[0]:g}–{bounds[1]:g} cm-1); is the axis "
            "unit wrong?",
            "axis_unit",
        )


def _paired(context: _Context, top: _Table, parts: dict[str, Spectra]) -> dict[str, Spectra]:
    """Every instrument's spectra with sample ids that pair them, in the first's sample order."""
    names = list(parts)
    if context.pairing == "row":
        n = {name: p.n for name, p in parts.items()}
        if len(set(n.values())) > 1:
            raise top.error(
                f"pairing by row needs the same number of spectra on every instrument, got {n}",
                "pairing",
            )
        ids = np.array([str(i) for i in range(n[names[0]])])
        return {name: dataclasses.replace(p, sample_id=ids) for name, p in parts.items()}
    parts = {name: _replicates(context, top, p) for name, p in parts.items()}
    order = parts[names[0]].sample_id.tolist()
    for name in names[1:]:
        ids = set(parts[name].sample_id.tolist())
        only_first, only_this = sorted(set(order) - ids), sorted(ids - set(order))
        if only_first or only_this:
            raise top.error(
                f"sample ids differ between instruments {names[0]!r} and {name!r}: "
                f"{len(only_first)} only on {names[0]!r} (e.g. {only_first[:3]}), "
                f"{len(only_this)} only on {name!r} (e.g. {only_this[:3]})",
                "pairing",
            )
    out = {}
    for name, p in parts.items():
        row = {s: i for i, s in enumerate(p.sample_id.tolist())}
        out[name] = p.select([row[s] for s in order])
    return out


def _replicates(context: _Context, top: _Table, spectra: Spectra) -> Spectra:
    """Refuses repeated ids, or averages them (`replicates = "mean"`)."""
    if context.replicates == "refuse":
        try:
            check_unique_ids(spectra)
        except SpectraError as error:
            raise top.error(f'{error} (or set replicates = "mean")', "replicates") from None
        return spectra
    ids, first, inverse = np.unique(spectra.sample_id, return_index=True, return_inverse=True)
    order = np.argsort(first)  # ids in order of first appearance
    sums = np.zeros((ids.size, spectra.values.shape[1]))
    np.add.at(sums, inverse, spectra.values)
    means = sums / np.bincount(inverse)[:, None]
    rows = first[order]
    return dataclasses.replace(spectra.select(rows), values=means[order])


def _attach_labels(context: _Context, table: _Table, parts: dict[str, Spectra]):
    """(spectra with labels, property names) from the `[labels]` table."""
    path = context.path(table, "file", table.get("file", required=True))
    units = table.get("units", {}, kind=dict)
    columns = table.table.get("columns")
    if columns is not None and (
        not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
    ):
        raise table.error("must be a list of column names", "columns")
    # With pairing by row an id column is only skipped; the top-level one names the spectra's.
    id_column = table.get("id_column", context.id_column if context.pairing == "id" else None)
    labels = read_label_csv(
        path,
        label_columns=columns,
        sample_id_column=id_column,
        allow_missing_labels=True,
        csv_format=context.csv_format(table),
    )
    unknown = sorted(set(units) - set(labels.names))
    if unknown:
        raise table.error(
            f"units for unknown properties {unknown}; properties: {list(labels.names)}", "units"
        )
    if not all(isinstance(u, str) for u in units.values()):
        raise table.error("every unit must be a string", "units")
    labels = dataclasses.replace(labels, units=tuple(units.get(n, "") for n in labels.names))
    first = next(iter(parts.values()))
    if context.pairing == "row":
        if len(labels.values) != first.n:
            raise table.error(
                f"{path}: {len(labels.values)} label rows but {first.n} spectra per instrument "
                "(pairing by row)",
                "file",
            )
        labels = dataclasses.replace(labels, sample_id=first.sample_id)
    elif labels.sample_id is None:
        raise table.error(f"{path}: no id column to pair labels by id (set id_column)", "file")
    else:
        measured = set(first.sample_id.tolist())
        unmeasured = sorted(set(labels.sample_id.tolist()) - measured)
        if unmeasured:
            raise table.error(
                f"{path}: labels for {len(unmeasured)} sample(s) no instrument measured, e.g. "
                f"{unmeasured[:3]}",
                "file",
            )
        labels = _complete(labels, first.sample_id)
    return {name: labels.attach(p) for name, p in parts.items()}, labels.names


def _complete(labels, sample_ids: np.ndarray):
    """Labels for every measured sample (NaN for samples the file does not list)."""
    row = {s: i for i, s in enumerate(labels.sample_id.tolist())}
    values = np.full((len(sample_ids), len(labels.names)), np.nan)
    for i, s in enumerate(sample_ids.tolist()):
        if s in row:
            values[i] = labels.values[row[s]]
    return dataclasses.replace(labels, values=values, sample_id=np.asarray(sample_ids))


def _assemble(context, top, name, parts, standards, properties) -> Dataset:
    """The `Dataset`: stacked on one axis (the common range where the axes differ)."""
    first = next(iter(parts.values()))
    native, overlap = None, ""
    if not all(same_axis(p.wavenumber, first.wavenumber) for p in parts.values()):
        grid, overlap = grids.common_axis(parts, context.origin)
        native = parts
        parts = grids.on_common_axis(parts, grid)
        standards = {
            k: None if s is None else grids.on_common_axis({k: s}, grid)[k]
            for k, s in standards.items()
        }
    axis = next(iter(parts.values())).wavenumber
    parts = {k: dataclasses.replace(p, wavenumber=axis) for k, p in parts.items()}
    present = [s for s in standards.values() if s is not None]
    if present and len(present) != len(standards):
        missing = [k for k, s in standards.items() if s is None]
        raise top.error(
            f"standards are given for some instruments but not {missing}", "instruments"
        )
    stacked_standards = None
    if present:
        stacked_standards = concatenate(
            [dataclasses.replace(s, wavenumber=axis) for s in present], origin=context.origin
        )
    spectra = concatenate(list(parts.values()), origin=context.origin)
    split = _split(context, top, spectra) if "split" in top.table else None
    return Dataset(
        name=name,
        spectra=spectra,
        instruments=tuple(parts),
        properties=tuple(properties),
        standards=stacked_standards,
        original_split=split,
        citation=top.get("citation", ""),
        native=native,
        overlap=overlap,
    )


def _split(context: _Context, top: _Table, spectra: Spectra) -> dict[str, str]:
    table = _Table(context.origin, "split", top.table["split"], _SPLIT)
    path = context.path(table, "file", table.get("file", required=True))
    column = table.get("column", required=True)
    id_column = table.get("id_column", context.id_column)
    split = read_label_csv(
        path,
        label_columns=(),
        meta_columns=(column,),
        sample_id_column=None if context.pairing == "row" else id_column,
        csv_format=context.csv_format(table),
    )
    subsets = split.meta[column].tolist()
    ids = spectra.sample_id[spectra.instrument == spectra.instrument[0]].tolist()
    keys = ids if split.sample_id is None else split.sample_id.tolist()
    if len(keys) != len(subsets) or (split.sample_id is None and len(subsets) != len(ids)):
        raise table.error(f"{path}: {len(subsets)} rows for {len(ids)} samples", "file")
    bad = sorted({s for s in subsets if s not in SUBSETS})
    if bad:
        raise table.error(f"{path}: subsets {bad} are not among {list(SUBSETS)}", "column")
    mapping = dict(zip(keys, subsets, strict=True))
    missing = sorted(set(ids) - set(mapping))
    if missing:
        raise table.error(
            f"{path}: no subset for {len(missing)} samples, e.g. {missing[:3]}", "file"
        )
    return {s: mapping[s] for s in ids}


def _from_bundle(top: _Table, base: pathlib.Path, name: str) -> Dataset:
    """A dataset file that names a saved data set (`bundle = "FILE.npz"`)."""
    allowed = ("name", "bundle", "description", "citation")
    extra = sorted(set(top.table) - set(allowed))
    if extra:
        raise top.error(f"with 'bundle', only {list(allowed)} are read; remove {extra}")
    value = top.get("bundle")
    path = pathlib.Path(value)
    path = path if path.is_absolute() else base / path
    if not path.exists():
        raise top.error(f"{value!r}: no such file ({path})", "bundle")
    dataset = bundled.read_bundle(path)
    if dataset.name != name:
        raise top.error(f"{path} holds data set {dataset.name!r}, not {name!r}", "name")
    return dataset
