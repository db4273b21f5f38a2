r"""Builds one public corpus: optional download, checks, conversion, tfds build and manifest.

    python -m data_prep.public_corpora --source=mpx --raw_dir=RAW/mpx --out=CORPORA --download
    python -m data_prep.public_corpora --source=nist --raw_dir=RAW/nist --out=CORPORA \
        --download --nist_ids=ids.txt
    python -m data_prep.public_corpora --source=chembl --raw_dir=RAW/chembl --out=CORPORA \
        --raman_intensity=cross_section --hwhm=8

The build is written to CORPORA/public_spectra/<source>/1.0.0/ with its manifest.json; read it
with `caltransfer_jax.pretrain.input_pipeline.TfdsSource(path)` or `tfds.data_source("public_spectra/<source>",
data_dir=CORPORA)`.
"""

from __future__ import annotations

import argparse
import pathlib

from caltransfer_jax.data.spectra import SpectraError
from data_prep.public_corpora.builder import MAX_COMPONENTS, SOURCES, build, parse_expected
from data_prep.public_corpora.common import Options
from data_prep.public_corpora.lines import RAMAN_INTENSITIES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.public_corpora", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--source", required=True, choices=sorted(SOURCES))
    parser.add_argument("--raw_dir", required=True, help="folder of the source's raw files")
    parser.add_argument("--out", required=True, help="tfds data_dir to write the build to")
    parser.add_argument("--download", action="store_true", help="fetch missing raw files first")
    parser.add_argument(
        "--expect_sha256",
        action="append",
        default=[],
        metavar="PATH=HEX|@MANIFEST",
        help="sha256 a raw file (path relative to --raw_dir) must have, or every input of an "
        "earlier build's manifest.json; repeatable",
    )
    parser.add_argument("--nist_ids", help="file of NIST WebBook ids to download, one a line")
    parser.add_argument(
        "--archives", nargs="+", default=[], help="RRUFF archives, e.g. raman/LR-Raman.zip"
    )
    defaults = Options()
    parser.add_argument("--step", type=float, help="grid step in cm-1 (see docs/CORPORA.md)")
    parser.add_argument("--hwhm", type=float, default=defaults.hwhm, help="Lorentzian HWHM, cm-1")
    parser.add_argument("--ir_range", type=float, nargs=2, default=defaults.ir_range)
    parser.add_argument("--raman_range", type=float, nargs=2, default=defaults.raman_range)
    parser.add_argument("--raman_min_shift", type=float, default=defaults.raman_min_shift)
    parser.add_argument(
        "--raman_intensity", choices=RAMAN_INTENSITIES, default=defaults.raman_intensity
    )
    parser.add_argument("--laser_nm", type=float, default=defaults.laser_nm)
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--transmittance_floor", type=float, default=defaults.transmittance_floor)
    parser.add_argument("--max_records", type=int, help="stop after this many spectra")
    parser.add_argument("--max_components", type=int, default=MAX_COMPONENTS)
    parser.add_argument("--strict", action="store_true", help="stop at the first bad record")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing build")
    parser.add_argument("--timeout", type=float, default=60.0, help="download timeout, seconds")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    try:
        ids = ()
        if args.nist_ids:
            lines = pathlib.Path(args.nist_ids).read_text().splitlines()
            ids = tuple(line.strip() for line in lines if line.strip() and line[0] != "#")
        options = Options(
            step=args.step,
            hwhm=args.hwhm,
            ir_range=tuple(args.ir_range),
            raman_range=tuple(args.raman_range),
            raman_min_shift=args.raman_min_shift,
            raman_intensity=args.raman_intensity,
            laser_nm=args.laser_nm,
            temperature=args.temperature,
            transmittance_floor=args.transmittance_floor,
            archives=tuple(args.archives),
            ids=ids,
            max_records=args.max_records,
            strict=args.strict,
        )
        manifest = build(
            args.source,
            args.raw_dir,
            args.out,
            options,
            download=args.download,
            expect_sha256=parse_expected(args.expect_sha256),
            overwrite=args.overwrite,
            max_components=args.max_components,
            timeout=args.timeout,
        )
    except (SpectraError, ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    built = manifest["build"]
    print(
        f"wrote {built['records']} spectra ({built['by_modality']}) to {built['path']}; "
        f"{len(manifest['skipped'])} skipped; manifest: {built['path']}/manifest.json"
    )
    return manifest


if __name__ == "__main__":
    main()
