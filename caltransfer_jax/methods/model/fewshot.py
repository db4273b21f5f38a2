"""Few-shot adaptation with k transfer samples: LoRA adapters under the frozen master head.

The master calibration head (PLS on the base features of the master pool, linear: ŷ = f·w + c)
stays fixed; the adapters learn to map target spectra to features the head already understands.
Per step (every transfer sample, padded with zero weights to a power of two, and B master pool
spectra):

    L = w_y · mean_k (f(x_t)·w + c − y)²            labels of the transfer samples (standardised)
      + w_p · mean_k ‖f(x_t) − f₀(x_m)‖² / s²       each target spectrum → its master twin's features
      + w_a · ‖f(master) − f₀(master)‖² / s²         the master's features stay where they were

f adapted, f₀ base features, s their pooled std on the master pool. The number of steps and the
learning rate are fixed a priori (configs/adapt.py); with k ≤ 10 there is too little data to
choose them by cross-validation without noise dominating the choice.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from caltransfer_jax.methods.model.adaptable import AdaptableModel, take


@functools.cache
def _compiled(model: AdaptableModel, weights: tuple[float, float, float], lr: float):
    """Jitted few-shot train step for one model and one setting (one compile)."""
    w_y, w_p, w_a = weights
    tx = optax.adam(lr)

    def objective(adapters, rest, pairs, master, ref, head, scale):
        target, ref_k, y, mask = pairs
        w, c = head
        f_t = model.feats(adapters, rest, target)
        errors = jnp.square(f_t @ w + c - y)
        terms = {
            "label": jnp.sum(errors * mask) / jnp.maximum(mask.sum(), 1.0),
            "pair": model.distance(f_t, ref_k, scale, mask),
            "anchor": model.distance(model.feats(adapters, rest, master), ref, scale),
        }
        return w_y * terms["label"] + w_p * terms["pair"] + w_a * terms["anchor"], terms

    @jax.jit
    def step(adapters, opt_state, rest, pairs, master, ref, head, scale):
        grads, terms = jax.grad(objective, has_aux=True)(
            adapters, rest, pairs, master, ref, head, scale
        )
        updates, opt_state = tx.update(grads, opt_state, adapters)
        return optax.apply_updates(adapters, updates), opt_state, terms

    return tx, step


def few_shot(
    model: AdaptableModel,
    master: dict[str, np.ndarray],
    ref: np.ndarray,
    master_transfer: dict[str, np.ndarray],
    target_transfer: dict[str, np.ndarray],
    y_transfer: np.ndarray,
    head: tuple[np.ndarray, float],
    settings: ml_collections.ConfigDict,
    seed: int = 0,
) -> tuple[dict, list[dict]]:
    """Trains the adapters on k transfer pairs with their (standardised) labels.

    Args:
        model: the adaptable export.
        master: model inputs of the master pool spectra (n, L).
        ref: (n, f) their base-model features (what the master head was fitted on).
        master_transfer, target_transfer: model inputs of the k transfer samples on both
            instruments, row by row the same samples.
        y_transfer: (k,) standardised reference values.
        head: (w (f,), c) of the linear master head on the base features.
        settings: steps, lr, batch_size, max_k, label_weight, pair_weight, anchor_weight.
        seed: draws the master batches.

    Returns:
        (adapters, log): trained adapters (pure dict) and the loss terms of the last step.
    """
    k = len(y_transfer)
    if k > settings.max_k:
        raise ValueError(f"k = {k} exceeds few_shot.max_k = {settings.max_k}")
    rng = np.random.default_rng(seed)
    weights = (settings.label_weight, settings.pair_weight, settings.anchor_weight)
    tx, step = _compiled(model, weights, float(settings.lr))
    adapters = model.initial
    ref_k = model.features_of(adapters, master_transfer)
    scale = float(np.sqrt(ref.var(axis=0).mean()) + 1e-8)
    # Fixed shapes: pad the k pairs with zero-weight rows to the next power of two (at least 8),
    # so that the k of a benchmark share a few compilations and small k stay cheap.
    rows = min(max(8, 1 << (k - 1).bit_length()), settings.max_k)
    pad = np.concatenate([np.arange(k), np.zeros(rows - k, int)])
    pairs = (
        take(target_transfer, pad),
        ref_k[pad].astype(np.float32),
        np.asarray(y_transfer, np.float32)[pad],
        (np.arange(rows) < k).astype(np.float32),
    )
    head = (np.asarray(head[0], np.float32), np.float32(head[1]))
    opt_state = tx.init(adapters)
    n, batch = len(master["values"]), settings.batch_size
    terms = {}
    for _ in range(settings.steps):
        rows = rng.choice(n, batch, replace=batch > n)
        adapters, opt_state, terms = step(
            adapters, opt_state, model.rest, pairs, take(master, rows), ref[rows], head, scale
        )
    return adapters, [{"step": settings.steps} | {k: float(v) for k, v in terms.items()}]
