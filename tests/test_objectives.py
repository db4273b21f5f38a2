"""Pretraining objectives: each term is finite and moves exactly the parameters it should.

The per-term gradients come from one Jacobian of the vector of terms (one compilation for all
terms) on a simulated tiny batch; the BYOL target's parameters are an argument too, so the test
also holds that no term sends them a gradient.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from caltransfer_jax.models.inputs import to_grid
from caltransfer_jax.models.vib import VariationalBottleneck
from caltransfer_jax.objectives import (
    TERMS,
    alignment,
    byol,
    functional_learner,
    invariance,
    masking,
    physics,
    pretraining_terms,
    reconstruction,
    target_params,
    transfer,
    with_target,
)
from caltransfer_jax.pretrain import data as pretrain_data
from caltransfer_jax.pretrain.sharding import path_name
from caltransfer_jax.simulate import Simulator, SimulatorConfig
from configs import pretrain as pretrain_config

# Parameter groups ("/"-joined path prefixes) each term must move, and must not move.
ENCODER = ("model/embedding", "model/backbone", "model/moe", "model/transformer")
RECON = (*ENCODER, "model/vib/chem", "model/vib/inst", "model/reconstruction_head")
NOT_RECON = (
    "byol",
    "model/transfer_head",
    "model/vib/adversary",
    "model/vib/inst_classifier",
)
CHEM_ONLY_FORBIDDEN = (
    "model/reconstruction_head",
    "model/transfer_head",
    "model/vib/inst",
    "model/vib/adversary",
)
EXPECT = {
    "msrp": (RECON, NOT_RECON),
    "denoise": (RECON, NOT_RECON),
    "smoothness": (RECON, NOT_RECON),
    "peak_shape": (RECON, NOT_RECON),
    "beer_lambert": ((*ENCODER, "model/vib/chem"), (*CHEM_ONLY_FORBIDDEN, "byol")),
    "byol": (
        (*ENCODER, "model/vib/chem", "byol/projector", "byol/predictor"),
        CHEM_ONLY_FORBIDDEN,
    ),
    "sinkhorn": ((*ENCODER, "model/vib/chem"), (*CHEM_ONLY_FORBIDDEN, "byol")),
    "kl_chem": ((*ENCODER, "model/vib/chem"), (*CHEM_ONLY_FORBIDDEN, "byol")),
    "kl_inst": (
        (*ENCODER, "model/vib/inst"),
        ("model/vib/chem", "model/vib/inst_classifier", "model/vib/adversary", "byol"),
    ),
    "instrument": (
        (*ENCODER, "model/vib/inst", "model/vib/inst_classifier"),
        ("model/vib/chem", "model/vib/adversary", "byol", "model/reconstruction_head"),
    ),
    "adversary": (
        (*ENCODER, "model/vib/chem", "model/vib/adversary"),
        ("model/vib/inst", "model/vib/inst_classifier", "byol", "model/reconstruction_head"),
    ),
    "moe_balance": (
        ("model/moe/router", "model/embedding", "model/backbone"),
        ("model/transformer", "model/vib", "byol", "model/reconstruction_head"),
    ),
    "transfer": (
        (*ENCODER, "model/transfer_head"),
        ("model/reconstruction_head", "model/vib", "byol"),
    ),
}


@pytest.fixture(scope="module")
def setup():
    config = pretrain_config.get_config("tiny")
    data = pretrain_data.PretrainData(config, 0, 1)
    batch = {k: jnp.asarray(v) for k, v in next(data).items()}
    apply, init = functional_learner(config)
    params = jax.jit(init)()
    return config, batch, apply, params


@pytest.fixture(scope="module")
def jacobians(setup):
    config, batch, apply, params = setup
    target = jax.tree.map(lambda x: x + 0.01, target_params(params))

    def terms(params, target):
        key = jax.random.key(3)
        online = apply(params, key, True)
        ema = apply(with_target(params, target), key, False)
        values, _ = pretraining_terms(online, ema, batch, key, config)
        return jnp.stack([values[name] for name in TERMS])

    values = jax.jit(terms)(params, target)
    grads, target_grads = jax.jit(jax.jacrev(terms, argnums=(0, 1)))(params, target)
    return dict(zip(TERMS, np.asarray(values), strict=True)), grads, target_grads


def _group_norms(tree, index):
    norms = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        norms[path_name(path)] = float(jnp.linalg.norm(leaf[index]))
    return norms


def _norm_under(norms, prefix):
    return sum(v for k, v in norms.items() if k.startswith(prefix + "/") or k == prefix)


def test_every_term_is_finite_and_moves_what_it_should(jacobians):
    # One test for all terms (not parametrised), so that parallel workers share one Jacobian.
    values, grads, target_grads = jacobians
    problems = []
    for index, term in enumerate(TERMS):
        norms = _group_norms(grads, index)
        moves, frozen = EXPECT[term]
        if not np.isfinite(values[term]) or values[term] == 0.0:
            problems.append(f"{term} = {values[term]}")
        if not all(np.isfinite(v) for v in norms.values()):
            problems.append(f"{term}: non-finite gradient")
        problems += [f"{term} does not move {p}" for p in moves if _norm_under(norms, p) == 0]
        problems += [f"{term} moves {p}" for p in frozen if _norm_under(norms, p) != 0]
        # No term moves the EMA target (BYOL's target is under stop_gradient).
        if any(v != 0 for v in _group_norms(target_grads, index).values()):
            problems.append(f"{term} moves the EMA target")
    assert not problems, "\n".join(problems)


def test_gradient_reversal_flips_the_adversary_gradient():
    vib = VariationalBottleneck(6, 4, 3, 5, 8, 1.0, rngs=nnx.Rngs(0))
    vib.deterministic = True
    pooled = jax.random.normal(jax.random.key(0), (7, 6))
    labels = jnp.arange(7) % 5

    def through_grl(x):
        return invariance.instrument_cross_entropy(vib(x)["adv_logits"], labels)

    def plain(x):
        return invariance.instrument_cross_entropy(vib.adversary(vib(x)["chem_mean"]), labels)

    np.testing.assert_allclose(jax.grad(through_grl)(pooled), -jax.grad(plain)(pooled), rtol=1e-5)


def test_block_mask_hides_contiguous_blocks_of_valid_points_only():
    valid = jnp.ones((16, 128), bool).at[3, 100:].set(False)
    hidden = np.asarray(masking.block_mask(jax.random.key(0), valid, 0.25, 8))
    assert not hidden[~np.asarray(valid)].any()
    full = hidden[np.arange(16) != 3]
    np.testing.assert_array_equal(full.sum(1), 32)  # exactly round(0.25 · 16) blocks of 8
    # Runs of hidden points have lengths that are multiples of 8, except where a block wraps.
    row = np.concatenate([[False], full[0], [False]]).astype(int)
    edges = np.flatnonzero(np.diff(row))
    lengths = edges[1::2] - edges[::2]
    assert sum(lengths) == 32 and all(n % 8 == 0 for n in lengths[1:-1])
    assert len({tuple(r) for r in full}) > 1  # masks differ between spectra


def test_masked_reconstruction_cannot_see_hidden_values(setup):
    config, batch, apply, params = setup
    view = {k: batch[k][:, 0] for k in ("values", "wavenumber", "valid")}
    hidden = masking.block_mask(jax.random.key(1), view["valid"], 0.3, config.objectives.mask.block)

    @jax.jit
    def recon(values):
        model = apply(params, jax.random.key(0), False).model
        out = model(values, view["wavenumber"], view["valid"], batch["modality"][:, 0], hidden)
        return out["reconstruction"]

    changed = jnp.where(hidden, view["values"] + 5.0, view["values"])
    np.testing.assert_array_equal(recon(view["values"]), recon(changed))
    loss = reconstruction.msrp_loss(recon(view["values"]), view["values"], hidden)
    assert loss > 0


def test_standardize_matches_the_pipeline():
    rng = np.random.default_rng(0)
    raw = rng.normal(3.0, 2.0, (2, 40)).astype(np.float32)
    valid = np.ones((2, 40), bool)
    valid[1, 30:] = False
    out = reconstruction.standardize(jnp.asarray(raw), jnp.asarray(valid), "snv")
    for r in range(2):
        n = valid[r].sum()
        expected = to_grid(raw[r, :n], np.arange(n, dtype=np.float32) + 1, 40)
        np.testing.assert_allclose(out[r], expected["values"], atol=1e-5)


def test_noise_level_is_relative_to_the_spectrum():
    values = jnp.asarray(np.random.default_rng(1).normal(size=(64, 256)) * 10.0, jnp.float32)
    valid = jnp.ones_like(values, bool)
    noise = reconstruction.add_noise(jax.random.key(0), values, valid, 0.2) - values
    ratio = np.asarray(noise.std(-1) / values.std(-1))
    assert 0.0 <= ratio.min() and ratio.max() <= 0.2 * 1.1 and ratio.mean() > 0.05


def test_sinkhorn_divergence_is_debiased_and_scale_free():
    x = jax.random.normal(jax.random.key(0), (24, 8))
    w = jnp.full((24,), 1 / 24)

    def div(a, b, w=w):
        return float(alignment.sinkhorn_divergence(a, b, w, 0.05, 500, 1e-4))

    assert abs(div(x, x)) < 1e-4
    shifted = div(x, x + 1.0)
    assert shifted > 0.01
    assert div(10 * x, 10 * (x + 1.0)) == pytest.approx(shifted, rel=1e-3)
    # Zero-weight points are ignored.
    pad = jnp.concatenate([x, 50 + jnp.zeros((5, 8))])
    padded_w = jnp.concatenate([w, jnp.zeros(5)])
    assert div(pad, pad + 1.0, padded_w) == pytest.approx(shifted, rel=1e-3)


def test_sinkhorn_groups_are_matched_populations():
    instrument = jnp.array([[0, 1], [1, 0], [0, 2], [2, 1], [3, -1]])
    weights, sizes = alignment.matched_group_weights(instrument, 4, 2)
    np.testing.assert_array_equal(sizes, [3, 3, 2, 0])  # instrument 3 has one sample: skipped
    # Group 0 holds view 1 of samples 0, 2 and view 2 of sample 1 (points 0, 2 and 5 + 1 = 6).
    np.testing.assert_allclose(weights[0], np.isin(np.arange(10), [0, 2, 6]) / 3)
    z = jax.random.normal(jax.random.key(0), (5, 2, 4))
    same = jnp.stack([z[:, 0], z[:, 0]], axis=1)
    loss, _ = alignment.matched_sinkhorn_loss(
        same, instrument, 4, epsilon=0.05, min_group_size=2, max_iterations=300, threshold=1e-4
    )
    assert abs(float(loss)) < 1e-4  # identical views: nothing to align


def test_beer_lambert_holds_for_a_linear_code_only():
    rng = np.random.default_rng(0)
    absorbance = jnp.asarray(rng.uniform(0, 1, (12, 30)), jnp.float32)
    wn = jnp.broadcast_to(jnp.linspace(4000, 9000, 30), (12, 30))
    valid = jnp.ones((12, 30), bool)
    modality = jnp.array([0] * 6 + [1] * 6)
    partner, has = physics.mixing_partners(jax.random.key(0), wn, valid, modality)
    assert bool(has.all()) and bool((modality[partner] == modality).all())
    assert bool((partner != jnp.arange(12)).all())
    mixed, alpha = physics.mix(jax.random.key(1), absorbance, partner, (0.2, 0.8))
    w = jnp.asarray(rng.normal(size=(30, 5)), jnp.float32)

    def loss(code):
        return float(physics.beer_lambert_loss(code(mixed), code(absorbance), partner, alpha, has))

    assert loss(lambda a: a @ w) < 1e-8
    assert loss(lambda a: jnp.tanh(3 * a @ w)) > 1e-3
    assert loss(lambda a: 100 * jnp.tanh(3 * a @ w)) == pytest.approx(
        loss(lambda a: jnp.tanh(3 * a @ w)), rel=1e-4
    )


def test_derivative_terms_vanish_for_the_true_spectrum_only():
    x = jnp.linspace(0, 6, 64)
    target = jnp.stack([jnp.exp(-((x - 3) ** 2)), jnp.sin(x)])
    hidden = jnp.zeros((2, 64), bool).at[:, 10:40].set(True)
    for deriv in (1, 2):
        assert float(physics.derivative_loss(target, target, hidden, 7, 3, deriv)) == 0.0
        stepped = target + 0.05 * (jnp.arange(64) % 8 == 0)  # seams every 8 points
        assert float(physics.derivative_loss(stepped, target, hidden, 7, 3, deriv)) > 0.01
        # Outside the hidden windows nothing counts.
        outside = target.at[:, 50:].add(1.0)
        assert float(physics.derivative_loss(outside, target, hidden, 7, 3, deriv)) == 0.0


def test_master_target_resamples_and_normalises_like_the_view():
    master_axis = jnp.linspace(4000.0, 10000.0, 100)
    raw = 2.0 + 0.001 * master_axis  # linear in wavenumber: interpolation is exact
    batch = {
        "master_values": ((raw - raw.mean()) / raw.std())[None],
        "master_offset": raw.mean()[None],
        "master_scale": raw.std()[None],
        "master_wavenumber": master_axis[None],
        "master_valid": jnp.ones((1, 100), bool),
    }
    view_axis = jnp.linspace(3000.0, 7000.0, 40)[None]
    view_valid = jnp.ones((1, 40), bool).at[0, -5:].set(False)
    target, scored = transfer.master_target(batch, view_axis, view_valid, "none")
    inside = (view_axis >= 4000) & view_valid
    np.testing.assert_array_equal(scored, inside)
    np.testing.assert_allclose(
        jnp.where(scored, target, 0), jnp.where(inside, 2.0 + 0.001 * view_axis, 0), rtol=1e-5
    )
    snv, _ = transfer.master_target(batch, view_axis, view_valid, "snv")
    on = np.asarray(snv[scored])
    assert abs(on.mean()) < 1e-5 and abs(on.std() - 1) < 1e-4


def test_byol_loss_and_ema_schedule():
    q = jax.random.normal(jax.random.key(0), (4, 6))
    assert float(byol.byol_loss((q, 2 * q), (3 * q, q), jnp.ones(4))) == pytest.approx(0, abs=1e-6)
    assert float(byol.byol_loss((q, q), (-q, -q), jnp.ones(4))) == pytest.approx(8, abs=1e-5)
    assert float(byol.byol_loss((q, q), (-q, -q), jnp.zeros(4))) == 0.0
    assert float(byol.ema_decay(jnp.array(0), 100, 0.99)) == pytest.approx(0.99)
    assert float(byol.ema_decay(jnp.array(100), 100, 0.99)) == pytest.approx(1.0)
    updated = byol.ema_update({"a": jnp.zeros(3)}, {"a": jnp.ones(3)}, jnp.array(0.9))
    np.testing.assert_allclose(updated["a"], 0.1, rtol=1e-6)


def test_master_views_cover_the_modality_grid_and_skip_other_sources(setup):
    config, batch, _, _ = setup
    valid = np.asarray(batch["master_valid"])
    assert valid.all()  # every tiny example is simulated; the master grid has no padding
    values = np.asarray(batch["master_values"])
    np.testing.assert_allclose(values.mean(1), 0, atol=1e-5)  # standardised like the views
    views = pretrain_data.MasterViews(
        Simulator(SimulatorConfig(**_simulator_kwargs(config))),
        config.data.master_grid,
        config.data.num_points,
        "none",
    )
    ids = np.asarray(batch["sample_id"])[:3]
    out = views(ids, [True, False, True])
    assert out["master_valid"][[0, 2]].all() and not out["master_valid"][1].any()
    raw = np.asarray(batch["master_values"] * batch["master_scale"][:, None])
    raw = raw + np.asarray(batch["master_offset"])[:, None]
    np.testing.assert_allclose(out["master_values"][0], raw[0], rtol=1e-5, atol=1e-5)


def _simulator_kwargs(config):
    sim = config.data.simulator
    return {
        "seed": sim.seed,
        "num_components": sim.num_components,
        "num_families": sim.num_families,
        "max_components": sim.max_components,
        "instruments_per_modality": tuple(sim.instruments_per_modality),
        "modality_weights": tuple(sim.modality_weights),
        "views_per_sample": sim.views_per_sample,
    }
