"""Shapes, dtypes and defining properties of each model module, at tiny sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from caltransfer_jax.models import embedding, fno, heads, kan, mamba, moe, transformer, vib


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def _normal(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


# --- embedding --------------------------------------------------------------------------------


def _embedding(**overrides):
    kwargs = dict(
        d_model=16,
        patch_size=8,
        wavelet="db2",
        wavelet_levels=2,
        num_modalities=3,
        pe_frequencies=4,
        wavenumber_range=(50.0, 15000.0),
        dropout=0.0,
    )
    kwargs.update(overrides)
    return embedding.SpectralEmbedding(**kwargs, rngs=nnx.Rngs(0))


def test_embedding_shapes_and_token_mask():
    emb = _embedding()
    values = _normal((2, 32))
    wavenumber = jnp.broadcast_to(jnp.linspace(4000.0, 9000.0, 32), (2, 32))
    valid = jnp.ones((2, 32), bool).at[1, 16:].set(False)
    tokens, mask = nnx.jit(lambda m, *a: m(*a))(emb, values, wavenumber, valid, jnp.array([0, 2]))
    assert tokens.shape == (2, 6, 16) and tokens.dtype == jnp.float32
    assert mask.dtype == jnp.bool_
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    assert bool(jnp.all(jnp.isfinite(tokens)))


def test_embedding_position_follows_the_physical_axis():
    """The same values on another wavenumber range give other tokens; NaN padding is harmless."""
    emb = _embedding()
    values = _normal((1, 32))
    valid = jnp.ones((1, 32), bool).at[0, 24:].set(False)
    axis = jnp.linspace(4000.0, 9000.0, 32)[None]
    run = nnx.jit(lambda m, v, w, ok: m(v, w, ok, jnp.array([0]))[0])
    base = run(emb, values, axis, valid)
    shifted = run(emb, values, axis + 300.0, valid)
    assert float(jnp.max(jnp.abs(base[:, 2:5] - shifted[:, 2:5]))) > 1e-3
    nan_padded = run(emb, values.at[0, 24:].set(jnp.nan), axis.at[0, 24:].set(jnp.nan), valid)
    np.testing.assert_allclose(nan_padded[:, :5], base[:, :5], rtol=1e-6, atol=1e-6)


def test_embedding_rejects_incompatible_sizes():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*wavelet_levels"):
        _embedding(patch_size=6)
    emb = _embedding()
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        emb(_normal((1, 30)), jnp.ones((1, 30)), jnp.ones((1, 30), bool), jnp.array([0]))


def test_hidden_points_do_not_reach_the_tokens():
    emb = _embedding()
    values = _normal((2, 32))
    wavenumber = jnp.broadcast_to(jnp.linspace(400.0, 4000.0, 32), (2, 32))
    valid = jnp.ones((2, 32), bool)
    hidden = jnp.zeros((2, 32), bool).at[:, 5:19].set(True)

    @nnx.jit
    def grad(m, values):
        return jax.grad(lambda v: jnp.sum(m(v, wavenumber, valid, jnp.array([0, 1]), hidden)[0]))(
            values
        )

    g = grad(emb, values)
    np.testing.assert_array_equal(g[:, 5:19], 0.0)
    assert float(jnp.min(jnp.abs(g[:, :5]))) > 0.0


# --- Mamba ------------------------------------------------------------------------------------


def _mamba_block(scan_impl="auto"):
    return mamba.BiMambaBlock(
        d_model=8,
        d_state=4,
        d_conv=4,
        expand=2,
        dt_rank=2,
        dt_min=1e-3,
        dt_max=0.1,
        discretization="zoh",
        scan_impl=scan_impl,
        dropout=0.0,
        rngs=nnx.Rngs(0),
    )


def test_mamba_block_is_bidirectional_and_skips_padding():
    block = _mamba_block()
    x = _normal((2, 9, 8))
    mask = jnp.ones((2, 9), bool).at[1, 6:].set(False)
    run = nnx.jit(lambda m, x: m(x, mask))
    out = run(block, x)
    assert out.shape == x.shape and out.dtype == jnp.float32
    # Changing padded tokens leaves every valid token unchanged.
    out_changed = run(block, x.at[1, 6:].set(100.0))
    np.testing.assert_allclose(out_changed[1, :6], out[1, :6], rtol=1e-5, atol=1e-5)
    # Information flows both ways: the first token sees the last and vice versa.
    jac = nnx.jit(lambda m, x: jax.jacrev(lambda v: m(v, mask)[0, [0, 8]].sum(-1))(x))(block, x)
    assert float(jnp.abs(jac[0, 0, 8]).sum()) > 0 and float(jnp.abs(jac[1, 0, 0]).sum()) > 0


def test_mamba_backbone_output():
    backbone = mamba.MambaBackbone(
        2,
        8,
        d_state=4,
        d_conv=2,
        expand=1,
        dt_rank=2,
        dt_min=1e-3,
        dt_max=0.1,
        discretization="euler",
        scan_impl="associative",
        dropout=0.0,
        rngs=nnx.Rngs(1),
    )
    out = nnx.jit(lambda m, x: m(x, jnp.ones((1, 5), bool)))(backbone, _normal((1, 5, 8)))
    assert out.shape == (1, 5, 8)
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-5)  # ends in a LayerNorm


# --- MoE and KAN ------------------------------------------------------------------------------


def test_balance_loss_is_one_for_uniform_routing_and_num_experts_when_collapsed():
    tokens, experts = 12, 4
    uniform_probs = jnp.full((tokens, experts), 1 / experts)
    round_robin = jax.nn.one_hot(jnp.arange(tokens) % experts, experts)
    weights = jnp.ones((tokens,))
    np.testing.assert_allclose(moe.switch_balance_loss(uniform_probs, round_robin, weights), 1.0)
    collapsed = jax.nn.one_hot(jnp.zeros(tokens, int), experts)
    np.testing.assert_allclose(moe.switch_balance_loss(collapsed, collapsed, weights), experts)
    # Top-2 over a uniform split is also at the minimum.
    top2 = round_robin + jax.nn.one_hot((jnp.arange(tokens) + 1) % experts, experts)
    np.testing.assert_allclose(moe.switch_balance_loss(uniform_probs, top2, weights), 1.0)
    # Tokens with weight 0 do not count.
    masked = weights.at[:4].set(0.0)
    skewed = uniform_probs.at[:4].set(collapsed[:4])
    np.testing.assert_allclose(moe.switch_balance_loss(skewed, round_robin, masked), 1.0)
    # The loss pushes probability away from over-used experts (gradient flows through P only).
    grad = jax.grad(lambda p: moe.switch_balance_loss(p, collapsed, weights))(uniform_probs)
    assert float(grad[0, 0]) > float(grad[0, 1])


@pytest.mark.parametrize("use_kan", [False, True])
def test_moe_layer_shapes_and_top_k_routing(use_kan):
    kan_kwargs = dict(kan_grid_size=3, kan_spline_order=3) if use_kan else {}
    layer = moe.MoE(8, 4, 2, 16, 0.0, **kan_kwargs, rngs=nnx.Rngs(0))
    x = _normal((2, 5, 8))
    out, loss = nnx.jit(lambda m, x: m(x, jnp.ones((2, 5), bool)))(layer, x)
    assert out.shape == x.shape and loss.shape == () and float(loss) >= 1.0 - 1e-6
    if not use_kan:
        # A token's output uses exactly its top-2 experts: the other experts get no gradient.
        grads = nnx.jit(
            lambda m: nnx.grad(lambda m: m(x[:1, :1], jnp.ones((1, 1), bool))[0].sum())(m)
        )(layer)
        used = jnp.abs(grads.w1[...]).sum((1, 2)) > 0
        assert int(used.sum()) == 2


def test_bspline_basis_is_a_partition_of_unity():
    x = jnp.linspace(-1.0, 1.0, 101)
    basis = kan.bspline_basis(x, grid_size=5, spline_order=3)
    assert basis.shape == (101, 8)
    np.testing.assert_allclose(basis.sum(-1), 1.0, atol=1e-5)
    assert float(basis.min()) >= 0.0


# --- Transformer ------------------------------------------------------------------------------


def test_transformer_respects_the_padding_mask_and_names_projections():
    encoder = transformer.TransformerEncoder(2, 8, 2, 16, 0.0, rngs=nnx.Rngs(0))
    x = _normal((2, 6, 8))
    mask = jnp.ones((2, 6), bool).at[0, 4:].set(False)
    run = nnx.jit(lambda m, x: m(x, mask))
    out = run(encoder, x)
    assert out.shape == x.shape
    np.testing.assert_allclose(run(encoder, x.at[0, 4:].set(50.0))[0, :4], out[0, :4], atol=1e-5)
    attention = encoder.blocks[0].attn
    assert all(
        isinstance(getattr(attention, name), nnx.Linear)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj")
    )


# --- VIB --------------------------------------------------------------------------------------


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = jnp.array([1.0, -2.0, 3.0])
    np.testing.assert_array_equal(vib.gradient_reversal(x, 0.5), x)
    grad = jax.grad(lambda v: jnp.sum(jnp.array([1.0, 2.0, 3.0]) * vib.gradient_reversal(v, 0.5)))
    np.testing.assert_allclose(grad(x), [-0.5, -1.0, -1.5])


def test_bottleneck_outputs_kl_and_eval_mode():
    bottleneck = vib.VariationalBottleneck(6, 4, 2, 3, 5, 1.0, rngs=nnx.Rngs(0))
    pooled = _normal((3, 6))
    out = bottleneck(pooled)
    shapes = {k: v.shape for k, v in out.items()}
    assert shapes == {
        "z_chem": (3, 4),
        "z_inst": (3, 2),
        "chem_mean": (3, 4),
        "chem_logvar": (3, 4),
        "inst_mean": (3, 2),
        "inst_logvar": (3, 2),
        "kl_chem": (3,),
        "kl_inst": (3,),
        "inst_logits": (3, 3),
        "adv_logits": (3, 3),
    }
    assert float(jnp.min(out["kl_chem"])) >= 0.0
    np.testing.assert_allclose(vib.gaussian_kl(jnp.zeros((1, 4)), jnp.zeros((1, 4))), [0.0])
    assert float(jnp.max(jnp.abs(out["z_chem"] - out["chem_mean"]))) > 0  # sampled in training
    bottleneck.eval()
    out = bottleneck(pooled)
    np.testing.assert_array_equal(out["z_chem"], out["chem_mean"])
    # The adversary's gradient reaches z_chem's encoder reversed.
    grad_adv = jax.grad(lambda p: bottleneck(p)["adv_logits"][:, 0].sum())(pooled)
    grad_cls = jax.grad(lambda p: bottleneck.adversary(bottleneck(p)["chem_mean"])[:, 0].sum())(
        pooled
    )
    np.testing.assert_allclose(grad_adv, -grad_cls, rtol=1e-5, atol=1e-6)


# --- heads ------------------------------------------------------------------------------------


def test_reconstruction_head_predicts_every_point_of_every_patch():
    recon = heads.ReconstructionHead(8, 6, 16, 4, rngs=nnx.Rngs(0))
    assert recon(_normal((2, 5, 8)), _normal((2, 6))).shape == (2, 20)


@pytest.mark.parametrize("patches", [3, 16])
def test_fno_maps_any_length_and_ignores_padded_patches(patches):
    head = fno.FNOTransferHead(8, 4, 5, 2, 4, rngs=nnx.Rngs(0))
    tokens = _normal((2, patches, 8))
    values = _normal((2, 4 * patches), seed=1)
    mask = jnp.ones((2, patches), bool).at[1, -1].set(False)
    run = nnx.jit(lambda m, t, v: m(t, mask, v, jnp.ones_like(v, bool)))
    out = run(head, tokens, values)
    assert out.shape == values.shape and out.dtype == jnp.float32
    changed = run(head, tokens.at[1, -1].set(9.0), values.at[1, -4:].set(9.0))
    np.testing.assert_allclose(changed[1, :-4], out[1, :-4], rtol=1e-5, atol=1e-5)
