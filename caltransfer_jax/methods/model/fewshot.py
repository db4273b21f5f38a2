"""Few-shot adaptation with k transfer samples: LoRA adapters under the frozen master head.

The master calibration head (PLS on the base features of the master pool, linear: ŷ = f·w + c)
stays fixed; the adapters learn to map target spectra to features the head already understands.
Per step (every transfer sample, padded with zero weights to a power of two, and B master pool
spectra):

    L = w_y · mean_k (f(x_t)·w + c − y)²            labels of the transfer samples (standardised)
      + w_p · mean_k ‖f(x_t) − f₀(x_m)‖² / s²       each target spectrum → its master twin's features
      + w_a · ‖f(master) − f₀(master)‖² / s²         the master's features stay where they were

f adapted, f₀ base features, s their pooled std on the master pool.

How long to train is chosen from the user's transfer samples, not fixed a priori: a fixed length
was too short for one instrument pair and over-fitted another (docs/ADAPTATION.md, "Why
`model_lora` is flat in k"). The k pairs are split into `n_folds` folds (leave-one-out below
that); one adapter set per fold trains without its fold and one on all k, side by side (vmapped:
one run costs little more than one fit). Every `eval_every` steps each fold's held-out pairs are
predicted exactly as the fitted method predicts (adapted features plus the mean feature shift of
that fold's training pairs, then the head); the all-k adapters at the step with the lowest
cross-validated squared error are kept — step 0, the base model with the pair shift, included —
and a later step must improve on the best by the relative `min_improvement` to replace it. One
scalar is chosen, from k held-out predictions averaged over folds, so noise has little to fit.
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
    """Jitted, member-vmapped train step and held-out residuals for one model and one setting."""
    w_y, w_p, w_a = weights
    tx = optax.adam(lr)

    def objective(adapters, rest, pairs, mask, master, ref, head, scale):
        target, ref_k, y = pairs
        w, c = head
        f_t = model.feats(adapters, rest, target)
        errors = jnp.square(f_t @ w + c - y)
        terms = {
            "label": jnp.sum(errors * mask) / jnp.maximum(mask.sum(), 1.0),
            "pair": model.distance(f_t, ref_k, scale, mask),
            "anchor": model.distance(model.feats(adapters, rest, master), ref, scale),
        }
        return w_y * terms["label"] + w_p * terms["pair"] + w_a * terms["anchor"], terms

    def one_step(adapters, opt_state, rest, pairs, mask, master, ref, head, scale):
        grads, terms = jax.grad(objective, has_aux=True)(
            adapters, rest, pairs, mask, master, ref, head, scale
        )
        updates, opt_state = tx.update(grads, opt_state, adapters)
        return optax.apply_updates(adapters, updates), opt_state, terms

    def one_residuals(adapters, rest, pairs, mask, head):
        # As the fitted method predicts: adapted features + the mean shift of the training pairs.
        target, ref_k, y = pairs
        f_t = model.feats(adapters, rest, target)
        shift = jnp.sum((ref_k - f_t) * mask[:, None], 0) / jnp.maximum(mask.sum(), 1.0)
        return (f_t + shift) @ head[0] + head[1] - y

    members = (0, 0, None, None, 0, None, None, None, None)
    step = jax.jit(jax.vmap(one_step, in_axes=members))
    residuals = jax.jit(jax.vmap(one_residuals, in_axes=(0, None, None, 0, None)))
    return tx, step, residuals


def fold_masks(k: int, rows: int, n_folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held) masks of shape (members, rows): one member per fold (trained without it,
    evaluated on it) and a last member trained on all k; padding rows (≥ k) are in neither."""
    folds = np.array_split(np.random.default_rng(seed).permutation(k), min(n_folds, k))
    held = np.zeros((len(folds) + 1, rows), np.float32)
    for i, fold in enumerate(folds):
        held[i, fold] = 1.0
    train = np.zeros_like(held)
    train[:, :k] = 1.0
    return train - held, held


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
) -> tuple[dict, list[dict], np.ndarray]:
    """Trains the adapters on k transfer pairs with their (standardised) labels.

    Args:
        model: the adaptable export.
        master: model inputs of the master pool spectra (n, L).
        ref: (n, f) their base-model features (what the master head was fitted on).
        master_transfer, target_transfer: model inputs of the k ≥ 2 transfer samples on both
            instruments, row by row the same samples.
        y_transfer: (k,) standardised reference values.
        head: (w (f,), c) of the linear master head on the base features.
        settings: steps (the most), lr, batch_size, max_k, n_folds, eval_every,
            min_improvement, label_weight, pair_weight, anchor_weight.
        seed: draws the folds and the master batches.

    Returns:
        (adapters, log, residuals): the all-k adapters at the chosen step (pure dict), the
        cross-validated criterion per evaluation ({"step", "criterion", "chosen"}), and each
        transfer sample's held-out residual at the chosen step (standardised units).
    """
    k = len(y_transfer)
    if k > settings.max_k:
        raise ValueError(f"k = {k} exceeds few_shot.max_k = {settings.max_k}")
    if k < 2:
        raise ValueError(f"few-shot LoRA needs at least 2 transfer samples, got {k}")
    rng = np.random.default_rng(seed)
    weights = (settings.label_weight, settings.pair_weight, settings.anchor_weight)
    tx, step, residuals_of = _compiled(model, weights, float(settings.lr))
    scale = float(np.sqrt(ref.var(axis=0).mean()) + 1e-8)
    # Fixed shapes: pad the k pairs with zero-weight rows to the next power of two (at least 8),
    # so that the k of a benchmark share a few compilations and small k stay cheap.
    rows = min(max(8, 1 << (k - 1).bit_length()), settings.max_k)
    pad = np.concatenate([np.arange(k), np.zeros(rows - k, int)])
    y = np.asarray(y_transfer, np.float32)
    pairs = (
        take(target_transfer, pad),
        model.features_of(model.initial, master_transfer)[pad].astype(np.float32),
        y[pad],
    )
    train, held = fold_masks(k, rows, settings.n_folds, seed)
    members = len(train)
    adapters = jax.tree.map(lambda x: jnp.stack([x] * members), model.initial)
    opt_state = jax.vmap(tx.init)(adapters)
    head = (np.asarray(head[0], np.float32), np.float32(head[1]))

    def evaluate(at_step):
        # Each pair is held out by exactly one fold member; the last member holds none out.
        r = np.asarray(residuals_of(adapters, model.rest, pairs, train, head))
        out = (r[:-1] * held[:-1]).sum(0)[:k].astype(np.float64)
        return {"step": at_step, "criterion": float(np.mean(np.square(out)))}, out

    entry, best_residuals = evaluate(0)
    log, best, best_entry = [entry], jax.tree.map(lambda x: x[-1], adapters), entry
    n, batch = len(master["values"]), settings.batch_size
    for i in range(1, settings.steps + 1):
        drawn = rng.choice(n, batch, replace=batch > n)
        anchor = (take(master, drawn), ref[drawn])
        adapters, opt_state, _ = step(
            adapters, opt_state, model.rest, pairs, train, *anchor, head, scale
        )
        if i % settings.eval_every == 0 or i == settings.steps:
            entry, out = evaluate(i)
            log.append(entry)
            if entry["criterion"] < best_entry["criterion"] * (1 - settings.min_improvement):
                best = jax.tree.map(lambda x: x[-1], adapters)
                best_residuals, best_entry = out, entry
    for entry in log:
        entry["chosen"] = entry is best_entry
    return best, log, best_residuals
