"""Commands guard their workdirs and configurations before any work: a workdir owned by another
kind or configuration, an unwritable one, config typos and stray arguments are refused with
messages naming the problem, and nothing is written."""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from caltransfer_jax import workdir as workdir_lib
from caltransfer_jax.benchmark import runner
from caltransfer_jax.benchmark.protocol import PairedData
from caltransfer_jax.data.spectra import Spectra, SpectraError, paired
from configs import benchmark as benchmark_config

REPO = pathlib.Path(__file__).parents[1]


def _quick(init=None, **fields):
    config = benchmark_config.get_config("quick")
    config.update(
        {"methods": ("mean_recentring",), "ks": (0,), "n_splits": 1, "workers": 1, **fields}
    )
    if init is not None:
        config.model.init = init
    return config


def _command(*args):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def test_benchmark_refuses_a_pretraining_workdir_and_keeps_its_files(tmp_path):
    workdir_lib.claim(tmp_path, "pretrain", None)
    (tmp_path / "config.json").write_text('{"seed": 0}')
    with pytest.raises(workdir_lib.WorkdirError, match="belongs to a pretrain run"):
        runner.run(_quick(), tmp_path)
    assert (tmp_path / "config.json").read_text() == '{"seed": 0}'
    assert sorted(os.listdir(tmp_path)) == ["caltransfer_workdir.json", "config.json"]


def test_benchmark_reruns_its_own_config_and_refuses_another(tmp_path):
    runner.run(_quick(), tmp_path)
    runner.run(_quick(workers=2), tmp_path)  # operational: the same benchmark
    with pytest.raises(workdir_lib.WorkdirError, match=r"another configuration \(seed: 0 → 1"):
        runner.run(_quick(seed=1), tmp_path)


def test_unmarked_non_empty_folders_are_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(workdir_lib.WorkdirError, match="not empty and no command of this project"):
        runner.run(_quick(), tmp_path)
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_a_claim_in_progress_is_not_taken_for_a_strangers_files(tmp_path):
    # Processes of one cluster job claim at the same moment: one may see the other's write check
    # or half-written mark, never its finished files.
    (tmp_path / ".write_checkab12").write_text("")
    (tmp_path / (workdir_lib.MARKER + ".tmp")).write_text("{")
    workdir_lib.claim(tmp_path, "pretrain", None, write=False)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(workdir_lib.WorkdirError, match="not empty and no command"):
        workdir_lib.claim(tmp_path, "benchmark", {}, write=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_workdir_is_refused_before_the_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(workdir_lib.WorkdirError, match="cannot write here"):
            workdir_lib.claim(locked, "benchmark", {})
    finally:
        locked.chmod(0o700)


def test_a_file_in_place_of_the_workdir_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(workdir_lib.WorkdirError, match="is a file, not a directory"):
        workdir_lib.claim(tmp_path / "f", "adapt", {})


@pytest.mark.parametrize(
    "field, message",
    [
        ({"n_splits": 0}, "n_splits = 0: must be at least 1"),
        ({"methods": ("pdss",)}, r"methods: unknown method\(s\) \['pdss'\]"),
        ({"preprocessing": "snvv"}, "preprocessing: unknown preprocessing step 'snvv'"),
        ({"ks": (0, -1)}, "ks = .*k ≥ 0"),
        ({"test_fraction": 1.5}, "test_fraction = 1.5: must be between 0 and 1"),
        ({"dataset": ""}, "dataset: name a data set"),
        ({"methods": ("model_frozen",), "init": ""}, "model.init: model methods need"),
        ({"n_draws": 0, "kennard_stone": False, "ks": (0, 5)}, "leave no transfer samples"),
    ],
)
def test_benchmark_config_bounds(tmp_path, field, message):
    with pytest.raises(ValueError, match=message):
        runner.run(_quick(**field), tmp_path / "w")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("caltransfer_jax.adapt", "--config=configs/adapt.py:lora", "--config.mode=lorra"),
            r"--config.mode = 'lorra': must be one of \['lora', 'ttt'\]",
        ),
        (
            ("caltransfer_jax.benchmark", "--config=configs/benchmark.py:quick", "extra"),
            r"unexpected arguments: \['extra'\]",
        ),
        (
            ("caltransfer_jax.main", "--config=configs/pretrain.py:tiny", "--config.total_steps=0"),
            "--config.total_steps = 0 is out of range",
        ),
        (
            (
                "caltransfer_jax.benchmark",
                "--config=configs/benchmark.py:quick",
                "--config.n_splits=0",
            ),
            "--config.n_splits = 0: must be at least 1",
        ),
    ],
)
def test_commands_refuse_typos_and_stray_arguments_at_parse_time(tmp_path, args, message):
    result = _command(*args, f"--workdir={tmp_path / 'w'}")
    assert result.returncode != 0
    assert re.search(message, result.stderr), result.stderr[-2000:]
    assert not (tmp_path / "w").exists()


def test_repeated_sample_ids_are_never_paired_silently():
    def spectra(ids):
        return Spectra.from_axis(
            np.ones((len(ids), 3)), [1100.0, 1102, 1104], "nm", modality="NIR", instrument="a",
            sample_id=ids, origin="a.csv",
        )  # fmt: skip

    with pytest.raises(SpectraError, match=r"a.csv: sample id 'x' appears 2 times"):
        paired(spectra(["x", "y", "x"]), spectra(["x", "y"]))
    with pytest.raises(SpectraError, match=r"a.csv: sample id 'x' appears 2 times"):
        PairedData.from_parts(spectra(["x", "x"]), spectra(["x", "y"]))


def test_a_workdir_that_cannot_be_created_is_refused_before_the_work(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(workdir_lib.WorkdirError, match=r"file/run: cannot write here"):
        runner.run(_quick(), tmp_path / "file" / "run")


@pytest.mark.parametrize(
    "pairs, message",
    [
        (("m5-mp6",), r"pair 'm5-mp6' is not of the form 'source->target'"),
        (("m5->mp7",), r"pair 'm5->mp7': unknown instrument\(s\) \['mp7'\]"),
    ],
)
def test_bad_pair_strings_are_named(tmp_path, pairs, message):
    with pytest.raises(ValueError, match=message):
        runner.run(_quick(pairs=pairs), tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_a_method_that_fails_is_reported_and_the_benchmark_goes_on(tmp_path, monkeypatch):
    import json

    from caltransfer_jax.methods.classical import standardisation

    def fail(self, X, y, **transfer):
        raise ValueError("DS: a synthetic failure")

    # The workers are forked, so they inherit the patched method.
    monkeypatch.setattr(standardisation.DirectStandardisation, "fit", fail)
    runner.run(_quick(methods=("mean_recentring", "ds"), ks=(0, 5), n_draws=1), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} >= {"mean_recentring", "master_on_master"}
    assert "ds" not in {r["method"] for r in records}
    failures = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 2 and {f["k"] for f in failures} == {5}  # a random draw and KS
    assert all(f["method"] == "ds" and f["error"] == "DS: a synthetic failure" for f in failures)
    summary = (tmp_path / "summary.md").read_text()
    assert "**Failed fits**" in summary and "`ds` 2 (first: DS: a synthetic failure)" in summary
