"""Computed IR and Raman line lists of ChEMBL molecules (two SQLite databases on Figshare).

**No pickle.** The published databases keep each molecule's frequencies and intensities inside
zlib-compressed Python pickles; unpickling downloaded data can run arbitrary code, so this module
never does it, and no other reading of those blobs is attempted. What is read:

- every table with a plain frequency column (`freq`, `frequency` or `frequencies`; names
  compared without case, spaces or punctuation) and an IR-intensity (`IR Inten`,
  `ir_intensity`, …) and/or Raman-activity (`Raman Activ`, `raman_activity`, …) column;
- cell values that are TEXT (a JSON array `[1.0, 2.5]` or numbers separated by commas,
  semicolons or blanks) or a single number.

A BLOB in one of those columns, or a table whose line lists exist only in BLOB columns, stops
the build with an error that says which column holds pickles. Such a database converts after its
line lists are exported to text columns with a trusted tool of its authors'.

Each molecule (row) gives one IR and/or one Raman record: the line list made into a spectrum by
`lines.lorentzian_spectrum` (area-normalised Lorentzians, HWHM `--hwhm`) on the fixed grid
`--ir_range` / `--raman_range` at `--step` cm⁻¹ (2 by default); Raman activities are kept or, with
`--raman_intensity=cross_section`, converted to relative intensities. The record name is
`<file>:<table>:<id>` with the id from a `chembl_id`/`smiles`/`id` column, else the row number.
"""

from __future__ import annotations

import json
import pathlib
import re
import sqlite3
import zlib
from collections.abc import Iterator

import numpy as np

from caltransfer_jax.data.spectra import SpectraError
from data_prep.public_corpora.common import (
    CorpusSpectrum,
    Options,
    RemoteFile,
    Report,
    Skipped,
    SourceInfo,
    infrared_modality,
)
from data_prep.public_corpora.lines import (
    check_lines,
    grid,
    lorentzian_spectrum,
    raman_cross_section,
)

SOURCE = SourceInfo(
    name="chembl",
    title="Computed IR and Raman spectra of ChEMBL molecules (SQLite databases, Figshare)",
    url="https://figshare.com/ndownloader/files/54662735",
    licence="as stated on the Figshare record (not verified here)",
    citation="Computed Raman/IR spectra of ChEMBL molecules, Figshare files 54662735 and "
    "54662885; ChEMBL: Zdrazil B et al., Nucleic Acids Res. 2024, 52, D1180-D1192",
)
FILES = (
    RemoteFile(
        "https://ndownloader.figshare.com/files/54662735",
        "Raman-ChEMBL-part1.db",
        magic=b"SQLite format 3\x00",
    ),
    RemoteFile(
        "https://ndownloader.figshare.com/files/54662885",
        "Raman-ChEMBL-part2.db",
        magic=b"SQLite format 3\x00",
    ),
)
DEFAULT_STEP = 2.0  # cm⁻¹: 1801 IR / 1951 Raman points, 5 per HWHM of 10 cm⁻¹
SUFFIXES = (".db", ".sqlite", ".sqlite3")
_FREQUENCY = ("freq", "freqs", "frequency", "frequencies")
_INTENSITY = {
    "IR": ("irinten", "irintensity", "irintensities"),
    "Raman": ("ramanactiv", "ramanactivity", "ramanactivities"),
}
_ID = ("chemblid", "moleculechemblid", "smiles", "canonicalsmiles", "id")
_SEPARATOR = re.compile(r"[,;\s]+")


class BlobError(SpectraError):
    """A line list stored as a BLOB (never decoded; pickles are named as such)."""


def remote_files(options: Options) -> list[RemoteFile]:
    """The two databases (about 5 GB and 5.4 GB; no published sha256)."""
    del options  # always both parts
    return list(FILES)


def convert(
    raw_dir: pathlib.Path, options: Options, report: Report
) -> Iterator[CorpusSpectrum | Skipped]:
    """Converts every SQLite database below `raw_dir` (sorted by path)."""
    paths = sorted(p for p in raw_dir.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    for path in paths:
        report.add_input(path)
        yield from convert_database(path, report.relative(path), options)


def convert_database(
    path: pathlib.Path, name: str, options: Options
) -> Iterator[CorpusSpectrum | Skipped]:
    """The records of one database (see the module docstring).

    Raises:
      SpectraError: not an SQLite file, no table with a plain line list.
      BlobError: a line list in a BLOB (pickled or not).
    """
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"  # never write to the input
    try:
        connection = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as error:
        raise SpectraError(f"{path}: cannot open as SQLite ({error})") from None
    try:
        tables = _line_tables(path, connection)
        for table, columns in tables:
            yield from _table_records(path, name, connection, table, columns, options)
    except sqlite3.DatabaseError as error:
        raise SpectraError(f"{path}: not a readable SQLite database ({error})") from None
    finally:
        connection.close()


def _key(column: str) -> str:
    return re.sub(r"[^a-z0-9]", "", column.lower())


def _quote(identifier: str) -> str:
    """An SQL identifier in double quotes (names come from the file, so they are escaped)."""
    return '"' + identifier.replace('"', '""') + '"'


def _line_tables(
    path: pathlib.Path, connection: sqlite3.Connection
) -> list[tuple[str, dict[str, str | None]]]:
    """(table, {role: column}) for every table with a frequency and an intensity column."""
    names = [
        row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
    ]
    found, problems = [], []
    for table in names:
        columns = [row[1] for row in connection.execute(f"PRAGMA table_info({_quote(table)})")]
        by_key = {_key(c): c for c in columns}
        roles = {"freq": next((by_key[k] for k in _FREQUENCY if k in by_key), None)}
        for modality, keys in _INTENSITY.items():
            roles[modality] = next((by_key[k] for k in keys if k in by_key), None)
        roles["id"] = next((by_key[k] for k in _ID if k in by_key), None)
        if roles["freq"] and (roles["IR"] or roles["Raman"]):
            found.append((table, roles))
            continue
        first = connection.execute(f"SELECT * FROM {_quote(table)} LIMIT 1").fetchone() or ()
        pickled = [c for c, v in zip(columns, first, strict=False) if _is_pickle(v)]
        problems.append(
            f"table {table!r} (columns {columns})"
            + (f": column(s) {pickled} hold Python pickles" if pickled else "")
        )
    if not found:
        pickles = any("pickles" in p for p in problems)
        raise BlobError(
            f"{path}: no table with a plain frequency column and an IR-intensity or "
            f"Raman-activity column; {'; '.join(problems) or 'no tables'}"
            + (_PICKLE_ADVICE if pickles else "")
        )
    return found


_PICKLE_ADVICE = (
    ". Pickles are never unpickled (unpickling downloaded data can run arbitrary code); export "
    "the line lists to text columns with a trusted tool to convert this database "
    "(docs/CORPORA.md)"
)


def _is_pickle(value) -> bool:
    """True for bytes that are a pickle (protocol 2-5), raw or zlib-compressed."""
    if not isinstance(value, bytes | memoryview):
        return False
    head = bytes(value[:64])
    if head[:1] == b"\x78":  # zlib stream header
        try:
            # A prefix of the stream is enough, and at most 64 bytes come out (no zip bomb).
            head = zlib.decompressobj().decompress(bytes(value[:1024]), 64)
        except zlib.error:
            pass
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _table_records(
    path: pathlib.Path,
    name: str,
    connection: sqlite3.Connection,
    table: str,
    roles: dict[str, str | None],
    options: Options,
) -> Iterator[CorpusSpectrum | Skipped]:
    wanted = [m for m in ("IR", "Raman") if roles[m]]
    selected = [roles["freq"], *(roles[m] for m in wanted)] + ([roles["id"]] if roles["id"] else [])
    query = f"SELECT {', '.join(_quote(c) for c in selected)} FROM {_quote(table)}"
    for index, row in enumerate(connection.execute(query)):
        ident = str(row[-1]) if roles["id"] and row[-1] is not None else str(index)
        record = f"{name}:{table}:{ident}"
        where = f"{path}: table {table!r}, row {index}"
        try:
            freq = _numbers(row[0], f"{where}, column {roles['freq']!r}")
        except BlobError:
            raise
        except SpectraError as error:
            yield Skipped(record, str(error))
            continue
        for k, modality in enumerate(wanted, 1):
            column = roles[modality]
            try:
                intensities = _numbers(row[k], f"{where}, column {column!r}")
                yield line_spectrum(
                    f"{where} ({modality})", record, freq, intensities, modality, options
                )
            except BlobError:
                raise
            except SpectraError as error:
                yield Skipped(f"{record} ({modality})", str(error))


def _numbers(value, where: str) -> np.ndarray:
    """A TEXT list of numbers (JSON array or separated) or a single number, as float64."""
    if isinstance(value, bytes | memoryview):
        kind = "a Python pickle" if _is_pickle(value) else "binary data of no documented format"
        advice = _PICKLE_ADVICE if _is_pickle(value) else ""
        raise BlobError(f"{where}: a BLOB holding {kind}; BLOBs are not read{advice}")
    if value is None:
        raise SpectraError(f"{where}: missing (NULL)")
    if isinstance(value, int | float):
        return np.array([float(value)])
    text = value.strip()
    try:
        if text.startswith("["):
            return np.asarray(json.loads(text), dtype=np.float64).ravel()
        return np.array([float(f) for f in _SEPARATOR.split(text) if f])
    except (ValueError, TypeError):
        raise SpectraError(f"{where}: not a list of numbers ({text[:40]!r})") from None


def line_spectrum(
    origin: str, name: str, frequencies, intensities, modality: str, options: Options
) -> CorpusSpectrum:
    """A computed line list as a spectrum on the fixed grid of its modality.

    Args:
      origin: for error messages.
      name: the record's id.
      frequencies, intensities: (n,) mode wavenumbers (cm⁻¹) and IR intensities or Raman
        activities.
      modality: 'IR' or 'Raman'.
      options: grid, HWHM and Raman-intensity settings.
    """
    freq, strength = check_lines(origin, frequencies, intensities)
    lo, hi = options.raman_range if modality == "Raman" else options.ir_range
    axis = grid(lo, hi, options.step or DEFAULT_STEP)
    if modality == "Raman" and options.raman_intensity == "cross_section":
        strength = raman_cross_section(freq, strength, options.laser_nm, options.temperature)
        unit = (
            f"relative Raman intensity per cm-1 ({options.laser_nm:g} nm, "
            f"{options.temperature:g} K)"
        )
    elif modality == "Raman":
        unit = "Raman activity (A^4/amu) per cm-1"
    else:
        unit = "IR intensity (km/mol) per cm-1"
    values = lorentzian_spectrum(freq, strength, axis, options.hwhm)
    if not np.any(values > 0):
        raise SpectraError(f"{origin}: every mode has zero intensity")
    if modality == "IR":
        modality = infrared_modality(axis)
    instrument = f"computed (Lorentzian HWHM {options.hwhm:g} cm-1)"
    return CorpusSpectrum(name, axis, values, modality, instrument, unit)
