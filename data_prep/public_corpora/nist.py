"""NIST Chemistry WebBook infrared spectra (and any other IR / near-IR / Raman JCAMP-DX files).

Every `.jdx`, `.dx` or `.jcamp` file below the raw folder is read with the project's JCAMP-DX
reader (`caltransfer_jax.data.readers.read_jcamp_blocks`: decoding checked against the header,
x in cm⁻¹, µm or nm converted exactly, modality from ##DATA TYPE with the NIR rule), one record
per data block. Transmittance and reflectance become absorbance-like values (see `common`);
absorption coefficients and absorbance are kept. The instrument is the file's
##SPECTROMETER/DATA SYSTEM.

Downloads take WebBook compound ids (`C` + CAS number without dashes, or a CAS number; an
optional `:k` picks the k-th IR spectrum of the compound, default 0) and fetch
`https://webbook.nist.gov/cgi/cbook.cgi?JCAMP=<id>&Index=<k>&Type=IR` into
`webbook/<id>_<k>.jdx`. NIST publishes no checksums: the manifest records them.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator

from caltransfer_jax.data.readers import read_jcamp_blocks
from caltransfer_jax.data.spectra import SpectraError
from data_prep.public_corpora.common import (
    CorpusSpectrum,
    Options,
    RemoteFile,
    Report,
    Skipped,
    SourceInfo,
    physical_spectrum,
)

SOURCE = SourceInfo(
    name="nist",
    title="NIST Chemistry WebBook (SRD 69) infrared spectra, JCAMP-DX",
    url="https://webbook.nist.gov/chemistry/",
    licence="NIST Standard Reference Data terms (files state 'Copyright by the U.S. Secretary "
    "of Commerce' or Coblentz Society copyright); check before redistributing",
    citation="P.J. Linstrom and W.G. Mallard (eds.), NIST Chemistry WebBook, NIST Standard "
    "Reference Database Number 69, doi:10.18434/T4D303",
)
WEBBOOK_URL = "https://webbook.nist.gov/cgi/cbook.cgi?JCAMP={id}&Index={index}&Type=IR"
SUFFIXES = (".jdx", ".dx", ".jcamp")
_CAS = re.compile(r"(\d{2,7})-(\d{2})-(\d)")
_WEBBOOK_ID = re.compile(r"C\d{3,10}")


def webbook_id(text: str) -> tuple[str, int]:
    """('C64175', 0) from 'C64175', '64-17-5' or '64-17-5:0'; raises on anything else."""
    ident, _, index = text.strip().partition(":")
    cas = _CAS.fullmatch(ident)
    if cas:
        ident = "C" + "".join(cas.groups())
    if not _WEBBOOK_ID.fullmatch(ident) or (index and not index.isdigit()):
        raise SpectraError(
            f"NIST id {text!r}: expected 'C' + digits or a CAS number, optionally ':index'"
        )
    return ident, int(index or 0)


def remote_files(options: Options) -> list[RemoteFile]:
    """One JCAMP-DX file per id in `options.ids`."""
    if not options.ids:
        raise SpectraError("NIST downloads need compound ids (--nist_ids FILE, one id a line)")
    files = []
    for text in options.ids:
        ident, index = webbook_id(text)
        url = WEBBOOK_URL.format(id=ident, index=index)
        files.append(RemoteFile(url, f"webbook/{ident}_{index}.jdx", magic=b"##TITLE="))
    return files


def convert(
    raw_dir: pathlib.Path, options: Options, report: Report
) -> Iterator[CorpusSpectrum | Skipped]:
    """Converts every JCAMP-DX block below `raw_dir` (files in sorted order)."""
    paths = sorted(p for p in raw_dir.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    for path in paths:
        report.add_input(path)
        name = report.relative(path)
        try:
            blocks = read_jcamp_blocks(path)
        except SpectraError as error:
            yield Skipped(name, str(error))
            continue
        for k, block in enumerate(blocks):
            record = f"{name} (block {k + 1})" if len(blocks) > 1 else name
            try:
                yield physical_spectrum(
                    block.origin,
                    record,
                    block.wavenumber,
                    block.values[0],
                    unit="cm-1",
                    modality=block.modality,
                    instrument=str(block.instrument[0]),
                    options=options,
                    value_unit=block.value_unit,
                )
            except SpectraError as error:
                yield Skipped(record, str(error))
