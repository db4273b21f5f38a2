r"""A pretraining corpus of real paired spectra: the samples of a transfer data set, one record
per sample with a view from every instrument that measured it.

    python -m data_prep.paired_corpus --dataset=tablets --out=CORPORA
    python -m data_prep.paired_corpus --dataset=my_instruments.toml --out=CORPORA

The build lands in `CORPORA/paired_spectra/<name>/1.0.0/` (name: the data set's) with a
`manifest.json`; mix it into pretraining with `--config.data.tfds_dirs` and `--config.data.weights`
(`configs/simulate.py`). Records use the flat format of the simulated corpus
(`caltransfer_jax.simulate.corpus.Simulator.generate`), as the public corpora do
(`data_prep.public_corpora.builder`): `lengths`, `instrument` (ids local to the build, in the
data set's instrument order), `values` and `wavenumber` (each view on its instrument's own
measured axis, ascending cm⁻¹, values as measured), empty concentration slots. Samples measured on
one instrument only, transfer standards and labels are left out: pretraining is label-free, and
what the pairs teach is how the instruments differ on the same sample.

Leave-one-dataset-out: the build's path names the data set, so an export pretrained on it is
refused for that data set's benchmark rows (`caltransfer_jax.models.export.check_unseen`).
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import re
import shutil
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from caltransfer_jax.data import dataset_file
from caltransfer_jax.data.dataset import Dataset
from caltransfer_jax.data.spectra import MODALITIES, SpectraError
from data_prep.public_corpora.common import install_build, write_json
from data_prep.simulated_builder import MAX_COMPONENTS, measured_features, unknown_chemistry

SPLIT = "train"


class PairedSpectra(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The paired samples of one data set (the builder config is named after it).

    Args:
      dataset: the data set the samples come from (name, citation, instruments, modality).
      samples: its `paired_samples`, written in order.
      max_components: width C of the (unused) concentration slots.
      **kwargs: passed to tfds (data_dir, …); the file format defaults to array_record.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}

    def __init__(
        self,
        *,
        dataset: Dataset,
        samples: list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]],
        max_components: int = MAX_COMPONENTS,
        **kwargs,
    ):
        self._dataset, self._samples = dataset, samples
        self._max_components = max_components
        kwargs.setdefault("file_format", "array_record")
        kwargs.setdefault("config", tfds.core.BuilderConfig(name=build_name(dataset.name)))
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        c, dataset = self._max_components, self._dataset
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Paired spectra of the {dataset.name} data set, one record per sample.",
            features=tfds.features.FeaturesDict(measured_features(c)),
            citation=dataset.citation,
            disable_shuffling=True,  # record i is the i-th paired sample
            metadata=tfds.core.MetadataDict(
                dataset=dataset.name,
                modalities=list(MODALITIES),
                instruments=list(dataset.instruments),
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the data set is read by the caller
        return {SPLIT: self._generate_examples()}

    def _generate_examples(self):
        c, dataset = self._max_components, self._dataset
        modality = np.int32(MODALITIES.index(dataset.spectra.modality))
        for index, (sample, views) in enumerate(self._samples):
            ids = [dataset.instruments.index(name) for name, _, _ in views]
            yield (
                index,
                {
                    "sample_id": np.int64(index),
                    "modality": modality,
                    "instrument": np.array(ids, np.int32),
                    "lengths": np.array([v.size for _, v, _ in views], np.int32),
                    "values": np.concatenate([v for _, v, _ in views]).astype(np.float32),
                    "wavenumber": np.concatenate([w for _, _, w in views]).astype(np.float32),
                    **unknown_chemistry(c),
                    "name": sample,
                    "value_unit": dataset.spectra.value_unit,
                },
            )


def build_name(name: str) -> str:
    """The data set's name as a build (folder) name."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"d_{cleaned}"
    return cleaned


def paired_samples(dataset: Dataset) -> list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]]:
    """(sample id, [(instrument, values, wavenumber)]) of every sample on ≥ 2 instruments.

    Views are in the data set's instrument order, each on its instrument's own axis in
    ascending wavenumber; samples in order of first appearance.
    """
    rows: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for instrument in dataset.instruments:
        spectra = dataset.own(instrument)
        order = np.argsort(spectra.wavenumber)
        wavenumber = spectra.wavenumber[order]
        for sample, values in zip(spectra.sample_id, spectra.values, strict=True):
            rows.setdefault(str(sample), []).append((instrument, values[order], wavenumber))
    return [(sample, views) for sample, views in rows.items() if len(views) >= 2]


def build(
    spec: str,
    out_dir: str | pathlib.Path,
    *,
    overwrite: bool = False,
    max_components: int = MAX_COMPONENTS,
) -> dict:
    """Writes the paired corpus of one data set; returns its manifest.

    Args:
      spec: a bundled data set name ('corn', 'tablets'), dataset file (.toml) or saved .npz.
      out_dir: tfds data_dir of the build.
      overwrite: replace an existing build of this data set.
      max_components: width of the concentration slots (the simulator's max_components).

    Raises:
      SpectraError: the data set cannot be read, has no sample on two instruments, or the build
        exists. Nothing is written then.
    """
    dataset = dataset_file.load(spec)
    samples = paired_samples(dataset)
    if not samples:
        raise SpectraError(
            f"{spec}: no sample was measured on two instruments (instruments "
            f"{list(dataset.instruments)}); a paired corpus needs the same samples on several"
        )
    out_dir = pathlib.Path(out_dir)
    final = out_dir / PairedSpectra.name / build_name(dataset.name) / str(PairedSpectra.VERSION)
    if final.exists() and not overwrite:
        raise SpectraError(f"{final}: already built; pass --overwrite to rebuild")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Built in a staging folder and moved into place complete: a failed build leaves nothing.
    staging = pathlib.Path(tempfile.mkdtemp(dir=out_dir, prefix=".staging-"))
    try:
        builder = PairedSpectra(
            dataset=dataset, samples=samples, data_dir=str(staging), max_components=max_components
        )
        tfds.disable_progress_bar()
        builder.download_and_prepare(download_dir=str(staging / "downloads"))
        manifest = _manifest(spec, dataset, samples, final, builder.info)
        write_json(pathlib.Path(builder.data_path) / "manifest.json", manifest)
        install_build(builder.data_path, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _manifest(spec, dataset, samples, final, info) -> dict:
    """What was built from what: the data set, its citation, the build and a checksum of it."""
    digest = hashlib.sha256()
    for _, views in samples:
        for _, values, wavenumber in views:
            digest.update(values.astype(np.float32).tobytes())
            digest.update(wavenumber.astype(np.float32).tobytes())
    source = pathlib.Path(spec)
    return {
        "dataset": dataset.name,
        "spec": spec,
        "spec_sha256": (
            hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else None
        ),
        "citation": dataset.citation,
        "instruments": list(dataset.instruments),
        "build": {
            "path": str(final),
            "split": SPLIT,
            "format": "array_record",
            "records": info.splits[SPLIT].num_examples,
            "views": sum(len(views) for _, views in samples),
            "values_sha256": digest.hexdigest(),
        },
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.paired_corpus", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", required=True, help="bundled name, .toml or .npz")
    parser.add_argument("--out", required=True, help="tfds data_dir to write the build to")
    parser.add_argument("--max_components", type=int, default=MAX_COMPONENTS)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing build")
    args = parser.parse_args(argv)
    try:
        manifest = build(
            args.dataset, args.out, overwrite=args.overwrite, max_components=args.max_components
        )
    except (SpectraError, ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    built = manifest["build"]
    print(
        f"wrote {built['records']} paired samples ({built['views']} spectra, instruments "
        f"{manifest['instruments']}) to {built['path']}"
    )
    return manifest


if __name__ == "__main__":
    main()
