"""The tfds builder of converted public corpora (array_record, no TensorFlow) and the build steps.

A build of source S lands in `<out>/public_spectra/S/1.0.0/` with one split, `train`, and a
`manifest.json` beside the shards. Records use the flat format of the simulated corpus
(`caltransfer_jax.simulate.corpus.Simulator.generate`) with one view each, so
`caltransfer_jax.pretrain.input_pipeline.TfdsSource` reads a build and `InputPipeline` mixes it with the
simulator (single-view records become unpaired examples):

    sample_id () int64        record index in the split
    family () int32           -1 (no simulated family)
    modality () int32         index in ('NIR', 'IR', 'Raman')
    instrument (1,) int32     index into metadata['instruments'] (names)
    lengths (1,) int32        number of points p
    values (p,) float32       ordinates as converted (see `common`)
    wavenumber (p,) float32   ascending cm⁻¹ (Raman shift for Raman): each point's true position
    concentrations (C,) float32, component_ids (C,) int32, path_length () float32
                              0, -1 and 0: unknown (C = max_components, 8 like the simulator's
                              default, so batches of mixed sources stack)
    name                      text: the record's id in its source (file, block, row)
    value_unit                text: what `values` measure

Instrument ids are local to a build (0 is its first instrument); they are not the simulator's
instrument ids.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from caltransfer_jax.data.spectra import MODALITIES, SpectraError
from data_prep.download import fetch
from data_prep.public_corpora import chembl, mpx, nist, rruff, uspto
from data_prep.public_corpora.common import (
    CorpusSpectrum,
    Options,
    Report,
    Skipped,
    install_build,
    write_json,
)
from data_prep.simulated_builder import MAX_COMPONENTS, measured_features, unknown_chemistry

SOURCES = {m.SOURCE.name: m for m in (rruff, nist, chembl, uspto, mpx)}
SPLIT = "train"


class PublicSpectra(tfds.core.GeneratorBasedBuilder):
    """Converted public spectra of one source (the builder config), one record per spectrum.

    Args:
      spectra: the converted spectra to write (consumed once, in order).
      max_components: width C of the (unused) concentration slots.
      **kwargs: passed to tfds (data_dir, …); the file format defaults to array_record.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=name, description=module.SOURCE.title)
        for name, module in SOURCES.items()
    ]

    def __init__(
        self,
        *,
        spectra: Iterable[CorpusSpectrum] = (),
        max_components: int = MAX_COMPONENTS,
        **kwargs,
    ):
        self._spectra = spectra
        self._max_components = max_components
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        source = SOURCES[self.builder_config.name].SOURCE
        c = self._max_components
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{source.title}, converted onto the physical axis ({source.url}).",
            features=tfds.features.FeaturesDict(measured_features(c)),
            homepage=source.url,
            citation=source.citation,
            disable_shuffling=True,  # record i is the i-th converted spectrum
            # Filled while the records are written (instrument ids are assigned on first sight).
            metadata=tfds.core.MetadataDict(
                source=source.name, modalities=list(MODALITIES), instruments=[], by_modality={}
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the inputs are converted by the caller
        return {SPLIT: self._generate_examples()}

    def _generate_examples(self):
        instruments = self.info.metadata["instruments"]
        by_modality = self.info.metadata["by_modality"]
        c = self._max_components
        for index, spectrum in enumerate(self._spectra):
            if spectrum.instrument not in instruments:
                instruments.append(spectrum.instrument)
            by_modality[spectrum.modality] = by_modality.get(spectrum.modality, 0) + 1
            yield (
                index,
                {
                    "sample_id": np.int64(index),
                    "modality": np.int32(MODALITIES.index(spectrum.modality)),
                    "instrument": np.array([instruments.index(spectrum.instrument)], np.int32),
                    "lengths": np.array([spectrum.values.size], np.int32),
                    "values": spectrum.values.astype(np.float32),
                    "wavenumber": spectrum.wavenumber.astype(np.float32),
                    **unknown_chemistry(c),
                    "name": spectrum.name,
                    "value_unit": spectrum.value_unit,
                },
            )


def parse_expected(values: Iterable[str]) -> dict[str, str]:
    """--expect_sha256 values: 'PATH=HEX' (PATH relative to the raw folder) or '@manifest.json'
    (every input recorded by an earlier build)."""
    expected: dict[str, str] = {}
    for value in values:
        if value.startswith("@"):
            try:
                inputs = json.loads(pathlib.Path(value[1:]).read_text())["inputs"]
            except (OSError, ValueError, KeyError) as error:
                raise SpectraError(f"{value[1:]}: not a readable manifest ({error})") from None
            expected.update({path: entry["sha256"] for path, entry in inputs.items()})
            continue
        path, _, digest = value.partition("=")
        if not path or len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            raise SpectraError(f"--expect_sha256 {value!r}: expected PATH=<64 hex digits>")
        expected[path] = digest
    return expected


def build(
    source: str,
    raw_dir: str | pathlib.Path,
    out_dir: str | pathlib.Path,
    options: Options | None = None,
    *,
    download: bool = False,
    expect_sha256: dict[str, str] | None = None,
    overwrite: bool = False,
    max_components: int = MAX_COMPONENTS,
    timeout: float = 60.0,
) -> dict:
    """Downloads (optionally), checks, converts and writes one corpus; returns its manifest.

    Args:
      source: one of SOURCES.
      raw_dir: folder of the source's raw files (created by a download).
      out_dir: tfds data_dir of the build.
      options: conversion settings (default `Options()`).
      download: fetch the source's files that are missing from `raw_dir` first.
      expect_sha256: relative path -> sha256 the raw files must have.
      overwrite: replace an existing build of this source.
      max_components: width of the concentration slots (the simulator's max_components).
      timeout: seconds to wait on each download connection.

    Raises:
      SpectraError: a checksum differs, nothing could be converted, the build exists, or (with
        options.strict) a record is unreadable. Nothing is written then, except files already
        downloaded and verified.
    """
    if source not in SOURCES:
        raise SpectraError(f"unknown source {source!r}; sources are {sorted(SOURCES)}")
    module = SOURCES[source]
    options = options or Options()
    raw_dir, out_dir = pathlib.Path(raw_dir), pathlib.Path(out_dir)
    report = Report(raw_dir)
    expected = dict(expect_sha256 or {})
    urls = _download(module, raw_dir, options, expected, report, timeout) if download else {}
    if not raw_dir.is_dir():
        raise SpectraError(f"{raw_dir}: raw folder does not exist (use --download to fetch)")
    known = getattr(module, "KNOWN_SHA256", {})
    _verify(raw_dir, known, expected, report)

    final = out_dir / PublicSpectra.name / source / str(PublicSpectra.VERSION)
    if final.exists() and not overwrite:
        raise SpectraError(f"{final}: already built; pass --overwrite to rebuild")

    stream = _accepted(module.convert(raw_dir, options, report), report, options)
    first = next(stream, None)
    if first is None:
        reasons = "; ".join(s.reason for s in report.skipped[:3])
        raise SpectraError(
            f"{raw_dir}: no {source} spectrum could be converted"
            + (f" ({len(report.skipped)} skipped, e.g. {reasons})" if reasons else "")
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    # Built in a staging folder and moved into place complete: a failed build leaves nothing.
    staging = pathlib.Path(tempfile.mkdtemp(dir=out_dir, prefix=".staging-"))
    try:
        builder = PublicSpectra(
            config=source,
            data_dir=str(staging),
            spectra=itertools.chain([first], stream),
            max_components=max_components,
        )
        tfds.disable_progress_bar()
        builder.download_and_prepare(download_dir=str(staging / "downloads"))
        for name, entry in report.inputs.items():  # complete once every record is written
            entry["url"] = urls.get(name)
            checked = "known" if name in known else "expected" if name in expected else ""
            entry["checked"] = checked or "recorded"
        manifest = _manifest(module, options, raw_dir, final, builder.info, report)
        manifest["build"]["max_components"] = max_components
        write_json(pathlib.Path(builder.data_path) / "manifest.json", manifest)
        install_build(builder.data_path, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _manifest(module, options, raw_dir, final, info, report) -> dict:
    """What was built from what: source, settings, the build, inputs and skipped records."""
    return {
        "source": module.SOURCE.name,
        "title": module.SOURCE.title,
        "url": module.SOURCE.url,
        "licence": module.SOURCE.licence,
        "citation": module.SOURCE.citation,
        "options": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(options).items()
        },
        "raw_dir": str(raw_dir),
        "build": {
            "path": str(final),
            "split": SPLIT,
            "format": "array_record",
            "records": info.splits[SPLIT].num_examples,
            "by_modality": dict(info.metadata["by_modality"]),
            "instruments": list(info.metadata["instruments"]),
        },
        "inputs": report.inputs,
        "skipped": [dataclasses.asdict(s) for s in report.skipped],
    }


def _download(module, raw_dir, options, expected, report, timeout) -> dict[str, str]:
    """Fetches the source's missing files; returns relative path -> URL of every listed file."""
    urls = {}
    for remote in module.remote_files(options):
        path = raw_dir / remote.path
        urls[remote.path] = remote.url
        if path.is_file():
            continue  # checked with the other local files
        sha256 = remote.sha256 or expected.get(remote.path)
        digests = fetch(remote.url, path, sha256=sha256, magic=remote.magic, timeout=timeout)
        report.remember(path, digests)
    return urls


def _verify(raw_dir, known, expected, report) -> None:
    """Every raw file with a known or expected sha256 must have it (expected ones must exist)."""
    problems = []
    for checks, what in ((known, "known"), (expected, "expected")):
        for relative, sha256 in checks.items():
            path = raw_dir / relative
            if not path.is_file():
                if what == "expected":
                    problems.append(f"{path}: missing (its sha256 is expected)")
                continue
            actual = report.digests(path).sha256
            if actual != sha256:
                problems.append(f"{path}: sha256 {actual} differs from the {what} {sha256}")
    if problems:
        raise SpectraError("refusing to build: " + "; ".join(problems))


def _accepted(items: Iterable, report: Report, options: Options) -> Iterator[CorpusSpectrum]:
    """The converted spectra; skipped records go to the report (or stop a strict build)."""
    count = 0
    for item in items:
        if isinstance(item, Skipped):
            if options.strict:
                raise SpectraError(item.reason)
            report.skip(item)
            continue
        yield item
        count += 1
        if options.max_records is not None and count >= options.max_records:
            return
