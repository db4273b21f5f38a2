r"""tfds builder of the simulated multi-instrument corpus (array_record; no TensorFlow needed).

    python -m data_prep.simulated_builder --data_dir=DIR --num_samples=100000 --seed=0

writes DIR/simulated_spectra/n<N>_seed<S>_v<V>/1.0.0/ with splits `train` (samples 0 … N-1) and
`validation` (the next N/10), one record per sample holding all its views (the flat record of
`caltransfer_jax.simulate.corpus.Simulator.generate`). Record i of a split is sample i of it
(shuffling disabled), so a build equals the on-the-fly simulator with the same settings. Read it
with `caltransfer_jax.pretrain.input_pipeline.TfdsSource(path)` or `tfds.builder_from_directory(path)
.as_data_source("train")`. The simulator settings and instrument table are in metadata.json.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags

from caltransfer_jax.simulate.corpus import Simulator, SimulatorConfig

_CHUNK = 512  # samples generated per vectorised call


@dataclasses.dataclass
class SimulatedSpectraConfig(tfds.core.BuilderConfig):
    """Size and simulator settings of a build (the name encodes them)."""

    num_samples: int = 10_000
    seed: int = 0
    views_per_sample: int = 2


def make_config(num_samples: int, seed: int = 0, views_per_sample: int = 2):
    """A builder config named after its settings."""
    return SimulatedSpectraConfig(
        name=f"n{num_samples}_seed{seed}_v{views_per_sample}",
        num_samples=num_samples,
        seed=seed,
        views_per_sample=views_per_sample,
    )


# Concentration slots of a measured-spectrum build: the simulator's default, so batches of the
# simulator and the build stack.
MAX_COMPONENTS = SimulatorConfig.max_components


def flat_features(max_components: int) -> dict[str, tfds.features.FeatureConnector]:
    """The tfds features of the flat record (`Simulator.generate`), which every corpus build
    shares so that `InputPipeline` mixes them: C = `max_components` concentration slots."""
    c = max_components
    return {
        "sample_id": tfds.features.Scalar(dtype=np.int64),
        "family": tfds.features.Scalar(dtype=np.int32),
        "modality": tfds.features.Scalar(dtype=np.int32),
        "instrument": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "lengths": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "values": tfds.features.Tensor(shape=(None,), dtype=np.float32),
        "wavenumber": tfds.features.Tensor(shape=(None,), dtype=np.float32),
        "concentrations": tfds.features.Tensor(shape=(c,), dtype=np.float32),
        "component_ids": tfds.features.Tensor(shape=(c,), dtype=np.int32),
        "path_length": tfds.features.Scalar(dtype=np.float32),
    }


def measured_features(max_components: int) -> dict[str, tfds.features.FeatureConnector]:
    """The flat record's features for measured spectra: the record's id in its source (`name`)
    and what its values measure (`value_unit`) besides."""
    return {
        **flat_features(max_components),
        "name": tfds.features.Text(),
        "value_unit": tfds.features.Text(),
    }


def unknown_chemistry(max_components: int) -> dict[str, np.ndarray]:
    """The flat record's simulated-only fields for a measured spectrum: no family, empty
    concentration slots, no path length."""
    return {
        "family": np.int32(-1),
        "concentrations": np.zeros(max_components, np.float32),
        "component_ids": np.full(max_components, -1, np.int32),
        "path_length": np.float32(0.0),
    }


class SimulatedSpectra(tfds.core.GeneratorBasedBuilder):
    """Simulated NIR/IR/Raman spectra of mixtures measured on several instruments."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    BUILDER_CONFIGS = [make_config(10_000)]

    def _simulator_config(self) -> SimulatorConfig:
        cfg = self.builder_config
        return SimulatorConfig(seed=cfg.seed, views_per_sample=cfg.views_per_sample)

    def _info(self) -> tfds.core.DatasetInfo:
        sim_config = self._simulator_config()
        simulator = Simulator(sim_config)
        c = sim_config.max_components
        metadata = tfds.core.MetadataDict(
            simulator=dataclasses.asdict(sim_config),
            instruments=[
                {
                    "id": i.instrument_id,
                    "name": i.name,
                    "modality": i.modality,
                    "template": i.template,
                    "unit": i.unit,
                    "points": int(i.axis.size),
                }
                for i in simulator.instruments
            ],
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(flat_features(c)),
            disable_shuffling=True,  # record i = sample i
            metadata=metadata,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        n = self.builder_config.num_samples
        return {
            "train": self._generate_examples(0, n),
            "validation": self._generate_examples(n, n + max(n // 10, 1)),
        }

    def _generate_examples(self, start: int, stop: int):
        simulator = Simulator(self._simulator_config())
        for lo in range(start, stop, _CHUNK):
            for record in simulator.generate(range(lo, min(lo + _CHUNK, stop))):
                yield int(record["sample_id"]), record


def build(data_dir: str, num_samples: int, seed: int = 0, views_per_sample: int = 2) -> str:
    """Builds (or reuses) a corpus; returns the version directory to read it from."""
    config = make_config(num_samples, seed, views_per_sample)
    # tfds refuses a new config object that shares the name of a predefined one.
    config = {c.name: c for c in SimulatedSpectra.BUILDER_CONFIGS}.get(config.name, config)
    builder = SimulatedSpectra(
        config=config,
        data_dir=data_dir,
        file_format="array_record",
    )
    builder.download_and_prepare()
    return str(builder.data_path)


def main(argv: list[str]) -> None:
    del argv
    args = flags.FLAGS
    print(build(args.data_dir, args.num_samples, args.seed, args.views_per_sample))


if __name__ == "__main__":
    flags.DEFINE_string("data_dir", None, "Where to write the build.", required=True)
    flags.DEFINE_integer("num_samples", 10_000, "Training samples.")
    flags.DEFINE_integer("seed", 0, "Simulator seed.")
    flags.DEFINE_integer("views_per_sample", 2, "Instruments per sample.")
    app.run(main)
