"""The pretraining objective: every term from one forward pass over the stacked inputs.

A global batch of b samples (two instrument views each, plus the master view) becomes up to six
blocks of b spectra that run through the online model in one call:

| block          | input                              | terms                                     |
|----------------|------------------------------------|-------------------------------------------|
| masked         | view 1 with blocks hidden          | msrp, smoothness, peak_shape              |
| view 1, view 2 | both views as measured             | byol, sinkhorn, kl_*, instrument,         |
|                |                                    | adversary, transfer                       |
| noised         | view 2 + white noise               | denoise                                   |
| master, mix    | master views and their mixtures    | beer_lambert                              |

(moe_balance covers all blocks.) Blocks whose terms all have weight 0 are left out. The EMA
target runs on the two views in eval mode. All randomness (masks, noise, mixtures, dropout,
latent sampling) derives from one key per step, so a step is a pure function of the state.

Shapes: b batch, l points, c z_chem.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jaxtyping import Array

from caltransfer_jax.models import build_model
from caltransfer_jax.objectives import (
    alignment,
    byol,
    invariance,
    masking,
    physics,
    reconstruction,
    transfer,
)

TERMS = (
    "msrp",
    "denoise",
    "smoothness",
    "peak_shape",
    "beer_lambert",
    "byol",
    "sinkhorn",
    "kl_chem",
    "kl_inst",
    "instrument",
    "adversary",
    "moe_balance",
    "transfer",
)
_MASKED_TERMS = ("msrp", "smoothness", "peak_shape")


class Learner(nnx.Module):
    """What pretraining optimises: the spectral model and the BYOL projector and predictor."""

    def __init__(self, config: ml_collections.ConfigDict, seed: int):
        """Builds the model (`config.model`) and the BYOL heads (`config.objectives.byol`)."""
        self.model = build_model(config.model, seed)
        heads = config.objectives.byol
        self.byol = byol.BYOLHeads(
            config.model.vib.z_chem,
            heads.hidden,
            heads.projection,
            rngs=nnx.Rngs(params=seed + 3),
        )


def fresh_rngs(abstract_rngs: nnx.State, key: Array) -> nnx.State:
    """An RNG state of the learner's shape seeded from `key` (every stream distinct, counts 0)."""
    leaves, treedef = jax.tree.flatten(abstract_rngs)
    fresh = [
        jax.random.fold_in(key, i)
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
        else jnp.zeros(leaf.shape, leaf.dtype)
        for i, leaf in enumerate(leaves)
    ]
    return jax.tree.unflatten(treedef, fresh)


def functional_learner(
    config: ml_collections.ConfigDict,
) -> tuple[Callable[[dict, Array, bool], Learner], Callable[[], dict]]:
    """The learner as pure functions of its parameters (a nested dict).

    Returns:
        apply(params, key, train) → a `Learner` holding `params`, its dropout and latent-noise
        streams seeded from `key`, in train or eval mode; and init() → fresh parameters (call it
        under `jax.jit` to create them sharded). The learner has no state besides parameters and
        RNG streams (splitting fails loudly otherwise), so nothing else needs carrying.
    """
    abstract = nnx.eval_shape(lambda: Learner(config, config.seed))
    graphdef, _, abstract_rngs = nnx.split(abstract, nnx.Param, nnx.RngState)

    def apply(params: dict, key: Array, train: bool) -> Learner:
        learner = nnx.merge(graphdef, params, fresh_rngs(abstract_rngs, key))
        if train:
            learner.train()
        else:
            learner.eval()
        return learner

    def init() -> dict:
        return nnx.to_pure_dict(nnx.state(Learner(config, config.seed), nnx.Param))

    return apply, init


def target_params(params: dict) -> dict:
    """The parameters the EMA target tracks: the model and the projector (not the predictor)."""
    return {"model": params["model"], "projector": params["byol"]["projector"]}


def with_target(params: dict, target: dict) -> dict:
    """Learner parameters with the EMA target's model and projector (the predictor is unused)."""
    return {
        "model": target["model"],
        "byol": {"projector": target["projector"], "predictor": params["byol"]["predictor"]},
    }


def _needed(weights: ml_collections.ConfigDict, names: tuple[str, ...]) -> bool:
    return any(weights[name] != 0 for name in names)


def pretraining_terms(
    online: Learner,
    target: Learner,
    batch: dict[str, Array],
    key: Array,
    config: ml_collections.ConfigDict,
) -> tuple[dict[str, Array], dict[str, Array]]:
    """Computes every pretraining term on one global batch.

    Args:
        online: the learner in train mode (its parameters receive the gradients).
        target: the same graph holding the EMA target parameters (its predictor is unused).
        batch: pipeline batch with master views (`pretrain_data`): values, wavenumber, valid
            (b, 2, l); modality, instrument (b, 2); paired (b,); master_values,
            master_wavenumber, master_valid (b, l); master_offset, master_scale (b,).
        key: this step's PRNG key for masks, noise and mixtures (dropout and latent sampling
            are seeded into the learner by the caller).
        config: the full pretraining config (reads `objectives`, `model.vib`, `data.normalize`).

    Returns:
        (terms, aux): every name in `TERMS` → scalar (0 where its block was left out), and
        sinkhorn_groups, the number of instrument groups large enough to count (for logging).
    """
    obj = config.objectives
    weights = obj.weights
    mask_key, noise_key, partner_key, mix_key = jax.random.split(key, 4)
    view1 = {k: batch[k][:, 0] for k in ("values", "wavenumber", "valid")}
    view2 = {k: batch[k][:, 1] for k in ("values", "wavenumber", "valid")}
    modality = batch["modality"][:, 0]
    b = modality.shape[0]

    blocks: dict[str, dict[str, Array]] = {}
    if _needed(weights, _MASKED_TERMS):
        hidden = masking.block_mask(mask_key, view1["valid"], obj.mask.ratio, obj.mask.block)
        blocks["masked"] = {**view1, "hidden": hidden}
    no_hidden = jnp.zeros_like(view1["valid"])
    blocks["view1"] = {**view1, "hidden": no_hidden}
    blocks["view2"] = {**view2, "hidden": no_hidden}
    if _needed(weights, ("denoise",)):
        noised = reconstruction.add_noise(
            noise_key, view2["values"], view2["valid"], obj.denoise.max_noise_std
        )
        blocks["noised"] = {
            **view2,
            "values": jnp.where(view2["valid"], noised, 0.0),
            "hidden": no_hidden,
        }
    if _needed(weights, ("beer_lambert",)):
        master_valid = batch["master_valid"]
        partner, has_partner = physics.mixing_partners(
            partner_key, batch["master_wavenumber"], master_valid, modality
        )
        raw = (
            batch["master_values"] * batch["master_scale"][:, None]
            + batch["master_offset"][:, None]
        )
        alpha_min = obj.beer_lambert.alpha_min
        mixed, alpha = physics.mix(mix_key, raw, partner, (alpha_min, 1.0 - alpha_min))
        # Both the mixture and its components must come from the same valid points.
        mixed_valid = master_valid & master_valid[partner]
        master = {
            "values": batch["master_values"],
            "wavenumber": batch["master_wavenumber"],
            "valid": master_valid,
            "hidden": jnp.zeros_like(master_valid),
        }
        blocks["master"] = master
        blocks["mix"] = {
            **master,
            "values": reconstruction.standardize(mixed, mixed_valid, config.data.normalize),
            "valid": mixed_valid,
        }

    names = list(blocks)
    stacked = {
        k: jnp.concatenate([blocks[n][k] for n in names])
        for k in ("values", "wavenumber", "valid", "hidden")
    }
    out = online.model(
        stacked["values"],
        stacked["wavenumber"],
        stacked["valid"],
        jnp.tile(modality, len(names)),
        stacked["hidden"],
        heads=("reconstruction", "transfer"),
    )

    def part(name: str, field: str) -> Array:
        i = names.index(name)
        return out[field][i * b : (i + 1) * b]

    terms = {name: jnp.zeros((), jnp.float32) for name in TERMS}
    aux: dict[str, Array] = {}
    paired = batch["paired"]
    instrument = batch["instrument"]

    if "masked" in blocks:
        recon, hidden = part("masked", "reconstruction"), blocks["masked"]["hidden"]
        terms["msrp"] = reconstruction.msrp_loss(recon, view1["values"], hidden)
        window, order = obj.physics.savgol_window, obj.physics.savgol_order
        terms["smoothness"] = physics.derivative_loss(
            recon, view1["values"], hidden, window, order, 1
        )
        terms["peak_shape"] = physics.derivative_loss(
            recon, view1["values"], hidden, window, order, 2
        )
    if "noised" in blocks:
        terms["denoise"] = reconstruction.denoising_loss(
            part("noised", "reconstruction"), view2["values"], view2["valid"]
        )
    if "master" in blocks:
        terms["beer_lambert"] = physics.beer_lambert_loss(
            part("mix", "chem_mean"), part("master", "chem_mean"), partner, alpha, has_partner
        )

    # Both views: bottleneck, instrument game, transfer.
    views_out = {
        k: jnp.concatenate([part("view1", k), part("view2", k)])
        for k in ("kl_chem", "kl_inst", "inst_logits", "adv_logits")
    }
    terms.update(
        invariance.vib_terms(views_out, jnp.concatenate([instrument[:, 0], instrument[:, 1]]))
    )
    terms["moe_balance"] = out["moe_balance_loss"]
    for name, view in (("view1", view1), ("view2", view2)):
        master, scored = transfer.master_target(
            batch, view["wavenumber"], view["valid"], config.data.normalize
        )
        terms["transfer"] += 0.5 * reconstruction.masked_mse(part(name, "transfer"), master, scored)

    if _needed(weights, ("byol",)):
        # Online predictions of each view against the EMA target's projection of the other.
        heads = online.byol
        q1 = heads.predictor(heads.projector(part("view1", "z_chem")))
        q2 = heads.predictor(heads.projector(part("view2", "z_chem")))
        target_out = target.model(
            jnp.concatenate([view1["values"], view2["values"]]),
            jnp.concatenate([view1["wavenumber"], view2["wavenumber"]]),
            jnp.concatenate([view1["valid"], view2["valid"]]),
            jnp.tile(modality, 2),
            heads=(),
        )
        z_target = target.byol.projector(target_out["chem_mean"])
        terms["byol"] = byol.byol_loss(
            (q1, q2), (z_target[:b], z_target[b:]), paired.astype(jnp.float32)
        )

    aux["sinkhorn_groups"] = jnp.zeros((), jnp.float32)
    if _needed(weights, ("sinkhorn",)):
        # Matched instrument groups (examples without a second view belong to no group).
        z_views = jnp.stack([part("view1", "chem_mean"), part("view2", "chem_mean")], axis=1)
        sk = obj.sinkhorn
        terms["sinkhorn"], group_sizes = alignment.matched_sinkhorn_loss(
            z_views,
            jnp.where(paired[:, None], instrument, -1),
            config.model.vib.num_instruments,
            epsilon=sk.epsilon,
            min_group_size=sk.min_group_size,
            max_iterations=sk.max_iterations,
            threshold=sk.threshold,
        )
        aux["sinkhorn_groups"] = jnp.sum(group_sizes > 0).astype(jnp.float32)
    return terms, aux


def total_loss(terms: dict[str, Array], weights: ml_collections.ConfigDict) -> Array:
    """Σ weight × term over `TERMS`."""
    return sum(weights[name] * terms[name] for name in TERMS)
