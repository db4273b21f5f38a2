r"""Pretraining configurations of the spectral foundation model.

    python -m caltransfer_jax.main --config=configs/pretrain.py --workdir=DIR          # default
    python -m caltransfer_jax.main --config=configs/pretrain.py:quick --workdir=DIR    # 2-core CPU
    python -m caltransfer_jax.main --config=configs/pretrain.py:tiny --workdir=DIR     # tests

Variants:
- `default`: seed scale (6.4 M-parameter model, 2048 points, global batch 64, 50 000 steps) on
  the full simulated corpus (512 components, 1024 families, 16 instruments over NIR, IR and
  Raman). Sized for accelerators.
- `quick`: a small model (d_model 64) on a small NIR corpus (64 components, 32 families, 8
  instruments), 256 points, batch 32, 2000 steps; about 5 minutes on a 2-core CPU
  (docs/PRETRAINING.md holds a measured run and its held-out metrics).
- `tiny`: the tiny model on 64 points, batch 8, a few steps: for tests (seconds per step).

Override any field with `--config.field=value`, e.g. `--config.total_steps=2000`. Every field is
read by `caltransfer_jax.pretrain.train` (and the modules it calls).
"""

from __future__ import annotations

import ml_collections

from configs import model as model_config
from configs import simulate as data_config

_VARIANTS = ("default", "quick", "tiny")


def _quick_model() -> ml_collections.ConfigDict:
    """The tiny architecture widened to a small useful model (~0.2 M parameters)."""
    model = model_config.get_config("tiny")
    model.d_model = 64
    model.embedding.patch_size = 16
    model.embedding.wavelet = "db4"
    model.embedding.wavelet_levels = 3
    model.embedding.pe_frequencies = 16
    model.mamba.num_layers = 2
    model.mamba.d_state = 8
    model.mamba.dt_rank = 8
    model.moe.d_expert = 128
    model.transformer.num_layers = 1
    model.transformer.d_ff = 128
    model.vib.z_chem = 32
    model.vib.z_inst = 16
    model.vib.classifier_hidden = 32
    model.heads.reconstruction_hidden = 128
    model.fno.width = 16
    model.fno.modes = 8
    return model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the pretraining ConfigDict of variant `arg` (default "default")."""
    variant = (arg or "default").strip()
    if variant not in _VARIANTS:
        raise ValueError(f"unknown pretraining variant {arg!r}; expected one of {_VARIANTS}")
    quick, tiny = variant == "quick", variant == "tiny"

    config = ml_collections.ConfigDict()
    config.seed = 0  # parameters, pipeline order, masks, noise, dropout
    config.total_steps = 4 if tiny else (2_000 if quick else 50_000)
    config.log_every = 1 if tiny else (50 if quick else 100)
    config.eval_every = 2 if tiny else (250 if quick else 2_500)  # 0: no evaluation

    if quick:
        config.model = _quick_model()
    else:
        config.model = model_config.get_config("tiny" if tiny else "default")

    # ------------------------------------------------------------------------------------------
    # Data: configs/simulate.py (the pipeline reads it) plus the master grid and held-out ids
    # (caltransfer_jax.pretrain.data).
    config.data = data_config.get_config("default")
    sim = config.data.simulator
    if tiny:
        sim.num_components, sim.num_families, sim.max_components = 16, 8, 4
        sim.instruments_per_modality, sim.modality_weights = (2, 2, 0), (0.5, 0.5, 0.0)
        config.data.num_points, config.data.global_batch, config.data.prefetch = 64, 8, 0
    elif quick:
        sim.num_components, sim.num_families = 64, 32
        sim.instruments_per_modality, sim.modality_weights = (8, 0, 0), (1.0, 0.0, 0.0)
        config.data.num_points, config.data.global_batch = 256, 32
    else:
        config.data.global_batch = 64
    # Master (canonical) instrument grid per modality: (native unit, start, stop).
    config.data.master_grid = ml_collections.ConfigDict(
        {
            "NIR": ("nm", 400.0, 2500.0),
            "IR": ("cm-1", 400.0, 4000.0),
            "Raman": ("cm-1", 100.0, 3500.0),
        }
    )
    config.data.eval_offset = 2**30  # held-out sample ids start here (training never gets there)
    # One classifier output per simulated instrument.
    config.model.vib.num_instruments = sum(sim.instruments_per_modality)
    # The adversary learns at weight 1 while the encoder feels 0.1 of its reversed gradient: the
    # game needs an adversary close to its best response.
    config.model.vib.grl_scale = 0.1

    # ------------------------------------------------------------------------------------------
    # Objectives (caltransfer_jax.objectives).
    obj = config.objectives = ml_collections.ConfigDict()
    obj.weights = ml_collections.ConfigDict(
        {
            "msrp": 1.0,
            "denoise": 0.5,
            "smoothness": 0.05,
            "peak_shape": 0.05,
            "beer_lambert": 0.1,
            "byol": 0.3,
            "sinkhorn": 0.1,
            "kl_chem": 1e-3,
            "kl_inst": 1e-3,
            "instrument": 0.1,
            "adversary": 1.0,
            "moe_balance": 0.01,
            "transfer": 0.5,
        }
    )
    obj.mask = ml_collections.ConfigDict()
    obj.mask.ratio = 0.3  # fraction of each spectrum's grid hidden
    obj.mask.block = 8 if tiny else (16 if quick else 32)  # points per hidden block
    obj.denoise = ml_collections.ConfigDict()
    obj.denoise.max_noise_std = 0.2  # × the spectrum's std
    obj.physics = ml_collections.ConfigDict()
    obj.physics.savgol_window = 5 if tiny else 7
    obj.physics.savgol_order = 3
    obj.beer_lambert = ml_collections.ConfigDict()
    obj.beer_lambert.alpha_min = 0.2  # mixing fractions α ~ U(alpha_min, 1 − alpha_min)
    obj.byol = ml_collections.ConfigDict()
    obj.byol.hidden = 32 if tiny else (128 if quick else 512)
    obj.byol.projection = 16 if tiny else (32 if quick else 128)
    obj.byol.ema_base = 0.99 if quick or tiny else 0.996
    obj.sinkhorn = ml_collections.ConfigDict()
    obj.sinkhorn.epsilon = 0.05  # relative to the mean cross cost
    obj.sinkhorn.min_group_size = 2
    obj.sinkhorn.max_iterations = 200
    obj.sinkhorn.threshold = 1e-3

    # ------------------------------------------------------------------------------------------
    # Optimiser: AdamW (no decay on biases, norms and other vectors), warm-up + cosine.
    opt = config.optimizer = ml_collections.ConfigDict()
    opt.lr = 3e-4 if not quick else 1e-3
    opt.warmup_steps = 1 if tiny else (100 if quick else 1_000)
    opt.final_lr_fraction = 0.01
    opt.weight_decay = 0.01
    opt.b1 = 0.9
    opt.b2 = 0.999
    opt.clip_norm = 5.0

    # ------------------------------------------------------------------------------------------
    # Devices (caltransfer_jax.pretrain.sharding; strings so that --config.x= can set them): mesh axes
    # "name:size,…" (one size may be -1: the remaining devices); the batch axis; parameter
    # rules "regex=tactic;…" on "/"-joined train-state paths, tactic "fsdp" or one mesh axis
    # (or "-") per dimension, e.g. "moe/w[12]$=fsdp;transfer_head/spectral=-,-,data". First
    # match wins; unmatched parameters are replicated (data parallel).
    config.mesh = "data:-1"
    config.batch_axis = "data"
    config.sharding_rules = ""

    # ------------------------------------------------------------------------------------------
    # Checkpoints (orbax), evaluation and export.
    ckpt = config.checkpoint = ml_collections.ConfigDict()
    ckpt.every_steps = 2 if tiny else (250 if quick else 1_000)
    ckpt.keep = 2 if tiny else 3  # latest checkpoints kept (plus the best by eval MSRP)
    ckpt.async_save = True

    ev = config.eval = ml_collections.ConfigDict()
    ev.global_batch = 16 if tiny else (64 if quick else 128)
    ev.num_batches = 2 if tiny else (8 if quick else 16)
    ev.probe_ridge = 1.0  # ridge penalty of the linear probes (on standardised z_chem)
    ev.probe_min_samples = 4 if tiny else 16  # components present in fewer held-out samples skip
    return config
