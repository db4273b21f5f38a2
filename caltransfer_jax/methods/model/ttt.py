"""Zero-shot test-time training on unlabelled target spectra, with a label-free stopping rule.

Objective on the adapters (the base stays frozen), per step on a batch of B target spectra and B
master pool spectra:

    L = w_r · MSRP(target)                          masked reconstruction on the target
      + w_s · S_ε(f(target), f₀(master))            Sinkhorn divergence to the master features
      + w_a · ‖f(master) − f₀(master)‖² / s²        the master's features stay where they were

f are the adapted features, f₀ the base model's (so the master calibration head stays valid),
s their pooled std. Aligning *distributions* is right here because the unlabelled target pool and
the master pool hold the same population of samples (DESIGN.md, "Objectives").

Stopping rule (no labels): a fraction of the unlabelled target spectra is held out of training;
every `eval_every` steps the same objective is measured on them (fixed mask, fixed master rows).
The adapters with the lowest held-out value are kept — step 0, the base model, included, so TTT
never returns something its own criterion finds worse — and training stops after `patience`
evaluations without a relative improvement of `min_improvement`.
"""

from __future__ import annotations

import functools

import jax
import ml_collections
import numpy as np
import optax

from caltransfer_jax.methods.model.adaptable import AdaptableModel, take


@functools.cache
def _compiled(model: AdaptableModel, weights: tuple[float, float, float], lr: float):
    """Jitted train step and criterion for one model and one setting (one compile each)."""
    w_r, w_s, w_a = weights
    tx = optax.adam(lr)

    def objective(adapters, rest, target, master, ref, key, scale):
        terms = {
            "msrp": model.msrp(adapters, rest, target, key),
            "sinkhorn": model.divergence(model.feats(adapters, rest, target), ref, scale),
            "anchor": model.distance(model.feats(adapters, rest, master), ref, scale),
        }
        total = w_r * terms["msrp"] + w_s * terms["sinkhorn"] + w_a * terms["anchor"]
        return total, terms

    @jax.jit
    def step(adapters, opt_state, rest, target, master, ref, key, scale):
        grads, terms = jax.grad(objective, has_aux=True)(
            adapters, rest, target, master, ref, key, scale
        )
        updates, opt_state = tx.update(grads, opt_state, adapters)
        return optax.apply_updates(adapters, updates), opt_state, terms

    return tx, step, jax.jit(objective)


def run_ttt(
    model: AdaptableModel,
    master: dict[str, np.ndarray],
    ref: np.ndarray,
    target: dict[str, np.ndarray],
    settings: ml_collections.ConfigDict,
    seed: int = 0,
) -> tuple[dict, list[dict]]:
    """Adapts the LoRA weights to unlabelled target spectra.

    Args:
        model: the adaptable export.
        master: model inputs of the master pool spectra (n, L).
        ref: (n, f) their base-model features (what the master head was fitted on).
        target: model inputs of the unlabelled target spectra (m, L), never test spectra.
        settings: steps, lr, batch_size, eval_every, patience, min_improvement,
            holdout_fraction, msrp_weight, sinkhorn_weight, anchor_weight.
        seed: draws the held-out part, batches and masks.

    Returns:
        (adapters, log): the chosen adapters (pure dict) and the held-out criterion per
        evaluation ({"step", "criterion", "msrp", "sinkhorn", "anchor"}).
    """
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    weights = (settings.msrp_weight, settings.sinkhorn_weight, settings.anchor_weight)
    tx, step, objective = _compiled(model, weights, float(settings.lr))
    adapters = model.initial
    scale = float(np.sqrt(ref.var(axis=0).mean()) + 1e-8)
    m, n = len(target["values"]), len(master["values"])
    order = rng.permutation(m)
    n_hold = max(2, round(settings.holdout_fraction * m))
    hold, fit = order[:n_hold], order[n_hold:]
    if fit.size < 2:
        raise ValueError(f"TTT needs at least {n_hold + 2} unlabelled target spectra, got {m}")
    hold_master = rng.choice(n, n_hold, replace=n_hold > n)
    held = (take(target, hold), take(master, hold_master), ref[hold_master])
    hold_key = jax.random.fold_in(key, settings.steps + 1)  # never a training step

    def criterion(adapters, at_step):
        total, terms = objective(adapters, model.rest, *held, hold_key, scale)
        return {"step": at_step, "criterion": float(total)} | {
            k: float(v) for k, v in terms.items()
        }

    log = [criterion(adapters, 0)]
    best, best_value, waited = adapters, log[0]["criterion"], 0
    opt_state = tx.init(adapters)
    batch = settings.batch_size
    for i in range(1, settings.steps + 1):
        t_rows = rng.choice(fit, batch, replace=batch > fit.size)
        m_rows = rng.choice(n, batch, replace=batch > n)
        adapters, opt_state, _ = step(
            adapters,
            opt_state,
            model.rest,
            take(target, t_rows),
            take(master, m_rows),
            ref[m_rows],
            jax.random.fold_in(key, i),
            scale,
        )
        if i % settings.eval_every == 0:
            log.append(criterion(adapters, i))
            if log[-1]["criterion"] < best_value * (1 - settings.min_improvement):
                best, best_value, waited = adapters, log[-1]["criterion"], 0
            else:
                waited += 1
                if waited >= settings.patience:
                    break
    return best, log
