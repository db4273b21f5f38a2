"""The paired corpus of a real data set: records, reading, instrument ids in a mixture, refusals."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from caltransfer_jax.data import bundled, dataset_file
from caltransfer_jax.data.spectra import SpectraError
from caltransfer_jax.models import export
from caltransfer_jax.pretrain import train
from caltransfer_jax.pretrain.input_pipeline import (
    CorpusError,
    TfdsSource,
    instrument_count,
    make_pipeline,
)
from configs import pretrain as pretrain_config
from data_prep import paired_corpus


@pytest.fixture(scope="module")
def corn_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpora")
    manifest = paired_corpus.build("corn", out)
    return pathlib.Path(manifest["build"]["path"]), manifest


def test_every_sample_is_one_record_with_a_view_per_instrument(corn_build):
    path, manifest = corn_build
    assert path.parts[-3:] == ("paired_spectra", "corn", "1.0.0")
    corn = dataset_file.load("corn")
    source = TfdsSource(path)
    assert len(source) == manifest["build"]["records"] == 80
    assert source.num_instruments == 3 and manifest["instruments"] == ["m5", "mp5", "mp6"]
    assert json.loads((path / "manifest.json").read_text()) == manifest
    for index in (0, 41, 79):
        record = source[index]
        np.testing.assert_array_equal(record["instrument"], [0, 1, 2])
        np.testing.assert_array_equal(record["lengths"], [700, 700, 700])
        views = np.split(record["values"], 3)
        axes = np.split(record["wavenumber"], 3)
        for k, name in enumerate(("m5", "mp5", "mp6")):
            own = corn.own(name)
            row = list(own.sample_id).index(record["name"].decode())
            order = np.argsort(own.wavenumber)
            np.testing.assert_array_equal(views[k], own.values[row, order].astype(np.float32))
            np.testing.assert_array_equal(axes[k], own.wavenumber[order].astype(np.float32))
        assert np.all(np.diff(axes[0]) > 0)
        assert record["component_ids"].tolist() == [-1] * 8


def test_a_mixed_build_gets_its_own_block_of_instrument_ids(corn_build):
    path, _ = corn_build
    config = pretrain_config.get_config("tiny")
    data = config.data
    simulated = int(sum(data.simulator.instruments_per_modality))
    data.tfds_dirs, data.weights = (str(path),), (0.5, 0.5)
    with pytest.raises(CorpusError, match="4.*rebuild the corpus with --max_components=4"):
        make_pipeline(data, 0, 1)  # the build's 8 concentration slots would not stack
    data.simulator.max_components = paired_corpus.MAX_COMPONENTS
    assert instrument_count(data) == simulated + 3
    batch = make_pipeline(data, 0, 1).batch(0)
    real, sim = batch["source"] == 1, batch["source"] == 0
    assert real.any() and sim.any()
    assert np.isin(batch["instrument"][real], simulated + np.arange(3)).all()
    assert (batch["instrument"][sim] < simulated).all()
    assert batch["paired"][real].all()
    # The model must have a class for every id: a clear error before anything is written.
    with pytest.raises(ValueError, match=f"raise it to {simulated + 3}"):
        train.validate(config, 1, 1)
    config.model.vib.num_instruments = simulated + 3
    train.validate(config, 1, 1)


def test_an_export_pretrained_on_the_pairs_is_refused_for_that_data_set(corn_build):
    path, _ = corn_build
    config = pretrain_config.get_config("tiny")
    config.data.tfds_dirs, config.data.weights = (str(path),), (1.0, 1.0)
    assert export.corpora(config) == ["simulated", str(path)]
    directory = path.parent.parent.parent / "export"
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(config.to_json())
    with pytest.raises(ValueError, match="leave-one-dataset-out"):
        export.check_unseen(str(directory), "corn")
    export.check_unseen(str(directory), "tablets")


def test_refusals_leave_nothing_behind(corn_build, tmp_path):
    path, _ = corn_build
    before = sorted(p.stat().st_mtime_ns for p in path.rglob("*"))
    with pytest.raises(SpectraError, match="already built; pass --overwrite"):
        paired_corpus.build("corn", path.parents[2])
    assert sorted(p.stat().st_mtime_ns for p in path.rglob("*")) == before
    # A data set whose instruments measured different samples has nothing to pair.
    corn = dataset_file.load("corn")
    spectra = corn.spectra
    renamed = np.array(
        [f"{i}:{s}" for i, s in zip(spectra.instrument, spectra.sample_id, strict=True)]
    )
    unpaired = dataclasses.replace(corn, spectra=dataclasses.replace(spectra, sample_id=renamed))
    saved = tmp_path / "unpaired.npz"
    bundled.save_dataset(unpaired, saved)
    with pytest.raises(SpectraError, match="unpaired.npz: no sample was measured on two"):
        paired_corpus.build(str(saved), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="error: .*not a data set"):
        paired_corpus.main(["--dataset=nowhere.csv", f"--out={tmp_path / 'out'}"])
