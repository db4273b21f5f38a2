"""Checkpoints: a killed run resumes from its last committed checkpoint; retention, the config
guard and the export round trip."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from pretrain_runs import (
    exported_params,
    hooked_command,
    main_command,
    ok,
    reference_run,
    run,
    train_losses,
)

from caltransfer_jax.models import export
from caltransfer_jax.pretrain import checkpointing


def test_kill9_then_restart_resumes_from_the_last_checkpoint(tmp_path):
    # SIGKILL arrives before step 4, right after step 3's checkpoint started writing
    # (asynchronously): that one may or may not be committed, earlier ones are.
    killed = run(hooked_command(tmp_path, "--config.checkpoint.every_steps=1", kill_at=4))
    assert killed.returncode == -9
    committed = sorted(
        int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert committed and committed[-1] in (2, 3)
    restarted = ok(run(main_command(tmp_path, "--config.checkpoint.every_steps=1")))
    assert f"resumed from {tmp_path / 'checkpoints'} at step {committed[-1]}" in restarted
    assert not list((tmp_path / "checkpoints").glob("*tmp*"))  # leftovers cleaned up
    assert sorted(train_losses(tmp_path)) == [1, 2, 3, 4]
    # The same parameters as a run never interrupted: nothing read back was corrupt.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        exported_params(tmp_path),
        exported_params(reference_run()),
    )


def _state(value: float) -> dict:
    return {"w": jnp.full((3, 2), value), "layers": {0: {"b": jnp.arange(4.0) * value}}}


def test_checkpointer_keeps_latest_and_best(tmp_path):
    options = ml_collections.ConfigDict({"keep": 2, "async_save": True})
    checkpointer = checkpointing.Checkpointer(tmp_path / "ckpt", options)
    errors = {2: 0.5, 4: 0.2, 6: 0.9}  # evaluated steps; 4 is the best
    for step in range(1, 8):
        metric = {checkpointing.BEST_METRIC: errors[step]} if step in errors else None
        checkpointer.save(step, _state(step), {"step": step}, metric)
    checkpointer.wait()
    assert sorted(checkpointer.manager.all_steps()) == [4, 6, 7]
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), _state(0)
    )
    state, data = checkpointer.restore(4, abstract)
    np.testing.assert_array_equal(state["layers"][0]["b"], np.arange(4.0) * 4)
    assert data == {"step": 4}
    checkpointer.close()
    # A half-written step (as left by a crash) is not a checkpoint and is cleaned up.
    (tmp_path / "ckpt" / "8.orbax-checkpoint-tmp").mkdir()
    reopened = checkpointing.Checkpointer(tmp_path / "ckpt", options)
    assert reopened.latest_step() == 7
    reopened.close()


def test_config_guard_names_the_differences(tmp_path):
    config = ml_collections.ConfigDict({"a": 1, "log_every": 5, "b": {"c": (1, 2)}})
    assert not checkpointing.check_workdir_config(tmp_path, config)
    checkpointing.write_config(tmp_path, config)
    assert checkpointing.check_workdir_config(tmp_path, config)
    config.log_every = 7  # operational: allowed
    assert checkpointing.check_workdir_config(tmp_path, config)
    config.b.c = (1, 3)
    with pytest.raises(checkpointing.ConfigMismatchError, match=r"b\.c: \[1, 2\] → \[1, 3\]"):
        checkpointing.check_workdir_config(tmp_path, config)


def test_export_metadata_and_loading():
    directory = reference_run() / "export"
    info = json.loads((directory / "export.json").read_text())
    assert set(info) >= {"format", "contents", "step", "metrics"}
    model, config = export.load_export(directory)
    assert config.model.d_model == model.embedding.patch_proj.out_features
