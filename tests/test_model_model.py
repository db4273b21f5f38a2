"""The assembled model: outputs, leak-free masking, padding, gradients to every parameter, config."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from caltransfer_jax.models import HEADS, SpectralModel, build_model
from configs import model as model_config

LENGTH = 64  # tiny: 8 patches of 8 points → 10 tokens
HEAD_OUTPUTS = {
    "reconstruction": "reconstruction",
    "transfer": "transfer",
}


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(scope="module")
def config():
    return model_config.get_config("tiny")


@pytest.fixture(scope="module")
def model(config):
    return build_model(config, seed=0)


@pytest.fixture(scope="module")
def batch(config):
    rng = np.random.default_rng(0)
    valid = np.ones((3, LENGTH), bool)
    valid[1, -12:] = False  # a shorter spectrum: one and a half patches of padding
    hidden = np.zeros((3, LENGTH), bool)
    hidden[:, 20:35] = True
    hidden[2, 3:9] = True
    return {
        "values": jnp.asarray(rng.normal(size=(3, LENGTH)), jnp.float32),
        "wavenumber": jnp.asarray(np.linspace(4000, 9000, LENGTH)[None].repeat(3, 0), jnp.float32),
        "valid": jnp.asarray(valid),
        "modality": jnp.array([0, 1, 2]),
        "hidden": jnp.asarray(hidden & valid),
        "instrument": jnp.array([0, 1, 3]),
    }


def _call(model, batch, values=None):
    return model(
        batch["values"] if values is None else values,
        batch["wavenumber"],
        batch["valid"],
        batch["modality"],
        batch["hidden"],
    )


def _all_heads_loss(model, batch):
    """One loss per head and auxiliary output (what the objectives will combine)."""
    out = _call(model, batch)
    hidden = batch["hidden"].astype(jnp.float32)
    valid = batch["valid"].astype(jnp.float32)
    recon = jnp.sum(hidden * (out["reconstruction"] - batch["values"]) ** 2) / hidden.sum()
    transfer = jnp.sum(valid * (out["transfer"] - 0.5 * batch["values"]) ** 2) / valid.sum()
    ce = optax.softmax_cross_entropy_with_integer_labels
    return (
        recon
        + transfer
        + jnp.mean(out["kl_chem"] + out["kl_inst"])
        + ce(out["inst_logits"], batch["instrument"]).mean()
        + ce(out["adv_logits"], batch["instrument"]).mean()
        + out["moe_balance_loss"]
    )


def test_outputs_shapes_and_dtypes(model, config, batch):
    model.eval()
    out = nnx.jit(_call)(model, batch)
    b, tokens, d = 3, LENGTH // config.embedding.patch_size + 2, config.d_model
    c, i, k = config.vib.z_chem, config.vib.z_inst, config.vib.num_instruments
    expected = {
        "tokens": (b, tokens, d),
        "token_mask": (b, tokens),
        "pooled": (b, 2 * d),
        "moe_balance_loss": (),
        "z_chem": (b, c),
        "z_inst": (b, i),
        "chem_mean": (b, c),
        "chem_logvar": (b, c),
        "inst_mean": (b, i),
        "inst_logvar": (b, i),
        "kl_chem": (b,),
        "kl_inst": (b,),
        "inst_logits": (b, k),
        "adv_logits": (b, k),
        "reconstruction": (b, LENGTH),
        "transfer": (b, LENGTH),
    }
    assert {key: value.shape for key, value in out.items()} == expected
    for key, value in out.items():
        assert value.dtype == (jnp.bool_ if key == "token_mask" else jnp.float32), key
        assert bool(jnp.all(jnp.isfinite(value))), key
    assert out["token_mask"][1].tolist() == [True] * 9 + [False]  # 1.5 patches padded → 1 fully


def test_hidden_points_cannot_influence_the_encoder_or_any_head(model, batch):
    """d(every output)/d(hidden or padded input value) is exactly 0 — no leak through any path."""
    model.train()  # sampling and dropout on: the property must hold in training

    def total(model, values):
        out = _call(model, batch, values)
        return sum(jnp.sum(jnp.sin(v)) for v in out.values() if v.dtype == jnp.float32)

    grad_of_everything = nnx.jit(nnx.grad(total, argnums=1))

    grad = grad_of_everything(model, batch["values"])
    unseen = batch["hidden"] | ~batch["valid"]
    assert bool(jnp.all(grad[unseen] == 0.0))
    assert float(jnp.min(jnp.abs(grad[~unseen]))) > 0.0


def test_padding_does_not_change_valid_outputs(model, batch):
    model.eval()
    run = nnx.jit(_call)
    out = run(model, batch)
    garbage = batch["values"].at[1, -12:].set(1e3)
    changed = run(model, batch, garbage)
    for key in ("pooled", "z_chem", "z_inst", "inst_logits", "adv_logits"):
        np.testing.assert_allclose(changed[key], out[key], rtol=1e-4, atol=1e-4, err_msg=key)
    for key in ("reconstruction", "transfer"):
        np.testing.assert_allclose(changed[key][1, :-12], out[key][1, :-12], rtol=1e-4, atol=1e-4)


def test_training_reaches_every_parameter_and_lowers_the_loss(model, batch):
    """Every parameter gets a non-zero gradient from the heads; adamw steps lower the loss."""
    model = nnx.clone(model)
    model.eval()  # deterministic, so successive losses are comparable
    optimizer = nnx.Optimizer(model, optax.adamw(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(_all_heads_loss)(model, batch)
        optimizer.update(model, grads)
        return loss, grads

    loss, grads = step(model, optimizer)
    flat = nnx.to_flat_state(grads)
    dead = [".".join(map(str, path)) for path, g in flat if not bool(jnp.any(g[...] != 0))]
    assert not dead, f"parameters without gradient: {dead}"
    assert len(flat) == len(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    losses = [float(loss)] + [float(step(model, optimizer)[0]) for _ in range(6)]
    assert losses[-1] < losses[0]


def test_heads_can_be_selected(model, batch):
    model.eval()
    run = nnx.jit(
        lambda m, heads: m(
            batch["values"], batch["wavenumber"], batch["valid"], batch["modality"], heads=heads
        ),
        static_argnums=1,
    )
    assert set(HEAD_OUTPUTS) == set(HEADS)
    assert not set(HEAD_OUTPUTS.values()) & set(run(model, ()))
    assert set(HEAD_OUTPUTS.values()) & set(run(model, ("transfer",))) == {"transfer"}
    with pytest.raises(ValueError, match="unknown heads"):
        model(batch["values"], batch["wavenumber"], batch["valid"], batch["modality"], heads=["x"])


class _Recorder:
    """Wraps a ConfigDict and records which leaf fields are read."""

    def __init__(self, config, seen, prefix=""):
        self._config, self._seen, self._prefix = config, seen, prefix

    def _wrap(self, name, value):
        if isinstance(value, ml_collections.ConfigDict):
            return _Recorder(value, self._seen, f"{self._prefix}{name}.")
        self._seen.add(self._prefix + name)
        return value

    def __getattr__(self, name):
        return self._wrap(name, self._config[name])

    def get(self, name, default=None):
        return self._wrap(name, self._config[name]) if name in self._config else default


def _leaves(config, prefix=""):
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key


@pytest.mark.parametrize("variant", ["tiny", "default", "default,kan"])
def test_every_config_field_is_used(variant):
    config = model_config.get_config(variant)
    seen = set()
    nnx.eval_shape(lambda: SpectralModel(_Recorder(config, seen), rngs=nnx.Rngs(0)))
    assert set(_leaves(config)) - seen == set()


def test_default_parameter_count():
    model = nnx.eval_shape(lambda: build_model(model_config.get_config("default")))
    params = nnx.state(model, nnx.Param)
    counts = {name: sum(x.size for x in jax.tree.leaves(sub)) for name, sub in params.items()}
    assert counts == {
        "embedding": 166_656,
        "backbone": 1_931_776,
        "moe": 1_053_184,
        "transformer": 1_580_032,
        "vib": 211_488,
        "reconstruction_head": 189_712,
        "transfer_head": 1_094_096,
    }
    assert 6.0e6 < sum(counts.values()) < 6.6e6  # seed scale (the seed had 6.46 M)


def test_config_variants():
    kan = nnx.eval_shape(lambda: build_model(model_config.get_config("tiny,kan")))
    assert kan.moe.use_kan
    with pytest.raises(ValueError, match="unknown model config"):
        model_config.get_config("huge")
    with pytest.raises(ValueError, match="unknown model config"):
        model_config.get_config("tiny,fast")
