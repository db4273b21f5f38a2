"""USPTO-Spectra: computed IR spectra of molecules from USPTO patents (parquet, Zenodo).

Zenodo record 16417648 holds nine parquet chunks `IR_data_chunk00k_of_009.parquet` (~900 MB
each); every row has a list column `Frequency(cm^-1)` (the spectrum's own wavenumber axis,
~12 000 points) and a list column `ir_spectra` (its values), and an identifier (`smiles`, when
present). Reading parquet needs `pyarrow` (a tensorflow-datasets dependency); without it the
build stops with an error saying so.

Conversion (`convert_spectrum`): points outside `--ir_range` (400–4000 cm⁻¹) are dropped, and the
spectrum, sampled far more finely than the model's token grid, is averaged onto the fixed grid
of multiples of `--step` (2 cm⁻¹ by default; see `common.bin_average`). Values are kept as
computed (no per-spectrum normalisation: the input pipeline standardises each view).
"""

from __future__ import annotations

import dataclasses
import pathlib
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
    physical_spectrum,
)

SOURCE = SourceInfo(
    name="uspto",
    title="USPTO-Spectra: computed IR spectra of molecules from USPTO patents (Zenodo 16417648)",
    url="https://zenodo.org/records/16417648",
    licence="as stated on the Zenodo record (not verified here)",
    citation="USPTO-Spectra, Zenodo record 16417648",
)
FILES = tuple(
    RemoteFile(
        f"https://zenodo.org/records/16417648/files/IR_data_chunk{k:03d}_of_009.parquet?download=1",
        f"IR_data_chunk{k:03d}_of_009.parquet",
        magic=b"PAR1",
    )
    for k in range(1, 10)
)
FREQUENCY_COLUMN = "Frequency(cm^-1)"
SPECTRUM_COLUMN = "ir_spectra"
ID_COLUMNS = ("smiles", "SMILES", "id")
DEFAULT_STEP = 2.0
_BATCH = 256


def remote_files(options: Options) -> list[RemoteFile]:
    """The nine chunks (no published sha256)."""
    del options  # always all chunks
    return list(FILES)


def convert(
    raw_dir: pathlib.Path, options: Options, report: Report
) -> Iterator[CorpusSpectrum | Skipped]:
    """Converts every parquet file below `raw_dir` (sorted by path)."""
    for path in sorted(raw_dir.rglob("*.parquet")):
        report.add_input(path)
        name = report.relative(path)
        for index, ident, frequency, intensity in read_parquet(path):
            record = f"{name}:{ident if ident is not None else index}"
            try:
                yield convert_spectrum(
                    f"{path}: row {index}", record, frequency, intensity, options
                )
            except SpectraError as error:
                yield Skipped(record, str(error))


def read_parquet(path: pathlib.Path) -> Iterator[tuple[int, str | None, object, object]]:
    """(row, id, frequency, intensity) of every row; the arrays are None where null.

    Raises:
      SpectraError: pyarrow missing, unreadable file, missing or non-list columns.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SpectraError(
            f"{path}: reading USPTO-Spectra parquet files needs pyarrow, which is not installed "
            "(pip install pyarrow)"
        ) from None
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise SpectraError(f"{path}: not a readable parquet file ({error})") from None
    schema = file.schema_arrow
    missing = [c for c in (FREQUENCY_COLUMN, SPECTRUM_COLUMN) if c not in schema.names]
    if missing:
        raise SpectraError(f"{path}: missing column(s) {missing}; columns are {schema.names}")
    for column in (FREQUENCY_COLUMN, SPECTRUM_COLUMN):
        kind = schema.field(column).type
        if not (
            pa.types.is_list(kind)
            or pa.types.is_large_list(kind)
            or pa.types.is_fixed_size_list(kind)
        ):
            raise SpectraError(f"{path}: column {column!r} is {kind}, expected a list per row")
    ident = next((c for c in ID_COLUMNS if c in schema.names), None)
    columns = [FREQUENCY_COLUMN, SPECTRUM_COLUMN] + ([ident] if ident else [])
    row = 0
    try:
        for batch in file.iter_batches(batch_size=_BATCH, columns=columns):
            ids = batch.column(2).to_pylist() if ident else [None] * batch.num_rows
            for j in range(batch.num_rows):
                arrays = [batch.column(k)[j].values for k in (0, 1)]
                yield (
                    row,
                    None if ids[j] is None else str(ids[j]),
                    *(None if a is None else a.to_numpy(zero_copy_only=False) for a in arrays),
                )
                row += 1
    except pa.ArrowException as error:
        raise SpectraError(f"{path}: damaged parquet data near row {row} ({error})") from None


def convert_spectrum(
    origin: str, name: str, frequency, intensity, options: Options
) -> CorpusSpectrum:
    """One computed spectrum on the physical axis, cut to `options.ir_range` and averaged onto
    the grid of multiples of `options.step` (DEFAULT_STEP if None).

    Args:
      origin: file and row, for error messages.
      name: the record's id.
      frequency: (p,) wavenumbers in cm⁻¹ (any order).
      intensity: (p,) computed IR values.
      options: conversion settings.
    """
    if frequency is None or intensity is None:
        raise SpectraError(f"{origin}: missing (null) frequency or spectrum")
    x = np.asarray(frequency, dtype=np.float64).ravel()
    y = np.asarray(intensity, dtype=np.float64).ravel()
    if x.size != y.size:
        raise SpectraError(f"{origin}: {x.size} frequencies but {y.size} spectrum values")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise SpectraError(f"{origin}: non-finite frequency or spectrum value")
    lo, hi = options.ir_range
    keep = (x >= lo) & (x <= hi)
    if options.step is None:
        options = dataclasses.replace(options, step=DEFAULT_STEP)
    return physical_spectrum(
        origin,
        name,
        x[keep],
        y[keep],
        unit="cm-1",
        modality="IR",
        instrument="computed (USPTO-Spectra)",
        options=options,
        value_unit="computed IR spectrum",
    )
