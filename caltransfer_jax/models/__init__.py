"""The spectral foundation model (Flax NNX) and its pure kernels.

config = configs/model.py:get_config("default")
model = build_model(config, seed=0)
out = model(values, wavenumber, valid, modality, hidden=None)
"""

from caltransfer_jax.models.model import HEADS, SpectralModel, build_model
from caltransfer_jax.models.scan import IMPLS, resolve_impl, selective_scan

__all__ = ["HEADS", "IMPLS", "SpectralModel", "build_model", "resolve_impl", "selective_scan"]
