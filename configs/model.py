r"""Model configuration of the spectral foundation model.

    python -m caltransfer_jax.speed --config=configs/model.py:default --out=bench.json

`get_config(arg)` takes "<size>[,kan]": size `default` (seed scale, 6.29 M parameters) or `tiny`
(tests: a forward+backward compiles and runs in a few seconds on CPU); `kan` makes the MoE experts
KAN layers with a cubic B-spline basis (heavy: ~9.4 M expert parameters at default size). Every
field is read by `caltransfer_jax.models.SpectralModel` (a test holds this); objectives, data and
optimiser settings live in their own configs.
"""

from __future__ import annotations

import ml_collections

_SIZES = ("default", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the model ConfigDict for "<size>[,kan]" (default "default")."""
    parts = [p.strip() for p in (arg or "default").split(",") if p.strip()]
    size, flags = parts[0], set(parts[1:])
    if size not in _SIZES or flags - {"kan"}:
        raise ValueError(f"unknown model config {arg!r}; expected one of {_SIZES} plus ',kan'")
    tiny = size == "tiny"

    config = ml_collections.ConfigDict()
    config.d_model = 32 if tiny else 256
    config.dropout = 0.1  # embedding output, residual branches, MoE hidden

    config.embedding = ml_collections.ConfigDict()
    # Non-overlapping patches: 2048 points → 128 patch tokens (+ [CLS], [DOMAIN]).
    config.embedding.patch_size = 8 if tiny else 16
    config.embedding.wavelet = "db2" if tiny else "db4"  # any orthogonal PyWavelets name
    config.embedding.wavelet_levels = 2 if tiny else 4  # patch_size % 2**levels == 0
    config.embedding.num_modalities = 3  # caltransfer_jax.data.spectra.MODALITIES
    config.embedding.pe_frequencies = 8 if tiny else 32  # Fourier features of log wavenumber
    config.embedding.wavenumber_range = (50.0, 15000.0)  # cm⁻¹, the fixed log scale of the code

    config.mamba = ml_collections.ConfigDict()
    config.mamba.num_layers = 1 if tiny else 4
    config.mamba.d_state = 4 if tiny else 16
    config.mamba.d_conv = 4
    config.mamba.expand = 2
    config.mamba.dt_rank = 4 if tiny else 16
    config.mamba.dt_min = 1e-3  # Δ bias init, log-uniform in [dt_min, dt_max]
    config.mamba.dt_max = 0.1
    config.mamba.discretization = "zoh"  # "zoh" (exact) or "euler"
    config.mamba.scan_impl = "auto"  # "auto", "native", "fused", "associative" or "reference"

    config.moe = ml_collections.ConfigDict()
    config.moe.num_experts = 4
    config.moe.top_k = 2
    config.moe.d_expert = 32 if tiny else 512
    if "kan" in flags:
        config.moe.kan = ml_collections.ConfigDict()
        config.moe.kan.grid_size = 5
        config.moe.kan.spline_order = 3

    config.transformer = ml_collections.ConfigDict()
    config.transformer.num_layers = 1 if tiny else 2
    config.transformer.num_heads = 4 if tiny else 8
    config.transformer.d_ff = 64 if tiny else 1024

    config.vib = ml_collections.ConfigDict()
    config.vib.z_chem = 8 if tiny else 128
    config.vib.z_inst = 4 if tiny else 64
    config.vib.num_instruments = 4 if tiny else 16
    config.vib.classifier_hidden = 8 if tiny else 64
    config.vib.grl_scale = 1.0  # gradient reversal factor in front of the z_chem adversary

    config.heads = ml_collections.ConfigDict()
    config.heads.reconstruction_hidden = 32 if tiny else 512

    config.fno = ml_collections.ConfigDict()
    config.fno.width = 8 if tiny else 64
    config.fno.modes = 8 if tiny else 32
    config.fno.num_layers = 2 if tiny else 4
    return config
