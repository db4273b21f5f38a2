"""LoRA adapters and test-time training on the tiny model (CPU, seconds).

The export is a randomly initialised tiny model written through the project's export format, so
these tests check the mechanics of adaptation, not the quality of a pretrained model.
"""

import importlib

import jax
import numpy as np
import optax
from flax import nnx

from caltransfer_jax.methods.classical.pls import PLSRegressionCV
from caltransfer_jax.methods.model import fewshot, lora
from caltransfer_jax.methods.model.estimators import (
    ModelDIPLSSemiSupervised,
    ModelFrozen,
    ModelTTT,
    adaptable_model,
)
from caltransfer_jax.models.export import load_export
from caltransfer_jax.objectives.reconstruction import masked_mse
from caltransfer_jax.simulate import Simulator, SimulatorConfig
from caltransfer_jax.simulate.instruments import draw_jitter, make_instrument, measure

# nnx.LoRAParam subclasses nnx.Param: the base weights are the Params that are not adapters.
BASE = nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))


def _config(name: str):
    return importlib.import_module(f"configs.{name}")


def _batch(n=4, length=64):
    wn = np.linspace(4000.0, 9000.0, length, dtype=np.float32)
    values = np.random.default_rng(0).normal(size=(n, length)).astype(np.float32)
    return values, np.tile(wn, (n, 1)), np.ones((n, length), bool), np.zeros(n, np.int32)


def test_lora_moves_adapters_and_leaves_base_weights_bitwise_unchanged(tiny_export, tmp_path):
    model, _ = load_export(tiny_export)
    paths = lora.add_lora(model, r"transformer|backbone", rank=2, alpha=4.0)
    counts = lora.count_params(model)
    assert paths and 0 < counts["adapter"] < counts["base"]
    base = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, BASE)))
    before = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.LoRAParam)))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.LoRAParam)
    values, wn, valid, modality = _batch()
    hidden = np.zeros_like(valid)
    hidden[:, 8:24] = True

    def loss(m):
        out = m(values, wn, valid, modality, hidden, heads=("reconstruction",))
        return masked_mse(out["reconstruction"], values, hidden)

    for _ in range(3):
        grads = nnx.grad(loss, argnums=nnx.DiffState(0, nnx.LoRAParam))(model)
        optimizer.update(model, grads)
    after_base = nnx.to_pure_dict(nnx.state(model, BASE))
    for x, y in zip(jax.tree.leaves(base), jax.tree.leaves(after_base), strict=True):
        np.testing.assert_array_equal(x, np.asarray(y))
    moved = jax.tree.map(
        lambda x, y: not np.array_equal(x, np.asarray(y)),
        before,
        nnx.to_pure_dict(nnx.state(model, nnx.LoRAParam)),
    )
    assert all(jax.tree.leaves(moved))

    lora.save_adapters(
        tmp_path / "adapters",
        nnx.to_pure_dict(nnx.state(model, nnx.LoRAParam)),
        {"rank": 2, "alpha": 4.0, "paths": paths},
    )
    fresh, _ = load_export(tiny_export)
    lora.add_lora(fresh, r"transformer|backbone", rank=2, alpha=4.0, seed=1)
    assert lora.load_adapters(tmp_path / "adapters", fresh)["rank"] == 2
    for x, y in zip(
        jax.tree.leaves(nnx.state(model, nnx.LoRAParam)),
        jax.tree.leaves(nnx.state(fresh, nnx.LoRAParam)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _simulated_pair(n: int):
    """The same simulated NIR samples measured by two simulated instruments (a shift)."""
    sim = Simulator(SimulatorConfig(modality_weights=(1.0, 0.0, 0.0)))
    fine = sim.true_spectra([sim.sample(i) for i in range(n)])
    rng = np.random.default_rng(0)
    views = []
    for instrument_id in (0, 1):
        instrument = make_instrument(0, instrument_id, "NIR", 0)
        views.append(measure(instrument, fine, draw_jitter(instrument, rng, n)))
    return views, 1e7 / instrument.axis


def test_ttt_lowers_its_loss_and_the_error_under_a_simulated_shift(tiny_export):
    (master_raw, target_raw), wavenumber = _simulated_pair(64)
    # The property: a band area on the master instrument (a linear property of the sample).
    y = master_raw[:, 200:300].mean(1)
    fit, test = np.arange(48), np.arange(48, 64)
    settings = _config("adapt").model_config()
    settings.init = str(tiny_export)
    settings.ttt.update(steps=20, eval_every=5, patience=100)
    context = {"settings": settings.to_dict(), "wavenumber": wavenumber, "modality": "NIR"}
    ttt = ModelTTT(**context).fit(master_raw[fit], y[fit], X_target_unlabelled=target_raw[fit])
    frozen = ModelFrozen(**context).fit(master_raw[fit], y[fit])
    log = ttt.log_
    assert min(entry["criterion"] for entry in log[1:]) < log[0]["criterion"]

    def rmse(method):
        return np.sqrt(np.mean(np.square(method.predict(target_raw[test]) - y[test])))

    # Held-out target spectra (never seen by TTT): the adapted model predicts them better.
    assert rmse(ttt) < 0.5 * rmse(frozen), (rmse(ttt), rmse(frozen))


def test_fold_masks_hold_each_pair_out_once_and_never_the_padding():
    train, held = fewshot.fold_masks(k=7, rows=8, n_folds=5, seed=3)
    assert train.shape == held.shape == (6, 8)  # 5 folds + the member trained on all 7
    np.testing.assert_array_equal(held[:-1].sum(0), [1] * 7 + [0])
    np.testing.assert_array_equal(train[:-1] + held[:-1], np.tile([1] * 7 + [0], (5, 1)))
    np.testing.assert_array_equal(train[-1], [1] * 7 + [0])
    assert held[-1].sum() == 0
    # Fewer pairs than folds: leave-one-out.
    assert fewshot.fold_masks(k=3, rows=8, n_folds=5, seed=0)[0].shape == (4, 8)


def _few_shot_inputs(tiny_export, n=40, k=6):
    (master_raw, target_raw), wavenumber = _simulated_pair(n)
    y = master_raw[:, 200:300].mean(1)
    y = (y - y.mean()) / y.std()
    settings = _config("adapt").model_config()
    settings.init = str(tiny_export)
    settings.few_shot.update(steps=6, eval_every=2, n_folds=3)
    model, master_grid, target_grid = adaptable_model(settings, wavenumber, "NIR")
    pool, ids = np.arange(n - k), np.arange(n - k, n)
    features = model.features_of(model.initial, master_grid(master_raw[pool]))
    head = PLSRegressionCV(max_components=4, n_folds=3).fit(features, y[pool])
    inputs = (
        model,
        master_grid(master_raw[pool]),
        features,
        master_grid(master_raw[ids]),
        target_grid(target_raw[ids]),
    )
    return inputs, y[ids], (head.coef_, head.intercept_), settings.few_shot


def test_few_shot_keeps_the_step_its_cross_validation_prefers(tiny_export):
    inputs, y, head, settings = _few_shot_inputs(tiny_export)
    _, log, residuals = fewshot.few_shot(*inputs, y, head, settings)
    assert [e["step"] for e in log] == [0, 2, 4, 6]
    (chosen,) = [e for e in log if e["chosen"]]
    # The criterion is the mean squared held-out residual of the chosen step.
    assert residuals.shape == (6,) and np.isfinite(residuals).all()
    np.testing.assert_allclose(np.mean(np.square(residuals)), chosen["criterion"], rtol=1e-5)
    before = [e["criterion"] for e in log if e["step"] < chosen["step"]]
    after = [e["criterion"] for e in log if e["step"] > chosen["step"]]
    assert all(chosen["criterion"] < c for c in before)
    assert all(c >= chosen["criterion"] * (1 - settings.min_improvement) for c in after)


def test_few_shot_residuals_are_held_out(tiny_export):
    inputs, y, head, settings = _few_shot_inputs(tiny_export)
    settings.min_improvement = -np.inf  # every evaluation replaces the best: the last step is kept
    _, log, residuals = fewshot.few_shot(*inputs, y, head, settings)
    assert log[-1]["chosen"]
    # Changing one pair's label changes the training of every member but the one that held the
    # pair out, so that pair's prediction (residual + label) stays the same.
    moved = y.copy()
    moved[2] += 0.5
    _, log_moved, residuals_moved = fewshot.few_shot(*inputs, moved, head, settings)
    assert log_moved[-1]["chosen"]
    np.testing.assert_allclose(residuals_moved[2] + moved[2], residuals[2] + y[2], atol=1e-5)
    assert not np.allclose(residuals_moved[[0, 1, 3, 4, 5]], residuals[[0, 1, 3, 4, 5]])


def test_the_semi_supervised_feature_head_scores_held_out_residuals(tiny_export):
    (master_raw, target_raw), wavenumber = _simulated_pair(48)
    y = master_raw[:, 200:300].mean(1)
    y = (y - y.mean()) / y.std()
    settings = _config("adapt").model_config()
    settings.init = str(tiny_export)
    context = {"settings": settings.to_dict(), "wavenumber": wavenumber, "modality": "NIR"}
    pool, ids = np.arange(40), np.arange(40, 48)

    def scores(y_transfer):
        method = ModelDIPLSSemiSupervised(**context).fit(
            master_raw[pool],
            y[pool],
            X_target_unlabelled=target_raw[pool],
            X_master_transfer=master_raw[ids],
            X_target_transfer=target_raw[ids],
            y_transfer=y_transfer,
        )
        return method.conformity_scores_

    before = scores(y[ids])
    moved = y[ids].copy()
    moved[3] += 0.5
    after = scores(moved)
    assert before.shape == (8,) and np.isfinite(before).all()
    # Sample 3's prediction came from a head fitted without it, so only its own label moved it.
    predicted = [y[ids][3] + sign * before[3] for sign in (-1, 1)]
    assert min(abs(abs(moved[3] - p) - after[3]) for p in predicted) < 1e-6
    assert not np.allclose(np.delete(after, 3), np.delete(before, 3))
