"""TFDS builders of the bundled data sets, written as array_record files (no TensorFlow needed).

    from data_prep import tfds_builders
    tfds_builders.CaltransferCorn(data_dir=DIR).download_and_prepare()
    source = tfds.data_source("caltransfer_corn", data_dir=DIR)  # random access, numpy records

One example per spectrum: `spectrum` (float64 [p], exactly the bundled values), `instrument`,
`sample_id` (equal ids on two instruments are the same sample) and `labels` (one float64 per
property; NaN for transfer standards). The axis is fixed per data set and kept in the metadata
(`wavelength_nm`, `wavenumber_cm1`), with the label units, modality and value unit.
Splits: corn `train` (80 samples × 3 instruments) and `standards` (the NBS glass standards);
tablets `calibrate`, `validate` and `test` (the original IDRC-2002 split, both instruments).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow_datasets as tfds

from caltransfer_jax.data import bundled
from caltransfer_jax.data.spectra import Spectra


def _float64(shape: tuple[int, ...]) -> tfds.features.Tensor:
    # Stored as raw bytes: the default encoding keeps floats as float32.
    return tfds.features.Tensor(
        shape=shape, dtype=np.float64, encoding=tfds.features.Encoding.BYTES
    )


class _BundledBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Builds one bundled data set; subclasses name the loader."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Bundled data format version 1."}

    _load: Callable[[], bundled.Dataset]  # set by each subclass

    def __init__(self, **kwargs):
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        dataset = self._load()
        spectra = dataset.spectra
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"The bundled {dataset.name} calibration-transfer data set.",
            features=tfds.features.FeaturesDict(
                {
                    "spectrum": _float64(spectra.wavenumber.shape),
                    "instrument": tfds.features.Text(),
                    "sample_id": tfds.features.Text(),
                    "labels": tfds.features.FeaturesDict(
                        {name: _float64(()) for name in spectra.label_names}
                    ),
                }
            ),
            metadata=tfds.core.MetadataDict(
                wavelength_nm=np.round(spectra.axis, 6).tolist(),  # exact: wavenumber_cm1
                wavenumber_cm1=spectra.wavenumber.tolist(),
                modality=spectra.modality,
                value_unit=spectra.value_unit,
                instruments=list(dataset.instruments),
                label_units=dict(zip(spectra.label_names, spectra.label_units, strict=True)),
            ),
            citation=dataset.citation,
        )

    def _generate_examples(self, spectra: Spectra, names: tuple[str, ...]):
        labels = (
            spectra.labels if spectra.labels.shape[1] else np.full((spectra.n, len(names)), np.nan)
        )
        for i in range(spectra.n):
            instrument, sample = str(spectra.instrument[i]), str(spectra.sample_id[i])
            yield (
                f"{instrument}/{sample}",
                {
                    "spectrum": spectra.values[i],
                    "instrument": instrument,
                    "sample_id": sample,
                    "labels": dict(zip(names, labels[i].tolist(), strict=True)),
                },
            )


class CaltransferCorn(_BundledBuilder):
    """Corn (80 samples × m5/mp5/mp6, 1100–2498 nm) with its NBS glass standards."""

    _load = staticmethod(bundled.load_corn)

    def _split_generators(self, dl_manager):
        del dl_manager  # the data are in the package
        dataset = self._load()
        return {
            "train": self._generate_examples(dataset.spectra, dataset.properties),
            "standards": self._generate_examples(dataset.standards, dataset.properties),
        }


class CaltransferTablets(_BundledBuilder):
    """IDRC-2002 tablets (655 tablets × spec1/spec2, 600–1898 nm) in the original split."""

    _load = staticmethod(bundled.load_tablets)

    def _split_generators(self, dl_manager):
        del dl_manager  # the data are in the package
        dataset = self._load()
        subset = np.array([dataset.original_split[s] for s in dataset.spectra.sample_id.tolist()])
        return {
            name: self._generate_examples(
                dataset.spectra.select(subset == name), dataset.properties
            )
            for name in ("calibrate", "validate", "test")
        }
