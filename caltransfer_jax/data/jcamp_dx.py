"""JCAMP-DX files of IR, near-IR and Raman spectra.

Decoding is done by the `jcamp` package; this module adds what it leaves out: splitting files into
blocks (consecutive blocks and LINK compound files), refusing data that are not an IR, near-IR or
Raman spectrum, turning the package's printed line-check failures into errors, and checking the
decoded values against the header (NPOINTS, FIRSTX, LASTX, FIRSTY, XFACTOR and YFACTOR).
Files the package cannot decode (e.g. DUP right after an SQZ value) are refused with its error.

Before the package sees a block, what it would allocate is bounded: ##NPOINTS must be at most
`MAX_POINTS` and no more than the data table can hold, and DUP compression may not expand the
table beyond what NPOINTS needs. A block holds one data table, gives each number the package
reads (NPOINTS, FIRSTX, …) one value, as a plain number within the float32 range (the model
computes in float32), and non-zero XFACTOR and YFACTOR. Decoded values beyond the float32 range
are refused too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import io
import math
import pathlib
import re
import threading

import jcamp
import numpy as np

from caltransfer_jax.data.rawfile import FLOAT32_MAX, PathLike, check_text, read_bytes
from caltransfer_jax.data.spectra import (
    Spectra,
    SpectraError,
    concatenate,
    normalize_unit,
    to_wavenumber,
)

# The long-wavelength end of the near infrared: 2500 nm.
NIR_MIN_WAVENUMBER = 4000.0
# An infrared spectrum is near-infrared when at least this share of its wavenumber span lies above
# NIR_MIN_WAVENUMBER (FT-NIR instruments often scan a little below it, FT-IR ones far below).
NIR_SHARE = 0.8

_LABEL = re.compile(r"##\s*([^=]*)=(.*)")
# jcamp prints its data checks instead of raising; these are the messages it prints.
_JCAMP_MESSAGES = ("X-Check failed", "Y-Check failed", "Mismatch of array lengths")
_X_CHECK = re.compile(r"X-Check failed\. Expected value is (\S+) but (\S+) has been calculated")
# Capturing stdout is process-wide: one decode at a time.
_DECODE_LOCK = threading.Lock()
_LEADING_NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+))")
# Most points a block may declare (the `jcamp` package holds each as a Python float while
# decoding, about 50 bytes a point); read at call time, so it can be raised for one session.
MAX_POINTS = 1 << 22
# Header numbers: plain decimal or E notation (ASCII digits only, exponent of at most 4 digits).
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
# Largest power of ten below FLOAT32_MAX: a header number's last digit must not lie above it.
_FLOAT32_EXPONENT = 38
# Numbers the `jcamp` package reads: a block may repeat one only with the same value (the package
# keeps the last value, the checks here the first); and its table labels: one table per block.
_SINGLE_LABELS = frozenset("NPOINTS FIRSTX LASTX FIRSTY XFACTOR YFACTOR".split())
_TABLE_LABELS = ("XYDATA", "XYPOINTS", "PEAKTABLE")
# The package's DUP digits (repeat counts) and DIF digits (start of a difference value).
_DUP = {c: k for k, c in enumerate("STUVWXYZs", 1)}
_CODED = re.compile(r"[%J-Rj-rS-Zs]")
# DUP may expand a table by this many characters per declared point (a DIF value is 1-6).
_DUP_CHARACTERS_PER_POINT = 16


@dataclasses.dataclass
class _Block:
    line: int  # line of its ##TITLE=
    lines: list[str]
    has_children: bool = False

    def header(self) -> dict[str, str]:
        """First value of every label, keyed as the standard compares labels (upper case, no
        spaces, dashes, underscores or slashes)."""
        header: dict[str, str] = {}
        for line in self.lines:
            match = _LABEL.match(line)
            if match:
                header.setdefault(_normal_label(match.group(1)), match.group(2).strip())
        return header


def _normal_label(label: str) -> str:
    return re.sub(r"[\s\-_/]", "", label).upper()


def _label_of(line: str) -> str | None:
    match = _LABEL.match(line)
    return _normal_label(match.group(1)) if match else None


def read_jcamp(
    path: PathLike,
    *,
    instrument: str | None = None,
    modality: str | None = None,
    max_bytes: int | None = None,
) -> Spectra:
    """Reads a JCAMP-DX file of IR, near-IR or Raman spectra into one `Spectra`.

    Every data block becomes one spectrum; blocks must share their axis (else use
    `read_jcamp_blocks`). Data forms: (X++(Y..Y)) in AFFN and the compressed ASDF forms
    (SQZ/DIF/DUP, as far as the `jcamp` package decodes them) and (XY..XY). NTUPLES, peak tables
    and non-optical data (NMR, MS, FID, UV/VIS, chromatograms, …) are refused.

    Ordinates are kept as given (transmittance stays transmittance); their unit (##YUNITS) is
    recorded as `value_unit`. The sample id is the block's ##TITLE; the modality comes from
    ##DATA TYPE: RAMAN -> 'Raman'; INFRARED -> 'NIR' when the type says NEAR or at least 80 % of
    the wavenumber span lies above 4000 cm⁻¹ (below 2500 nm), else 'IR'.

    Args:
      path: the .jdx/.dx file.
      instrument: instrument id; defaults to ##SPECTROMETER/DATA SYSTEM, else 'unknown'.
      modality: forces the modality (for files whose ##DATA TYPE is missing or unusual).
      max_bytes: largest file read (default `caltransfer_jax.data.rawfile.MAX_BYTES`, 512 MiB).

    Blocks may declare at most `MAX_POINTS` points (4 Mi); header numbers and decoded values
    must lie within the float32 range (±3.4e38).
    """
    blocks = read_jcamp_blocks(path, instrument=instrument, modality=modality, max_bytes=max_bytes)
    if len(blocks) == 1:
        return blocks[0]
    try:
        return concatenate(blocks, origin=str(path))
    except SpectraError as error:
        raise SpectraError(f"{error}; read such files with read_jcamp_blocks") from None


def read_jcamp_blocks(
    path: PathLike,
    *,
    instrument: str | None = None,
    modality: str | None = None,
    max_bytes: int | None = None,
) -> list[Spectra]:
    """Reads every data block of a JCAMP-DX file as its own one-spectrum `Spectra`.

    See `read_jcamp` for what is read and checked. Multi-block files name each block in error
    messages and origins as 'file (block k)'.
    """
    origin, data = read_bytes(path, max_bytes=max_bytes)
    check_text(origin, data)
    text = data.decode("latin-1")
    if text.startswith("\xef\xbb\xbf"):  # a UTF-8 byte-order mark, read as latin-1
        text = text[3:]
    blocks = _split_blocks(origin, text)
    spectra = []
    for k, block in enumerate(blocks):
        where = f"{origin} (block {k + 1})" if len(blocks) > 1 else origin
        try:
            spectra.append(
                _read_block(where, block, pathlib.Path(origin).stem, instrument, modality)
            )
        except (ArithmeticError, MemoryError) as error:  # a last guard: the checks prevent them
            raise SpectraError(
                f"{where}: numbers out of range ({type(error).__name__}: {error}); check the "
                "header and the data table"
            ) from None
    return spectra


def _split_blocks(origin: str, text: str) -> list[_Block]:
    """The data blocks (##TITLE= … ##END=), with comments removed; LINK blocks are opened."""
    stack: list[_Block] = []
    leaves: list[_Block] = []
    for number, raw in enumerate(text.splitlines(), 1):
        # $$ starts a comment; 0x1a is a DOS end-of-file mark; some writers indent labels.
        line = raw.split("$$", 1)[0].replace("\x1a", "").strip()
        if not line:
            continue
        label = _label_of(line)
        if label == "TITLE":
            if stack:
                stack[-1].has_children = True
            stack.append(_Block(number, [line]))
            continue
        if not stack:
            raise SpectraError(
                f"{origin}: line {number} lies outside a ##TITLE= … ##END= block; "
                "not a JCAMP-DX file?"
            )
        stack[-1].lines.append(line)
        if label == "END":
            block = stack.pop()
            if not block.has_children:
                leaves.append(block)
    if stack:
        raise SpectraError(
            f"{origin}: the block starting at line {stack[-1].line} has no ##END= (truncated file?)"
        )
    return leaves


def _read_block(
    origin: str, block: _Block, default_title: str, instrument: str | None, modality: str | None
) -> Spectra:
    header = block.header()
    data_type = header.get("DATATYPE", "")
    if modality is None and not any(word in data_type.upper() for word in ("INFRARED", "RAMAN")):
        raise SpectraError(
            f"{origin}: ##DATA TYPE={data_type!r} is not an infrared, near-infrared or Raman "
            "spectrum (pass modality= to read it anyway)"
        )
    if "XYDATA" not in header and "XYPOINTS" not in header:
        other = [f for f in ("NTUPLES", "PEAKTABLE", "PEAKASSIGNMENTS") if f in header]
        raise SpectraError(
            f"{origin}: no ##XYDATA= or ##XYPOINTS= table"
            + (f" ({other[0]} data are not supported)" if other else "")
        )
    if "XUNITS" not in header:
        raise SpectraError(f"{origin}: no ##XUNITS=")
    unit = normalize_unit(header["XUNITS"], origin)
    _check_single_labels(origin, block)
    npoints = _header_number(header, "NPOINTS", origin)
    first_x = _header_number(header, "FIRSTX", origin)
    last_x = _header_number(header, "LASTX", origin)
    if npoints < 2 or npoints != int(npoints):
        raise SpectraError(f"{origin}: ##NPOINTS={header['NPOINTS']} is not a count of 2 or more")
    _check_capacity(origin, block, header, int(npoints))
    for name in ("XFACTOR", "YFACTOR"):
        if _header_number(header, name, origin, 1.0) == 0:
            raise SpectraError(
                f"{origin}: ##{name}={header[name]} is zero; it must be the non-zero factor that "
                f"scales the table's {'abscissae' if name == 'XFACTOR' else 'ordinates'}"
            )
    x, y = _decode(origin, block, header, first_x, last_x, int(npoints))
    step = abs(last_x - first_x) / (npoints - 1)
    for name, expected, got in (("FIRSTX", first_x, x[0]), ("LASTX", last_x, x[-1])):
        if abs(got - expected) > 0.5 * step:
            raise SpectraError(
                f"{origin}: decoded axis {'starts' if name == 'FIRSTX' else 'ends'} at {got:.8g} "
                f"but ##{name}={expected:.8g} (check XFACTOR)"
            )
    if "FIRSTY" in header:
        first_y = _header_number(header, "FIRSTY", origin)
        y_factor = _header_number(header, "YFACTOR", origin, 1.0)
        # FIRSTY is trusted to its last written digit (headers often keep 3 significant digits,
        # truncated); the decoded value to one step of YFACTOR.
        # (_header_number bounds the exponent: no overflow; below 1e-308 this is 0.)
        digit = 10.0 ** decimal.Decimal(header["FIRSTY"]).as_tuple().exponent
        if abs(y[0] - first_y) > digit + abs(y_factor) + 1e-12 * abs(first_y):
            raise SpectraError(
                f"{origin}: first decoded ordinate {y[0]:.8g} disagrees with "
                f"##FIRSTY={header['FIRSTY']} (check YFACTOR={header.get('YFACTOR', 1)})"
            )
    if modality is None:
        modality = _modality(data_type, to_wavenumber(x, unit))
    return Spectra.from_axis(
        y[None, :],
        x,
        unit,
        modality=modality,
        instrument=instrument or header.get("SPECTROMETERDATASYSTEM") or "unknown",
        sample_id=[header.get("TITLE") or default_title],
        origin=origin,
        value_unit=header.get("YUNITS", ""),
    )


def _modality(data_type: str, wavenumber: np.ndarray) -> str:
    if "RAMAN" in data_type.upper():
        return "Raman"
    low, high = np.min(wavenumber), np.max(wavenumber)
    near_share = (high - min(max(low, NIR_MIN_WAVENUMBER), high)) / (high - low)
    return "NIR" if "NEAR" in data_type.upper() or near_share >= NIR_SHARE else "IR"


def _header_number(header: dict[str, str], name: str, origin: str, default=None) -> float:
    if name not in header:
        if default is None:
            raise SpectraError(f"{origin}: no ##{name}= in the header")
        return default
    text = header[name]
    value = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise SpectraError(f"{origin}: ##{name}={text!r} is not a finite number")
    if abs(value) > FLOAT32_MAX:
        raise SpectraError(
            f"{origin}: ##{name}={text} is beyond the float32 range (±{FLOAT32_MAX:.3g}); "
            "check the header"
        )
    exponent = decimal.Decimal(text).as_tuple().exponent
    if exponent > _FLOAT32_EXPONENT:
        raise SpectraError(
            f"{origin}: ##{name}={text} has its last digit at 1e{exponent}, beyond the float32 "
            f"range (±{FLOAT32_MAX:.3g}); write the number plainly"
        )
    return value


def _check_single_labels(origin: str, block: _Block) -> None:
    """Refuses a block with two data tables, or giving a number the `jcamp` package reads twice
    with different values (the package keeps the last, the checks here the first)."""
    seen: dict[str, str] = {}
    tables = []
    for line in block.lines:
        match = _LABEL.match(line)
        label = _normal_label(match.group(1)) if match else None
        if label in _TABLE_LABELS:
            tables.append(f"##{match.group(1).strip()}=")
            if len(tables) > 1:
                raise SpectraError(
                    f"{origin}: the block has more than one data table ({', '.join(tables)}); "
                    "give each table its own ##TITLE= … ##END= block"
                )
        elif label in _SINGLE_LABELS:
            value = match.group(2).strip()
            if seen.setdefault(label, value) != value:
                raise SpectraError(
                    f"{origin}: ##{label}= is given twice in the block with different values "
                    f"({seen[label]!r} and {value!r}); which one holds is ambiguous"
                )


def _check_capacity(origin: str, block: _Block, header: dict[str, str], npoints: int) -> None:
    """Bounds what decoding allocates, before the `jcamp` package sees the block: NPOINTS at most
    MAX_POINTS and no more than the table can hold, and no DUP expansion beyond what NPOINTS
    needs (the package expands DUP by copying text, which a hostile table makes quadratic)."""
    if npoints > MAX_POINTS:
        raise SpectraError(
            f"{origin}: ##NPOINTS={header['NPOINTS']} is more than the limit of {MAX_POINTS} "
            "points (raise caltransfer_jax.data.jcamp_dx.MAX_POINTS if the file is genuine)"
        )
    budget = _DUP_CHARACTERS_PER_POINT * npoints
    characters = expansion = 0
    table = form = None  # the first table's label; the form of the table being read
    for line in block.lines:
        match = _LABEL.match(line)
        if match:
            label = _normal_label(match.group(1))
            is_table = label in _TABLE_LABELS
            form = match.group(2).strip() if is_table else None
            table = label if table is None and label in ("XYDATA", "XYPOINTS") else table
            continue
        if form is None:
            continue
        line = " ".join(line.split())  # as the package sees the line
        if label == table:
            characters += len(line)
        if form == "(X++(Y..Y))" and any(c in _DUP for c in line):
            expansion += _dup_expansion(line, budget - expansion)
            if expansion > budget:
                raise SpectraError(
                    f"{origin}: the data table's DUP counts expand it far beyond the {npoints} "
                    f"points of ##NPOINTS (more than {budget} characters); corrupt or hostile table"
                )
    # Every value takes at least one character of the (expanded) table.
    if npoints > characters + expansion:
        raise SpectraError(
            f"{origin}: ##NPOINTS={header['NPOINTS']} but the data table ({characters} "
            f"characters) can hold at most {characters + expansion} points; wrong NPOINTS or "
            "truncated table"
        )
    if not (header["NPOINTS"].isascii() and header["NPOINTS"].isdigit()):
        raise SpectraError(
            f"{origin}: ##NPOINTS={header['NPOINTS']} must be written as a whole number ({npoints})"
        )


def _dup_expansion(line: str, budget: int) -> int:
    """Characters the `jcamp` package adds to a line when it expands its DUP digits: each repeats
    the text since the last DIF digit (count - 1) times. Stops counting past `budget`."""
    added, last_dif = 0, -1
    for match in _CODED.finditer(line):
        count = _DUP.get(match.group())
        if count is None:
            last_dif = match.start()
        elif last_dif >= 0:  # without an earlier DIF digit the package repeats nothing
            added += (count - 1) * (match.start() - last_dif)
            if added > budget:
                break
    return added


def _decode(
    origin: str, block: _Block, header: dict, first_x: float, last_x: float, npoints: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes a block with `jcamp` and checks the point count and its line checks."""
    printed = io.StringIO()
    try:
        # Overflow is reported below, as values beyond the float32 range.
        with _DECODE_LOCK, contextlib.redirect_stdout(printed), np.errstate(all="ignore"):
            record = jcamp.read(block.lines)
    except Exception as error:  # jcamp raises bare Exception, IndexError, … on data it cannot read
        raise SpectraError(
            f"{origin}: the jcamp package cannot decode the data ({type(error).__name__}: {error})"
        ) from None
    x = np.asarray(record.get("x", ()), dtype=np.float64)
    y = np.asarray(record.get("y", ()), dtype=np.float64)
    if y.size != npoints or x.size != npoints:
        raise SpectraError(
            f"{origin}: decoded {y.size} ordinates (and {x.size} abscissae) but ##NPOINTS={npoints}"
        )
    for name, values, factor in (("abscissa", x, "XFACTOR"), ("ordinate", y, "YFACTOR")):
        bad = np.flatnonzero(~(np.abs(values) <= FLOAT32_MAX))  # also NaN
        if bad.size:
            raise SpectraError(
                f"{origin}: decoded {name} {values[bad[0]]:.4g} at point {bad[0] + 1} is beyond "
                f"the float32 range (±{FLOAT32_MAX:.3g}); check {factor} and the data table"
            )
    x_factor = _header_number(header, "XFACTOR", origin, 1.0)
    raw_step = abs(last_x - first_x) / (npoints - 1) / x_factor
    if "XYDATA" in header:
        start = next(i for i, line in enumerate(block.lines) if _label_of(line) == "XYDATA")
        match = _LEADING_NUMBER.match(block.lines[start + 1])
        if match and abs(float(match.group(1)) * x_factor - first_x) > 0.5 * raw_step * x_factor:
            raise SpectraError(
                f"{origin}: the first data line starts at x = {float(match.group(1)) * x_factor:.8g}"
                f" but ##FIRSTX={first_x:.8g} (check XFACTOR)"
            )
    messages = [m for m in printed.getvalue().splitlines() if m.startswith(_JCAMP_MESSAGES)]
    for message in messages:
        match = _X_CHECK.match(message)
        # Some encoders label a line with the abscissa of its first new point rather than of
        # its y-check value: within one point that is rounding, beyond it points are lost.
        if match and abs(float(match.group(1)) - float(match.group(2))) < raw_step:
            continue
        raise SpectraError(f"{origin}: data line check failed: {message}")
    return x, y
