r"""A data set written out as CSV files and a dataset file, as a user's own data would come.

    python -m caltransfer_jax.data.csv_export --dataset=tablets --out=DIR

writes `DIR/<name>.toml` and, per instrument, `<instrument>.csv` (an `ID` column, then one column
per axis point) — plus `labels.csv`, `<instrument>_standards.csv` and `split.csv` where the data
set has them. Reading `DIR/<name>.toml` back (`dataset_file.read_dataset_file`) gives the same
data set to the last bit: values are written with Python's shortest round-trip repr, and the
axis in the data's own unit with the fewest digits that convert back to the same wavenumbers
(or in cm-1 where no such digits exist).
"""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np

from caltransfer_jax.data.dataset import Dataset
from caltransfer_jax.data.spectra import Spectra, from_wavenumber, to_wavenumber


def write_csv_dataset(dataset: Dataset, directory: str | pathlib.Path) -> pathlib.Path:
    """Writes `dataset` as CSV files plus a dataset file into a new or empty `directory` (nothing
    is overwritten); returns the dataset file.

    Instruments on their own axes (`dataset.native`) are written on those axes.
    """
    directory = pathlib.Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty; write the data set into a new folder")
    directory.mkdir(parents=True, exist_ok=True)
    spectra = dataset.spectra
    first = spectra.on_instrument(dataset.instruments[0])
    lines = [
        f"name = {json.dumps(dataset.name)}",
        f"modality = {json.dumps(spectra.modality)}",
        'pairing = "id"',
        'id_column = "ID"',
        f"value_unit = {json.dumps(spectra.value_unit)}",
        f"citation = {json.dumps(dataset.citation)}",
    ]
    for name in dataset.instruments:
        own = dataset.own(name)
        unit = write_spectra_csv(own, directory / f"{name}.csv")
        lines += ["", f"[instruments.{name}]", f'spectra = "{name}.csv"', f'axis_unit = "{unit}"']
        if dataset.standards is not None:
            standards = dataset.standards.on_instrument(name)
            write_spectra_csv(standards, directory / f"{name}_standards.csv", unit)
            lines.append(f'standards = "{name}_standards.csv"')
    units = ", ".join(
        f"{json.dumps(n)} = {json.dumps(u)}"
        for n, u in zip(first.label_names, first.label_units, strict=True)
    )
    write_rows(
        directory / "labels.csv",
        ["ID", *first.label_names],
        [[s, *map(_number, row)] for s, row in zip(first.sample_id, first.labels, strict=True)],
    )
    lines += ["", "[labels]", 'file = "labels.csv"', f"units = {{ {units} }}"]
    if dataset.original_split is not None:
        ids = first.sample_id.tolist()
        write_rows(
            directory / "split.csv", ["ID", "subset"], [[s, dataset.original_split[s]] for s in ids]
        )
        lines += ["", "[split]", 'file = "split.csv"', 'column = "subset"']
    path = directory / f"{dataset.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_spectra_csv(spectra: Spectra, path: pathlib.Path, unit: str | None = None) -> str:
    """Writes one instrument's spectra (an `ID` column, then one column per axis point); returns
    the axis unit the header is written in."""
    unit = unit or spectra.unit
    header = _axis_text(spectra.wavenumber, unit)
    if header is None:
        unit, header = "cm-1", [repr(float(x)) for x in spectra.wavenumber]
    rows = [
        [s, *(repr(float(v)) for v in row)]
        for s, row in zip(spectra.sample_id, spectra.values, strict=True)
    ]
    write_rows(path, ["ID", *header], rows)
    return unit


def _axis_text(wavenumber: np.ndarray, unit: str) -> list[str] | None:
    """Each axis point in `unit` with the fewest digits that convert back exactly (None: none)."""
    out = []
    for wn, x in zip(wavenumber, from_wavenumber(wavenumber, unit), strict=True):
        for digits in range(6, 18):
            text = f"{x:.{digits}g}"
            if to_wavenumber(np.array([float(text)]), unit)[0] == wn:
                out.append(text)
                break
        else:
            return None
    return out


def _number(value: float) -> str:
    return "NA" if np.isnan(value) else repr(float(value))


def write_rows(path: pathlib.Path, header: list[str], rows) -> None:
    """Writes a CSV file: a header row, then `rows`."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


if __name__ == "__main__":
    from absl import app, flags

    from caltransfer_jax.data import dataset_file

    flags.DEFINE_string("dataset", None, "Bundled name (corn, tablets) or a data set file.")
    flags.DEFINE_string("out", None, "Directory to write the CSV files and the dataset file to.")
    flags.mark_flags_as_required(["dataset", "out"])

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        args = flags.FLAGS
        print(write_csv_dataset(dataset_file.load(args.dataset), args.out))

    app.run(main)
