"""End-to-end pretraining on the tiny config: train, resume after preemption, stop on NaN,
refuse another configuration, load the export.

Runs are subprocesses (`pretrain_runs`) sharing one compiled train step.
"""

import json

import jax
import numpy as np
import pytest
from pretrain_runs import (
    exported_params,
    hooked_command,
    main_command,
    ok,
    read_jsonl,
    reference_run,
    run,
    train_losses,
)

from caltransfer_jax.models import export
from caltransfer_jax.pretrain import checkpointing, train
from configs import pretrain as pretrain_config


def test_run_writes_metrics_checkpoints_and_export():
    reference = reference_run()
    records = read_jsonl(reference / "metrics.jsonl")
    assert sorted(train_losses(reference)) == [1, 2, 3, 4]
    last = [r for r in records if "train/loss" in r][-1]
    assert np.isfinite(last["train/loss"]) and last["perf/step_time_s"] > 0
    assert all(np.isfinite(v) for k, v in last.items() if k.startswith("train/"))
    evals = [r for r in records if "eval/msrp" in r]
    assert len(evals) == 1 and evals[0]["step"] == 4
    for key in ("eval/sinkhorn", "eval/adversary_accuracy", "eval/probe_r2", "eval/transfer_rmse"):
        assert np.isfinite(evals[0][key]), key
    assert list((reference / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((reference / "config.json").read_text())["total_steps"] == 4
    # Checkpoints: the latest two (keep = 2) of those saved every 2 steps and at the evaluation.
    steps = sorted(int(p.name) for p in (reference / "checkpoints").iterdir())
    assert steps == [2, 4]
    info = json.loads((reference / "export" / "export.json").read_text())
    assert info["step"] == 4 and info["format"] == export.EXPORT_FORMAT


def test_export_loads_into_a_spectral_model():
    model, config = export.load_export(reference_run() / "export")
    assert config.total_steps == 4
    model.eval()
    n = config.data.num_points
    axis = np.linspace(4000.0, 9000.0, n, dtype=np.float32)[None]
    forward = jax.jit(
        lambda x: model(x, axis, np.ones((1, n), bool), np.zeros(1, np.int32))["transfer"]
    )
    assert forward(np.sin(axis / 300.0)).shape == (1, n)
    assert set(exported_params(reference_run())) == {
        "embedding",
        "backbone",
        "moe",
        "transformer",
        "vib",
        "reconstruction_head",
        "transfer_head",
    }


def test_resume_after_preemption_repeats_the_uninterrupted_run(tmp_path):
    first = ok(run(hooked_command(tmp_path, "--config.eval_every=4", sigterm_at=2)))
    assert "stop requested: saved step 2" in first
    assert not (tmp_path / "export").exists()
    second = ok(run(main_command(tmp_path, "--config.eval_every=4")))
    assert "resumed from" in second and "at step 2" in second
    assert sorted(train_losses(tmp_path)) == [1, 2, 3, 4]
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        exported_params(tmp_path),
        exported_params(reference_run()),
    )
    evals = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "eval/msrp" in r]
    expected = [r for r in read_jsonl(reference_run() / "metrics.jsonl") if "eval/msrp" in r]
    assert evals[0]["eval/msrp"] == pytest.approx(expected[0]["eval/msrp"], rel=1e-5)


def test_nonfinite_loss_stops_naming_step_and_term(tmp_path):
    result = run(hooked_command(tmp_path, "--config.checkpoint.every_steps=1", nan_at=3))
    assert result.returncode != 0
    # NaN master spectra poison beer_lambert (first in TERMS order) and transfer, nothing else.
    assert "NonFiniteLossError: non-finite beer_lambert in step 3" in result.stdout
    assert "the last good checkpoint is step 2" in result.stdout
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
    assert steps == [1, 2]
    assert not (tmp_path / "export").exists()


def test_other_config_in_the_workdir_is_refused():
    reference = reference_run()
    config = pretrain_config.get_config("tiny")
    config.total_steps, config.log_every, config.eval_every = 4, 1, 4
    config.objectives.weights.msrp = 0.5
    before = (reference / "config.json").read_text()
    with pytest.raises(
        checkpointing.ConfigMismatchError, match=r"objectives\.weights\.msrp: 1\.0 → 0\.5"
    ):
        train.train_and_evaluate(config, reference)
    assert (reference / "config.json").read_text() == before
    # Operational fields (cadence, devices, evaluation) may change on resume.
    config.objectives.weights.msrp = 1.0
    config.log_every, config.checkpoint.every_steps = 2, 7
    assert checkpointing.check_workdir_config(reference, config)
