"""Pretraining evaluation on held-out simulated samples.

Every `eval_every` steps the model (eval mode: no dropout, z = posterior mean) runs on a fixed
held-out set (`pretrain_data.PretrainData.heldout`: unseen samples of the same corpus, both views and
the master view) and reports, under `eval/`:

- msrp: masked-reconstruction MSE on hidden points (fixed masks; standardised units);
- sinkhorn: Sinkhorn divergence in z_chem between instrument groups over matched populations
  (as the training term, over the whole held-out set), size-weighted over instruments;
- adversary_accuracy: the gradient-reversal adversary's instrument accuracy from z_chem (it
  should fall towards instrument_chance, the per-modality majority rate);
- instrument_probe_zchem: accuracy of a fresh ridge classifier of the instrument on z_chem (a
  stronger test of instrument leakage than the adversary the encoder plays against);
- instrument_accuracy: the z_inst classifier's accuracy (it should stay high);
- probe_r2: ridge probe of the concentrations from z_chem, fitted on the views of one half of the
  samples and scored on the other half; the mean R² over components present in at least
  `probe_min_samples` samples of each half (concentrations are indexed by component id, so a
  component means the same chemistry in every family). Two fixed references put it in scale:
  probe_r2_views, the same probe on the measured spectra themselves (each on its instrument's
  axis), and probe_r2_master, on the instrument-free master spectra (the linear reach of the
  chemistry without any instrument in the way);
- transfer_rmse and transfer_rmse_identity: the transfer head's error against the master
  spectrum on the view's axis, and the error of the untransferred view (the head should beat it).

Shapes: b batch, l points, c z_chem, n held-out samples, k components.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jaxtyping import Array

from caltransfer_jax.objectives import alignment, masking
from caltransfer_jax.objectives.transfer import master_target

_EVAL_STREAM = 7  # fold-in tag of the held-out masks (fixed across evaluations)


def ridge_fit(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression on standardised features; returns (weights, bias) for raw features."""
    mean, std = x.mean(0), x.std(0) + 1e-8
    xs = (x - mean) / std
    y_mean = y.mean(0)
    gram = xs.T @ xs + penalty * np.eye(xs.shape[1])
    w = np.linalg.solve(gram, xs.T @ (y - y_mean)) / std[:, None]
    return w, y_mean - mean @ w


def concentration_matrix(
    component_ids: np.ndarray, concentrations: np.ndarray, num_components: int
) -> np.ndarray:
    """(n, k) concentration of every library component (0 where absent)."""
    out = np.zeros((component_ids.shape[0], num_components), np.float64)
    rows, slots = np.nonzero(component_ids >= 0)
    out[rows, component_ids[rows, slots]] = concentrations[rows, slots]
    return out


def probe_r2(
    z: np.ndarray, conc: np.ndarray, penalty: float, min_samples: int
) -> tuple[float, int]:
    """Mean held-out R² of ridge probes z → concentration per component.

    Args:
        z: (n, 2, c) z_chem of both views of n samples.
        conc: (n, k) concentrations by component.
        penalty: ridge penalty on standardised z.
        min_samples: a component counts if present in this many samples of each half.

    Returns:
        (mean R² over counted components (nan if none), number of components counted).
    """
    n = z.shape[0]
    train, test = np.arange(n) < n // 2, np.arange(n) >= n // 2
    present = conc > 0
    keep = (present[train].sum(0) >= min_samples) & (present[test].sum(0) >= min_samples)
    if not keep.any():
        return float("nan"), 0
    y = conc[:, keep]
    w, bias = ridge_fit(z[train].reshape(-1, z.shape[-1]), np.repeat(y[train], 2, axis=0), penalty)
    pred = z[test].reshape(-1, z.shape[-1]) @ w + bias
    truth = np.repeat(y[test], 2, axis=0)
    sse = ((pred - truth) ** 2).sum(0)
    sst = ((truth - truth.mean(0)) ** 2).sum(0)
    r2 = 1.0 - sse / np.maximum(sst, 1e-12)
    return float(r2.mean()), int(keep.sum())


def instrument_probe_accuracy(z: np.ndarray, instrument: np.ndarray, penalty: float) -> float:
    """Held-out accuracy of a one-hot ridge classifier of the instrument (same halves)."""
    n = z.shape[0]
    train, test = np.arange(n) < n // 2, np.arange(n) >= n // 2
    classes = np.unique(instrument)
    onehot = (instrument[..., None] == classes).astype(np.float64)
    w, bias = ridge_fit(
        z[train].reshape(-1, z.shape[-1]), onehot[train].reshape(-1, len(classes)), penalty
    )
    pred = classes[np.argmax(z[test].reshape(-1, z.shape[-1]) @ w + bias, -1)]
    return float(np.mean(pred == instrument[test].reshape(-1)))


def majority_rate(instrument: np.ndarray, modality: np.ndarray) -> float:
    """Accuracy of always naming the most frequent instrument of the spectrum's modality."""
    hits = 0
    for m in np.unique(modality):
        ids = instrument[modality == m]
        hits += np.bincount(ids).max()
    return float(hits / instrument.size)


class Evaluator:
    """Runs the held-out evaluation for given parameters.

    Args:
        config: the full pretraining config.
        apply: `apply(params)` → the learner in eval mode (the model at `.model`).
        batches: the held-out set as global batches (`pretrain_data` keys), fixed.
        replicated: sharding of the outputs (so every process gets the whole result).
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        apply: Callable[[dict], object],
        batches: Sequence[dict[str, Array]],
        replicated: jax.sharding.Sharding,
    ):
        self.config = config
        self.batches = batches
        obj = config.objectives

        def forward(params, batch, index):
            model = apply(params).model
            key = jax.random.fold_in(jax.random.key(config.seed + _EVAL_STREAM), index)
            b = batch["values"].shape[0]
            view1 = {k: batch[k][:, 0] for k in ("values", "wavenumber", "valid")}
            # Both views, sample-major: (view 1, view 2) of sample 0, then sample 1 …
            flat = {k: batch[k].reshape(2 * b, -1) for k in ("values", "wavenumber", "valid")}
            hidden = masking.block_mask(key, view1["valid"], obj.mask.ratio, obj.mask.block)
            out = model(
                *(jnp.concatenate([view1[k], flat[k]]) for k in ("values", "wavenumber", "valid")),
                jnp.concatenate([batch["modality"][:, 0], batch["modality"].reshape(-1)]),
                jnp.concatenate([hidden, jnp.zeros_like(flat["valid"])]),
            )
            msrp_err = jnp.where(
                hidden, jnp.square(out["reconstruction"][:b] - view1["values"]), 0.0
            )
            clean = slice(b, 3 * b)
            instrument = batch["instrument"].reshape(-1)
            master_batch = {
                k: jnp.repeat(v, 2, axis=0) for k, v in batch.items() if k.startswith("master_")
            }
            master, scored = master_target(
                master_batch, flat["wavenumber"], flat["valid"], config.data.normalize
            )
            transfer_err = jnp.where(scored, jnp.square(out["transfer"][clean] - master), 0.0)
            identity_err = jnp.where(scored, jnp.square(flat["values"] - master), 0.0)
            return {
                "msrp_sse": msrp_err.sum(),
                "msrp_count": hidden.sum(),
                "adversary_correct": jnp.sum(
                    jnp.argmax(out["adv_logits"][clean], -1) == instrument
                ),
                "instrument_correct": jnp.sum(
                    jnp.argmax(out["inst_logits"][clean], -1) == instrument
                ),
                "transfer_sse": transfer_err.sum(),
                "identity_sse": identity_err.sum(),
                "transfer_count": scored.sum(),
                # Per-sample outputs and labels, gathered to every process.
                "z": out["chem_mean"][clean].reshape(b, 2, -1),
                "instrument": batch["instrument"],
                "modality": batch["modality"][:, 0],
                "component_ids": batch["component_ids"],
                "concentrations": batch["concentrations"],
                "values": batch["values"],
                "master_values": batch["master_values"],
            }

        self._forward = jax.jit(forward, out_shardings=replicated)
        self._compiled = None
        self._references: dict[str, float] | None = None  # fixed probe references
        # The training objective's own matched-group Sinkhorn, on the whole held-out set.
        sk = obj.sinkhorn
        self._matched_sinkhorn = jax.jit(
            lambda z, instrument: alignment.matched_sinkhorn_loss(
                z,
                instrument,
                config.model.vib.num_instruments,
                epsilon=sk.epsilon,
                min_group_size=sk.min_group_size,
                max_iterations=sk.max_iterations,
                threshold=sk.threshold,
            )
        )

    def compile(self, params: dict) -> None:
        """Compiles the evaluation for parameters like `params` (before the first call, so that
        processes can meet at a barrier after compiling instead of inside a collective)."""
        self._compiled = self._forward.lower(params, self.batches[0], np.int32(0)).compile()

    def __call__(self, params: dict) -> dict[str, float]:
        """Evaluates `params` (the learner's parameters) on the held-out set."""
        if self._compiled is None:
            self.compile(params)
        outs = [
            jax.device_get(self._compiled(params, b, np.int32(i)))
            for i, b in enumerate(self.batches)
        ]
        per_sample = (
            "z",
            "instrument",
            "modality",
            "component_ids",
            "concentrations",
            "values",
            "master_values",
        )
        total = {k: sum(o[k] for o in outs) for k in outs[0] if k not in per_sample}
        got = {k: np.concatenate([o[k] for o in outs]) for k in per_sample}
        z, instrument = got["z"].astype(np.float64), got["instrument"]
        conc = concentration_matrix(
            got["component_ids"], got["concentrations"], self.config.data.simulator.num_components
        )
        ev = self.config.eval
        r2, counted = probe_r2(z, conc, ev.probe_ridge, ev.probe_min_samples)
        if self._references is None:
            spectra = {
                "views": got["values"],
                "master": np.repeat(got["master_values"][:, None], 2, axis=1),
            }
            self._references = {
                f"eval/probe_r2_{name}": probe_r2(
                    x.astype(np.float64), conc, ev.probe_ridge, ev.probe_min_samples
                )[0]
                for name, x in spectra.items()
            }
        views = instrument.size
        transfer_count = max(total["transfer_count"], 1)
        return {
            "eval/msrp": float(total["msrp_sse"] / max(total["msrp_count"], 1)),
            "eval/sinkhorn": self._sinkhorn(z, instrument),
            "eval/adversary_accuracy": float(total["adversary_correct"] / views),
            "eval/instrument_accuracy": float(total["instrument_correct"] / views),
            "eval/instrument_probe_zchem": instrument_probe_accuracy(z, instrument, ev.probe_ridge),
            "eval/instrument_chance": majority_rate(
                instrument, np.repeat(got["modality"][:, None], 2, axis=1)
            ),
            "eval/probe_r2": r2,
            "eval/probe_components": float(counted),
            **self._references,
            "eval/transfer_rmse": float(np.sqrt(total["transfer_sse"] / transfer_count)),
            "eval/transfer_rmse_identity": float(np.sqrt(total["identity_sse"] / transfer_count)),
        }

    def _sinkhorn(self, z: np.ndarray, instrument: np.ndarray) -> float:
        """Size-weighted Sinkhorn divergence of the per-instrument matched groups (NaN: none
        large enough)."""
        loss, sizes = self._matched_sinkhorn(z.astype(np.float32), instrument.astype(np.int32))
        return float(loss) if np.asarray(sizes).sum() > 0 else float("nan")
