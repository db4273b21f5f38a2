r"""Rebuilds the bundled data files (`corn.npz`, `tablets.npz`) from the original CSV files.

    python -m data_prep.build_bundled --source=DIR --out=caltransfer_jax/data/bundled
    python -m data_prep.build_bundled --source=DIR --out=DIR --download  # fetch missing sources

The source folder holds `corn/*.csv` and `idrc2002_tablets/*.csv` (the layout of the development
data, each folder with its SOURCE.md). Every input's sha256 must equal the value recorded when the
file was obtained; on any mismatch or missing file the build stops before writing anything.
Outputs are written to a temporary file in the output folder and renamed into place, so an
interrupted build leaves no half-written file. `--download` fetches missing sources from the
public repositories at the commits recorded below and verifies them the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib

import numpy as np

from caltransfer_jax.data import bundled
from caltransfer_jax.data.readers import read_label_csv, read_wide_csv
from caltransfer_jax.data.spectra import SpectraError, concatenate
from data_prep.download import fetch, sha256_of, write_atomic

_GOPCA = (
    "https://raw.githubusercontent.com/bitjungle/gopca/"
    "478c59f7a7a5c0de56ad1c67ce214c6f85525d65/testdata/corn/corn_"
)
_CHEMOMETRICS_DATA = (
    "https://raw.githubusercontent.com/caseykneale/ChemometricsData.jl/"
    "9aae583acacb28411e471979fb50148d79ed2967/data/IDRC_2002_Pharma_Shootout/"
)


@dataclasses.dataclass(frozen=True)
class Source:
    """One input file: its path under the source folder, sha256 and public URL."""

    path: str
    sha256: str
    url: str


SOURCES = {
    "corn": tuple(
        Source(f"corn/{name}", sha, _GOPCA + name)
        for name, sha in (
            ("m5spec.csv", "102b4abd8441e48c77d8bf4812d21952352793b1928f926dcedce44ec57fb19a"),
            ("mp5spec.csv", "ff25cc78ca51b3fb49b0374feeff23949ee17d8ae5a214ae122b5b66813d3532"),
            ("mp6spec.csv", "d697d9d0fdfd7e20db6b2d660e442634fe33bba6a1c94f619b3641f1aafca81e"),
            ("m5nbs.csv", "bc2beace640238631dda37033665f90054799767ccb2c0adeefc3a676b70ca20"),
            ("mp5nbs.csv", "e1bb5422256ed533782453781bf47acde0aff1edf19522416d62b2670a58bf7d"),
            ("mp6nbs.csv", "f2da1f92adaa77a475ebeb9b85a0a414e694dbbf9c3a4ee39e31b717380dd7b6"),
            ("propvals.csv", "196880206e05bbab5e542c2f89567ac1347751f441666b868f101da2b3f47326"),
        )
    ),
    "tablets": tuple(
        Source(f"idrc2002_tablets/{name}", sha, _CHEMOMETRICS_DATA + name)
        for name, sha in (
            (
                "Pharma_Instrument1.csv",
                "a760cf1a72a2268b59ee43a651430d0e30cdadfc9a9923dde5e72bef946aaaea",
            ),
            (
                "Pharma_Instrument2.csv",
                "36e46b5ff67e46e53c885df83da54c962c56206f3df7c6647a6a41b207dc86f2",
            ),
        )
    ),
}

CORN_CITATION = (
    'Eigenvector Research, Inc., "Corn data set" (measured at Cargill), '
    "https://eigenvector.com/resources/data-sets/"
)
TABLETS_CITATION = (
    "IDRC 2002 Shoot-out data set (Council for Near-Infrared Spectroscopy), distributed by "
    "Eigenvector Research, Inc., nir_shootout_2002.mat, "
    "https://eigenvector.com/resources/data-sets/"
)
CORN_INSTRUMENTS = ("m5", "mp5", "mp6")
# propvals.csv column -> property name; all in percent.
CORN_PROPERTIES = {"Moisture": "moisture", "Oil": "oil", "Protein": "protein", "Starch": "starch"}
TABLET_INSTRUMENTS = ("spec1", "spec2")
# The CSV columns, in the order of the Eigenvector .mat Y matrices: weight (mg), hardness (unit
# not stated by the source), assay (mg of active ingredient per tablet).
TABLET_PROPERTIES = {"weight": "mg", "hardness": "", "assay": "mg"}
TABLET_SUBSETS = {"Train": "calibrate", "Validate": "validate", "Test": "test"}


def verify(source_dir: pathlib.Path, names: tuple[str, ...]) -> None:
    """Checks that every source file of the named data sets exists and has its sha256."""
    problems = []
    for source in (s for name in names for s in SOURCES[name]):
        path = source_dir / source.path
        if not path.is_file():
            problems.append(f"{path}: missing (use --download to fetch it)")
        elif (actual := sha256_of(path)) != source.sha256:
            problems.append(f"{path}: sha256 {actual} differs from the recorded {source.sha256}")
    if problems:
        raise SpectraError("refusing to build: " + "; ".join(problems))


def download(source_dir: pathlib.Path, names: tuple[str, ...], timeout: float = 60.0) -> None:
    """Fetches the missing source files of the named data sets, refusing any wrong sha256."""
    for source in (s for name in names for s in SOURCES[name]):
        path = source_dir / source.path
        if not path.is_file():
            fetch(source.url, path, sha256=source.sha256, timeout=timeout)


def build_corn(source_dir: pathlib.Path) -> bundled.Dataset:
    """The corn data set from gopca's CSV files (rows of every file are the same 80 samples)."""
    folder = source_dir / "corn"
    properties = read_label_csv(
        folder / "propvals.csv", label_columns=tuple(CORN_PROPERTIES), label_units=["%"] * 4
    )
    properties = dataclasses.replace(properties, names=tuple(CORN_PROPERTIES.values()))
    ids = [f"corn-{i:02d}" for i in range(80)]
    spectra, standards = [], []
    for instrument in CORN_INSTRUMENTS:
        part = _read_corn(folder / f"{instrument}spec.csv", instrument)
        if part.n != len(ids):
            raise SpectraError(f"{part.origin}: {part.n} spectra, expected {len(ids)}")
        spectra.append(dataclasses.replace(properties.attach(part), sample_id=np.array(ids)))
        glass = _read_corn(folder / f"{instrument}nbs.csv", instrument)
        glass_ids = np.array([f"nbs-{instrument}-{i}" for i in range(glass.n)])
        standards.append(dataclasses.replace(glass, sample_id=glass_ids))
    return bundled.Dataset(
        name="corn",
        spectra=concatenate(spectra, origin=str(folder)),
        instruments=CORN_INSTRUMENTS,
        properties=properties.names,
        standards=concatenate(standards, origin=str(folder)),
        original_split=None,
        citation=CORN_CITATION,
    )


def _read_corn(path: pathlib.Path, instrument: str):
    return read_wide_csv(
        path, axis_unit="nm", modality="NIR", instrument=instrument, value_unit="log(1/R)"
    )


def build_tablets(source_dir: pathlib.Path) -> bundled.Dataset:
    """The IDRC-2002 tablets from ChemometricsData.jl's CSV files (row i = tablet i on both)."""
    spectra, subsets = [], []
    for k, instrument in enumerate(TABLET_INSTRUMENTS):
        path = source_dir / "idrc2002_tablets" / f"Pharma_Instrument{k + 1}.csv"
        part = read_wide_csv(
            path,
            axis_unit="nm",
            modality="NIR",
            instrument=instrument,
            label_columns=tuple(TABLET_PROPERTIES),
            label_units=TABLET_PROPERTIES,
            meta_columns=("SampleType",),
            value_unit="log(1/T)",
        )
        ids = np.array([f"tablet-{i:03d}" for i in range(part.n)])
        spectra.append(dataclasses.replace(part, sample_id=ids))
        subsets.append(read_label_csv(path, label_columns=(), meta_columns=("SampleType",)))
    first, second = spectra
    # The reference values belong to the tablet: both files must carry the same ones.
    if not np.array_equal(first.labels, second.labels) or not np.array_equal(
        subsets[0].meta["SampleType"], subsets[1].meta["SampleType"]
    ):
        raise SpectraError(f"{second.origin}: labels or SampleType differ from {first.origin}")
    unknown = set(subsets[0].meta["SampleType"].tolist()) - set(TABLET_SUBSETS)
    if unknown:
        raise SpectraError(f"{first.origin}: unknown SampleType(s) {sorted(unknown)}")
    split = {
        sample: TABLET_SUBSETS[kind]
        for sample, kind in zip(
            first.sample_id.tolist(), subsets[0].meta["SampleType"].tolist(), strict=True
        )
    }
    return bundled.Dataset(
        name="tablets",
        spectra=concatenate(spectra, origin=str(source_dir / "idrc2002_tablets")),
        instruments=TABLET_INSTRUMENTS,
        properties=tuple(TABLET_PROPERTIES),
        standards=None,
        original_split=split,
        citation=TABLETS_CITATION,
    )


BUILDERS = {"corn": build_corn, "tablets": build_tablets}


def build(
    source_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    names: tuple[str, ...] = tuple(BUILDERS),
) -> list[pathlib.Path]:
    """Verifies, converts and then writes `<name>.npz` for each named data set; returns the paths."""
    source_dir, out_dir = pathlib.Path(source_dir), pathlib.Path(out_dir)
    verify(source_dir, names)
    # Everything is converted before the first file is written.
    arrays = {
        name: bundled.to_arrays(
            BUILDERS[name](source_dir), {s.path: s.sha256 for s in SOURCES[name]}
        )
        for name in names
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in arrays.items():
        paths.append(out_dir / f"{name}.npz")
        write_atomic(paths[-1], lambda file, content=content: np.savez_compressed(file, **content))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, help="folder with corn/ and idrc2002_tablets/")
    parser.add_argument("--out", required=True, help="folder to write corn.npz and tablets.npz to")
    parser.add_argument("--download", action="store_true", help="fetch missing source files")
    parser.add_argument("--datasets", nargs="+", choices=sorted(BUILDERS), default=list(BUILDERS))
    args = parser.parse_args(argv)
    names = tuple(args.datasets)
    try:
        if args.download:
            download(pathlib.Path(args.source), names)
        for path in build(args.source, args.out, names):
            print(f"wrote {path} ({path.stat().st_size} bytes)")
    except SpectraError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
