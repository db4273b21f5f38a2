"""MPX_specDB: measured Raman and ATR-FTIR spectra of weathered and biofouled polymers (CSV).

Each file is a two-column CSV with a header row, named
`[Region]_[PolymerID]-[Polymer]_[Treatment]_[Analysis]_[hash8].csv`; the Analysis field gives the
modality (`Raman` or `ATR` = IR). ATR files are `cm-1,A` (wavenumber, absorbance). Raman files
are `cm-1,Intensity` (Raman shift) or `nm,Intensity`, where x is the *absolute* scattered
wavelength: it becomes the Raman shift 1e7/λ_laser − 1e7/λ with `--laser_nm` (532 nm, the
WITec alpha300R laser of the database's SOPs). Spectra whose wavelengths do not fit that laser
(shifts beyond 5000 cm⁻¹) are skipped with the reason. Other CSV files (e.g.
`selected_metadata.csv`) are not spectra and are ignored.

Downloads fetch the 120-file selection described in the shared reference data (6 polymers ×
10 Raman + 10 ATR, treatment `nobio`) from the repository at a fixed commit; their sha256 are
known (`mpx_files.sha256`) and checked before any file is saved or converted.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator

from caltransfer_jax.data.spectra import SpectraError
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
    name="mpx",
    title="MPX_specDB: Raman and ATR-FTIR spectra of weathered and biofouled polymers",
    url="https://github.com/robna/MPX_specDB",
    licence="CC BY-SA 4.0 (spectra and metadata)",
    citation="Lenz R, Fischer F, Arnold M, Fernández-González V, Moscoso-Pérez CM, "
    "Andrade-Garda JM, Muniategui-Lorenzo S, Fischer D. Database of Raman and ATR-FTIR spectra "
    "of weathered and biofouled polymers, 2023, doi:10.5281/zenodo.8314801",
)
COMMIT = "51eba9509cf18c1d22a7dc6fd036baa9bc3ab5d8"
BASE_URL = f"https://raw.githubusercontent.com/robna/MPX_specDB/{COMMIT}/spectra/"
_NAME = re.compile(r"[A-Za-z]+_\d+-[A-Za-z0-9]+_[A-Za-z]+_(Raman|ATR)_[0-9a-f]{8}\.csv")
_INSTRUMENTS = {"Raman": "MPX Raman (WITec alpha300R)", "ATR": "MPX ATR-FTIR"}


def _known() -> dict[str, str]:
    lines = (pathlib.Path(__file__).parent / "mpx_files.sha256").read_text().splitlines()
    return {path: sha for sha, path in (line.split() for line in lines if line.strip())}


# Relative path under the raw folder -> sha256, for the downloadable selection.
KNOWN_SHA256 = _known()


def remote_files(options: Options) -> list[RemoteFile]:
    """The selection, each file with its known sha256."""
    del options  # the selection is fixed
    return [
        RemoteFile(BASE_URL + path.rsplit("/", 1)[-1], path, sha256)
        for path, sha256 in KNOWN_SHA256.items()
    ]


def convert(
    raw_dir: pathlib.Path, options: Options, report: Report
) -> Iterator[CorpusSpectrum | Skipped]:
    """Converts every MPX-named CSV file below `raw_dir`."""
    paths = sorted(p for p in raw_dir.rglob("*.csv") if _NAME.fullmatch(p.name))
    for path in paths:
        name = report.relative(path)
        report.add_input(path)
        try:
            yield _convert_file(path, name, options)
        except SpectraError as error:
            yield Skipped(name, str(error))


def _convert_file(path: pathlib.Path, name: str, options: Options) -> CorpusSpectrum:
    table = read_two_columns(path)
    if len(table.columns) != 2:
        raise SpectraError(f"{path}: no header row naming the columns (e.g. 'cm-1,A')")
    analysis = _NAME.fullmatch(path.name).group(1)
    x_unit, y_name = table.columns
    return physical_spectrum(
        str(path),
        name,
        table.x,
        table.y,
        unit=x_unit,
        modality="Raman" if analysis == "Raman" else "IR",
        instrument=_INSTRUMENTS[analysis],
        options=options,
        value_unit="absorbance" if y_name == "A" else y_name,
    )
