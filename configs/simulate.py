r"""Pretraining data configuration: the simulated corpus and the input pipeline.

    python -m caltransfer_jax.pretrain.input_pipeline --bench        # throughput of the default simulator source

`get_config(arg)` takes "default" (512 components, 1024 families, 16 instruments: 10 NIR, 3 IR,
3 Raman; global batch 32 of 2048 points) or "tiny" (tests and CI smoke runs: 24 components,
12 families, global batch 8 of 512 points). `caltransfer_jax.pretrain.input_pipeline.make_pipeline(config)`
reads every field. Extra corpora (tfds array_record builds) are mixed in with `tfds_dirs` and
`weights` (the simulator's weight first, then one per directory).
"""

import ml_collections

from caltransfer_jax.simulate.instruments import EFFECTS

_VARIANTS = ("default", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the data ConfigDict for "default" or "tiny"."""
    variant = (arg or "default").strip()
    if variant not in _VARIANTS:
        raise ValueError(f"unknown data config {arg!r}; expected one of {_VARIANTS}")
    tiny = variant == "tiny"

    config = ml_collections.ConfigDict()
    config.simulator = ml_collections.ConfigDict()
    config.simulator.seed = 0
    config.simulator.num_components = 24 if tiny else 512
    config.simulator.num_families = 12 if tiny else 1024
    config.simulator.max_components = 8
    config.simulator.instruments_per_modality = (10, 3, 3)  # NIR, IR, Raman
    config.simulator.modality_weights = (0.6, 0.2, 0.2)
    config.simulator.views_per_sample = 2
    config.simulator.effects = EFFECTS  # instrument effects applied

    config.tfds_dirs = ()  # tfds builds to mix in (version directories)
    config.weights = ()  # simulator first, then one per tfds dir; empty: simulator only

    config.global_batch = 8 if tiny else 32
    config.num_points = 512 if tiny else 2048
    config.seed = 0  # order, view choice, crops and mixture
    config.normalize = "snv"  # "snv" or "none"
    # "native": each view on its instrument's own points (a random window where it has more than
    # num_points); "master_grid": read at the master grid's points inside its range, as the model
    # methods read real spectra (needs master_grid, which the pretraining config adds).
    config.views = "native"
    config.prefetch = 0 if tiny else 2  # batches computed ahead in a background thread
    return config
