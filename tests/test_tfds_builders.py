"""The tfds builders write array_record files that read back, through tfds.data_source, to exactly
the bundled loaders' values (no TensorFlow involved)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from caltransfer_jax.data import bundled
from data_prep import tfds_builders


@pytest.mark.parametrize(
    "builder, load, splits",
    [
        (tfds_builders.CaltransferCorn, bundled.load_corn, {"train": 240, "standards": 11}),
        (
            tfds_builders.CaltransferTablets,
            bundled.load_tablets,
            {"calibrate": 310, "validate": 80, "test": 920},
        ),
    ],
)
def test_build_and_read_back(tmp_path, builder, load, splits):
    tfds.disable_progress_bar()
    built = builder(data_dir=tmp_path)
    built.download_and_prepare()
    assert built.info.file_format.value == "array_record"
    dataset = load()
    source = tfds.data_source(built.name, data_dir=tmp_path)
    assert {name: len(split) for name, split in source.items()} == splits
    metadata = built.info.metadata
    np.testing.assert_array_equal(metadata["wavenumber_cm1"], dataset.spectra.wavenumber)
    assert metadata["modality"] == "NIR" and metadata["instruments"] == list(dataset.instruments)
    assert list(metadata["label_units"].values()) == list(dataset.spectra.label_units)

    reference = {}
    for part, labelled in ((dataset.spectra, True), (dataset.standards, False)):
        for i in range(0 if part is None else part.n):
            key = (str(part.instrument[i]), str(part.sample_id[i]))
            reference[key] = (part.values[i], part.labels[i] if labelled else None)
    seen = set()
    for name, split in source.items():
        for index in range(len(split)):
            record = split[index]
            key = (record["instrument"].decode(), record["sample_id"].decode())
            values, labels = reference[key]
            np.testing.assert_array_equal(record["spectrum"], values)
            got = np.array([record["labels"][p] for p in dataset.properties])
            if labels is None:
                assert name == "standards" and np.isnan(got).all()
            else:
                np.testing.assert_array_equal(got, labels)
            if dataset.original_split is not None:
                assert dataset.original_split[key[1]] == name
            seen.add(key)
    assert seen == set(reference)
