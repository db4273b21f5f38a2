"""RRUFF: measured Raman and infrared spectra of minerals (two-column text in zip archives).

Layout of the raw folder: `raman/*.zip` and `infrared/*.zip` as published (each archive is
extracted safely, once, into a folder of the same name beside it, replaced when the archive
changes), or already extracted `.txt` files anywhere below it. Each text file holds
`##KEY=value` header lines (`##NAMES=`, `##RRUFFID=`, `##RAMAN WAVELENGTH=`, …), then `x, y`
lines up to `##END=`; x is the Raman shift or the wavenumber in cm⁻¹. Modality: the header's `##FILETYPE=`, else the file name
(`Mineral__R050332__Raman__514__…txt`), else the folder (`raman/`, `infrared/`). The laser
wavelength (header, else the file name) names the instrument, e.g. 'RRUFF Raman 532 nm'.
RRUFF archives have no published checksums: the manifest records what was downloaded.
"""

from __future__ import annotations

import pathlib
import re
import shutil
from collections.abc import Iterator

from caltransfer_jax.data.spectra import SpectraError
from data_prep.public_corpora import archives
from data_prep.public_corpora.common import (
    CorpusSpectrum,
    Options,
    RemoteFile,
    Report,
    Skipped,
    SourceInfo,
    physical_spectrum,
    read_two_columns,
)

SOURCE = SourceInfo(
    name="rruff",
    title="RRUFF Project: Raman and infrared spectra of minerals",
    url="https://rruff.info",
    licence="not stated as an open licence; free to use for research with citation (check "
    "rruff.info before redistributing)",
    citation="Lafuente B, Downs RT, Yang H, Stone N (2015) The power of databases: the RRUFF "
    "project. In: Highlights in Mineralogical Crystallography, T Armbruster and RM Danisi, eds. "
    "Berlin, Germany, W. De Gruyter, pp 1-30",
)
BASE_URL = "https://www.rruff.net/zipped_data_files/"
# Archives fetched by default (others under BASE_URL, e.g. raman/excellent_unoriented.zip, can
# be named with --archives).
ARCHIVES = ("raman/LR-Raman.zip", "infrared/RAW.zip")
_KINDS = {"raman": "Raman", "infrared": "IR"}
_LASER_KEYS = ("RAMANWAVELENGTH", "LASERWAVELENGTH")
# Written into an extraction folder: the sha256 of the archive it came from.
_MARKER = ".archive-sha256"


def remote_files(options: Options) -> list[RemoteFile]:
    """The archives to download: `options.archives` ('raman/NAME.zip', …) or ARCHIVES."""
    names = options.archives or ARCHIVES
    for name in names:
        if name.split("/")[0] not in _KINDS or not name.endswith(".zip") or ".." in name:
            raise SpectraError(
                f"RRUFF archive {name!r}: expected 'raman/NAME.zip' or 'infrared/NAME.zip'"
            )
    return [RemoteFile(BASE_URL + name, name, magic=b"PK\x03\x04") for name in names]


def convert(
    raw_dir: pathlib.Path, options: Options, report: Report
) -> Iterator[CorpusSpectrum | Skipped]:
    """Extracts the archives (once) and converts every text file below `raw_dir`."""
    extracted = []
    for archive in sorted(raw_dir.rglob("*.zip")):
        report.add_input(archive)
        target = archive.with_suffix("")
        marker = target / _MARKER
        digest = report.digests(archive).sha256
        if not (marker.is_file() and marker.read_text().strip() == digest):
            if target.exists():  # extracted from another version of the archive
                shutil.rmtree(target)
            archives.extract(archive, target)
            marker.write_text(digest + "\n")
        extracted.append(target)
    for path in sorted(raw_dir.rglob("*.txt")):
        if not any(path.is_relative_to(folder) for folder in extracted):
            report.add_input(path)
        name = report.relative(path)
        try:
            yield _convert_file(path, name, options)
        except SpectraError as error:
            yield Skipped(name, str(error))


def _convert_file(path: pathlib.Path, name: str, options: Options) -> CorpusSpectrum:
    table = read_two_columns(path)
    tokens = path.stem.split("__")
    modality = _modality(table.header, tokens, name)
    if modality == "Raman":
        laser = next((table.header[k] for k in _LASER_KEYS if table.header.get(k)), "")
        if not laser and len(tokens) > 3 and re.fullmatch(r"\d+(\.\d+)?", tokens[3]):
            laser = tokens[3]
        instrument = f"RRUFF Raman {laser} nm" if laser else "RRUFF Raman"
        value_unit = "intensity"
    else:
        instrument, value_unit = "RRUFF infrared", ""  # the files do not state the unit
    return physical_spectrum(
        str(path),
        name,
        table.x,
        table.y,
        unit="cm-1",
        modality=modality,
        instrument=instrument,
        options=options,
        value_unit=value_unit,
    )


def _modality(header: dict[str, str], tokens: list[str], name: str) -> str:
    filetype = header.get("FILETYPE", "").lower()
    for word, modality in (("raman", "Raman"), ("infrared", "IR")):
        if word in filetype:
            return modality
    for token in tokens:
        if token.lower() in ("raman", "infrared"):
            return _KINDS[token.lower()]
    folder = name.split("/")[0]
    if folder in _KINDS:
        return _KINDS[folder]
    raise SpectraError(
        f"{name}: cannot tell Raman from infrared (no ##FILETYPE=, no Raman/Infrared in the "
        "file name, not under raman/ or infrared/)"
    )
