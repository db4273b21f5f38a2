"""Checksum manifests: every kept checkpoint step and every export gets one; a corrupt step is
reported, moved aside and the run resumes from the newest intact step; a corrupt export or
config.json is refused naming the file."""

import json
import logging
import pathlib
import re
import shutil

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

OPTIONS = ml_collections.ConfigDict({"keep": 2, "async_save": True})


def _largest_file(directory: pathlib.Path) -> pathlib.Path:
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _flip_byte(path: pathlib.Path) -> None:
    """Flips every bit of the byte in the middle of the file (size and name unchanged)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _kept_steps(directory: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _state(value: float) -> dict:
    return {"w": jnp.full((64, 32), value), "b": jnp.arange(4.0) * value}


def _abstract() -> dict:
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), _state(0.0)
    )


def _saved(directory: pathlib.Path, steps) -> None:
    checkpointer = checkpointing.Checkpointer(directory, OPTIONS)
    for step in steps:
        checkpointer.save(step, _state(step), {"step": step}, None)
    checkpointer.close()


def test_corrupt_step_is_moved_aside_and_the_previous_one_restored(tmp_path, caplog):
    directory = tmp_path / "ckpt"
    _saved(directory, range(1, 5))
    # A manifest for every kept step (the last one written by close), each matching its files.
    assert _kept_steps(directory) == [3, 4]
    for step in (3, 4):
        assert export.check_manifest(directory / str(step)) == []
    flipped = _largest_file(directory / "4" / "state")
    _flip_byte(flipped)

    checkpointer = checkpointing.Checkpointer(directory, OPTIONS)
    with caplog.at_level(logging.WARNING):
        step, state, data = checkpointer.restore_latest(_abstract())
    assert step == 3 and data == {"step": 3}
    np.testing.assert_array_equal(state["w"], np.full((64, 32), 3.0))
    assert f"checkpoint step 4 in {directory} is corrupt: {flipped}: sha256" in caplog.text
    moved = directory / checkpointing.CORRUPT_DIR / "4"
    assert (moved / flipped.relative_to(directory / "4")).is_file()
    assert checkpointer.manager.all_steps() == [3]
    # Training goes on: step 4 is written again, with its manifest.
    checkpointer.save(4, _state(4.0), {"step": 4}, None)
    checkpointer.close()
    assert export.check_manifest(directory / "4") == []


def test_unverified_step_is_restored_and_unreadable_one_skipped(tmp_path, caplog):
    directory = tmp_path / "ckpt"
    _saved(directory, range(1, 4))
    # Step 3 as left by a run killed before its manifest: restored, with a warning.
    (directory / "3" / export.MANIFEST).unlink()
    checkpointer = checkpointing.Checkpointer(directory, OPTIONS)
    with caplog.at_level(logging.WARNING):
        step, _, _ = checkpointer.restore_latest(_abstract())
    assert step == 3 and "restoring it unverified" in caplog.text
    checkpointer.close()
    # Without a manifest, a step orbax cannot read counts as corrupt.
    (directory / "3" / "data" / "metadata").write_bytes(b"\x00garbage")
    checkpointer = checkpointing.Checkpointer(directory, OPTIONS)
    step, _, data = checkpointer.restore_latest(_abstract())
    assert step == 2 and data == {"step": 2}
    assert (directory / checkpointing.CORRUPT_DIR / "3").is_dir()
    checkpointer.close()


def test_no_intact_step_raises_naming_the_directory(tmp_path):
    directory = tmp_path / "ckpt"
    checkpointer = checkpointing.Checkpointer(directory, OPTIONS)
    assert checkpointer.restore_latest(_abstract()) is None  # no checkpoint: a fresh start
    checkpointer.close()
    _saved(directory, range(1, 3))
    for step in (1, 2):
        _flip_byte(_largest_file(directory / str(step) / "state"))
    checkpointer = checkpointing.Checkpointer(directory, OPTIONS)
    with pytest.raises(
        checkpointing.CorruptCheckpointError,
        match=re.escape(f"no intact checkpoint in {directory}"),
    ):
        checkpointer.restore_latest(_abstract())
    checkpointer.close()
    assert _kept_steps(directory) == [1, 2]  # nothing moved: the next attempt fails the same way


def test_flipped_byte_in_the_latest_step_resumes_from_the_previous_one(tmp_path):
    flags = ("--config.checkpoint.every_steps=1",)
    ok(run(hooked_command(tmp_path, *flags, sigterm_at=3)))
    checkpoints = tmp_path / "checkpoints"
    assert _kept_steps(checkpoints) == [2, 3]
    assert all(export.check_manifest(checkpoints / s) == [] for s in ("2", "3"))
    flipped = _largest_file(checkpoints / "3" / "state")
    _flip_byte(flipped)

    output = ok(run(main_command(tmp_path, *flags)))
    assert f"checkpoint step 3 in {checkpoints} is corrupt: {flipped}: sha256" in output
    assert f"resumed from {checkpoints} at step 2" in output
    assert (
        checkpoints / checkpointing.CORRUPT_DIR / "3" / flipped.relative_to(checkpoints / "3")
    ).is_file()
    assert sorted(train_losses(tmp_path)) == [1, 2, 3, 4]
    # Every kept step of the finished run has a manifest that matches, as does the export.
    assert _kept_steps(checkpoints) == [3, 4]
    assert all(export.check_manifest(checkpoints / s) == [] for s in ("3", "4"))
    assert export.check_manifest(tmp_path / "export") == []
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        exported_params(tmp_path),
        exported_params(reference_run()),
    )


@pytest.fixture
def export_copy(tiny_export, tmp_path) -> pathlib.Path:
    directory = tmp_path / "export"
    shutil.copytree(tiny_export, directory)
    return directory


def test_export_has_a_manifest_and_loads(export_copy):
    files = json.loads((export_copy / export.MANIFEST).read_text())["files"]
    assert {"config.json", "export.json"} <= set(files)
    assert any(name.startswith("params/") for name in files)
    export.load_export(export_copy)


def test_corrupt_export_file_is_named(export_copy):
    flipped = _largest_file(export_copy / "params")
    _flip_byte(flipped)
    with pytest.raises(ValueError, match=f"corrupt export .*{re.escape(str(flipped))}: sha256"):
        export.load_export(export_copy)
    flipped.unlink()
    with pytest.raises(ValueError, match=re.escape(f"{flipped}: missing")):
        export.load_export(export_copy)


def test_corrupt_or_missing_config_json_is_named(export_copy):
    config = export_copy / "config.json"
    config.write_text(config.read_text()[:-20])  # truncated
    with pytest.raises(ValueError, match=re.escape(f"{config}: sha256")):
        export.load_export(export_copy)
    # Without the manifest (an export from before it): the JSON error names the file.
    (export_copy / export.MANIFEST).unlink()
    with pytest.raises(ValueError, match=re.escape(f"{config} is corrupt (JSONDecodeError")):
        export.load_export(export_copy)
    config.unlink()
    with pytest.raises(ValueError, match=re.escape(f"{config} is missing")):
        export.load_export(export_copy)
