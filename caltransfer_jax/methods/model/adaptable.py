"""The exported model with LoRA adapters as pure functions of the adapter weights.

`AdaptableModel` loads an export once, adds the adapters, switches to inference mode (no dropout,
z = posterior mean) and splits the module into (graph, adapters, frozen rest). Every transfer
starts from the same initial adapters (B = 0: the base model) and trains them with jitted steps
that take the adapters as an argument, so one compilation serves every transfer of a process.

Features — what a calibration head reads:
- 'zchem': the chemistry code z_chem (c,);
- 'canonical': the FNO transfer head's output at the valid grid points (the range both
  instruments cover, `ModelGrid`), returned to the spectrum's own units (× its scale + its offset),
  i.e. the spectrum mapped to the canonical (master) instrument — a learned spectral
  standardiser read by PLS.

Losses use features divided by `scale` (the base features' pooled std on the master pool), so
their weights mean the same for both kinds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from caltransfer_jax.methods.model.grid import FEATURE_INDEX
from caltransfer_jax.methods.model.lora import add_lora, count_params
from caltransfer_jax.models.export import load_export
from caltransfer_jax.objectives.alignment import sinkhorn_divergence
from caltransfer_jax.objectives.masking import block_mask
from caltransfer_jax.objectives.reconstruction import masked_mse

FEATURES = ("zchem", "canonical")
Batch = dict[str, jax.Array]


class AdaptableModel:
    """An export plus LoRA adapters, ready for adaptation.

    Args:
        export_dir: params-only export of a pretraining run.
        lora: `rank`, `alpha`, `targets` (regex on layer paths), `seed`.
        features: one of `FEATURES`.
    """

    def __init__(
        self,
        export_dir: str,
        lora: ml_collections.ConfigDict,
        features: str,
    ):
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        model, self.config = load_export(export_dir)
        self.paths = add_lora(model, lora.targets, lora.rank, lora.alpha, lora.seed)
        self.param_counts = count_params(model)
        model.eval()
        self.graphdef, adapters, self.rest = nnx.split(model, nnx.LoRAParam, ...)
        self.initial = nnx.to_pure_dict(adapters)
        self._template = adapters
        self.features = features
        self.lora = lora
        obj = self.config.objectives
        self.mask_ratio, self.mask_block = float(obj.mask.ratio), int(obj.mask.block)
        self.sinkhorn = {
            "epsilon": float(obj.sinkhorn.epsilon),
            "max_iterations": int(obj.sinkhorn.max_iterations),
            "threshold": float(obj.sinkhorn.threshold),
        }
        self._extract = jax.jit(self.feats)

    def merge(self, adapters: dict, rest: nnx.State) -> nnx.Module:
        """The model with the given adapter weights (a pure dict like `initial`)."""
        state = jax.tree.map(lambda x: x, self._template)
        nnx.replace_by_pure_dict(state, adapters)
        return nnx.merge(self.graphdef, state, rest)

    def _forward(self, adapters: dict, rest, batch: Batch, hidden=None, heads=()) -> dict:
        # The frozen weights are an argument, not a closure: jit would bake them in as constants.
        model = self.merge(adapters, rest)
        return model(
            batch["values"],
            batch["wavenumber"],
            batch["valid"],
            batch["modality"],
            hidden,
            heads=heads,
        )

    def feats(self, adapters: dict, rest, batch: Batch) -> jax.Array:
        """(b, f) features of a batch."""
        if self.features == "zchem":
            return self._forward(adapters, rest, batch)["z_chem"]
        out = self._forward(adapters, rest, batch, heads=("transfer",))
        # Back to the spectrum's own units: the model sees standardised spectra, but level and
        # scale carry chemistry (corn moisture: PLS R² 0.9998 on raw spectra, 0.80 after SNV).
        canonical = jnp.take_along_axis(out["transfer"], batch[FEATURE_INDEX], axis=1)
        return canonical * batch["scale"][:, None] + batch["offset"][:, None]

    def features_of(self, adapters: dict, batch: dict[str, np.ndarray], chunk: int = 64):
        """(n, f) float64 features of a whole array batch, in fixed-size chunks (one compile)."""
        n = len(batch["values"])
        out = []
        for start in range(0, n, chunk):
            part = {k: v[start : start + chunk] for k, v in batch.items()}
            size = len(part["values"])
            part = {k: _pad_rows(v, chunk) for k, v in part.items()}
            out.append(np.asarray(self._extract(adapters, self.rest, part))[:size])
        return np.concatenate(out).astype(np.float64)

    # ---------------------------------------------------------------------------------------
    # Loss terms (inside jit; the adapters are the differentiated argument).

    def msrp(self, adapters: dict, rest, batch: Batch, key: jax.Array) -> jax.Array:
        """Masked reconstruction error of a batch under a block mask drawn from `key`."""
        hidden = block_mask(key, batch["valid"], self.mask_ratio, self.mask_block)
        out = self._forward(adapters, rest, batch, hidden, heads=("reconstruction",))
        return masked_mse(out["reconstruction"], batch["values"], hidden)

    def divergence(self, x: jax.Array, y: jax.Array, scale: float) -> jax.Array:
        """Debiased Sinkhorn divergence between two equal-size feature clouds (uniform weights)."""
        weights = jnp.full((x.shape[0],), 1.0 / x.shape[0])
        return sinkhorn_divergence(x / scale, y / scale, weights, **self.sinkhorn)

    @staticmethod
    def distance(x: jax.Array, y: jax.Array, scale: float, weights=None) -> jax.Array:
        """Weighted mean over rows of the mean squared feature difference / scale²."""
        rows = jnp.mean(jnp.square((x - y) / scale), axis=-1)
        if weights is None:
            return rows.mean()
        return jnp.sum(rows * weights) / jnp.maximum(weights.sum(), 1.0)


def _pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """Pads axis 0 to `size` by repeating the last row (results for the padding are dropped)."""
    if len(x) == size:
        return x
    return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])


def take(batch: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of an array batch."""
    return {k: v[rows] for k, v in batch.items()}
