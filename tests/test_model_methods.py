"""The benchmark's foundation-model rows under the transfer protocol, checked from its output.

A randomly initialised tiny export stands in for a pretrained one: this checks the protocol and
the plumbing (spawned workers, records, transfer sets), not the model's accuracy.
"""

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).parents[1]


def _benchmark(workdir, *overrides) -> list[dict]:
    """The quick benchmark with `overrides`, run as a command; its records."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "caltransfer_jax.benchmark",
            "--config=configs/benchmark.py:quick",
            "--config.n_splits=1",
            "--config.n_draws=1",
            "--config.workers=1",
            *overrides,
            f"--workdir={workdir}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def model_run(tmp_path_factory, tiny_export):
    workdir = tmp_path_factory.mktemp("bench")
    records = _benchmark(
        workdir,
        "--config.methods=('mean_recentring','model_frozen','model_ttt','model_lora',"
        "'model_dipls','model_emsc_dipls','model_dipls_semisupervised')",
        f"--config.model.init={tiny_export}",
        "--config.ks=(0,5)",
        "--config.model.ttt.steps=10",
        "--config.model.few_shot.steps=5",
    )
    splits = json.loads((workdir / "splits.json").read_text())
    sets = [json.loads(line) for line in (workdir / "transfer_sets.jsonl").read_text().splitlines()]
    return records, splits, sets


def test_model_rows_exist_with_every_field(model_run):
    records, _, _ = model_run
    model = [r for r in records if r["family"] == "model"]
    assert {(r["method"], r["k"]) for r in model} == {
        ("model_frozen", 0),
        ("model_ttt", 0),
        ("model_lora", 5),
        ("model_dipls", 0),
        ("model_emsc_dipls", 0),
        ("model_dipls_semisupervised", 5),
    }
    for r in model:
        for field in ("r2", "rmsep", "coverage", "interval_half_width", "fit_seconds"):
            assert field in r


def test_model_rows_never_fit_on_test_samples(model_run):
    records, splits, sets = model_run
    by_split = {s["index"]: s for s in splits}
    index = {(t["source"], t["split"], t["k"], t["selection"], t["draw"]): t for t in sets}
    checked = 0
    for r in records:
        if r["family"] != "model" or r["k"] == 0:
            continue
        split = by_split[r["split"]]
        tset = index[(r["source"], r["split"], r["k"], r["selection"], r["draw"])]
        assert len(tset["ids"]) == r["k"]
        assert set(tset["ids"]) <= set(split["pool"])
        assert not set(tset["ids"]) & set(split["test"])
        checked += 1
    assert checked == 4  # two few-shot model rows × (Kennard–Stone and one random draw)
    # The unlabelled target spectra a zero-shot row adapts to are the pool's, never the test's.
    for s in splits:
        assert not set(s["pool"]) & set(s["test"])


def test_few_shot_model_intervals_calibrate_on_target_transfer_samples(model_run):
    records, _, _ = model_run
    lora = [r for r in records if r["method"] == "model_lora"]
    frozen = [r for r in records if r["method"] == "model_frozen"]
    assert lora and frozen
    # k = 5 target scores cannot give a 90 % split-conformal quantile: the interval is unbounded,
    # where the master's 45 CV residuals give the frozen row a finite one.
    assert all(r["interval_half_width"] == float("inf") for r in lora)
    assert all(0 < r["interval_half_width"] < float("inf") for r in frozen)


def test_auto_model_chooses_among_classical_and_model_rows_with_cv_plus_intervals(
    tmp_path, tiny_export
):
    from caltransfer_jax.methods.auto import MODEL_CANDIDATES

    records = _benchmark(
        tmp_path,
        "--config.methods=('dipls_semisupervised','model_dipls_semisupervised','model_lora',"
        "'auto_model')",
        f"--config.model.init={tiny_export}",
        "--config.ks=(10,)",
        "--config.kennard_stone=False",
        "--config.intervals=cv+",
        "--config.model.few_shot.steps=3",
    )
    rows = {r["method"]: r for r in records if r["k"] == 10}
    assert set(rows) == {
        "dipls_semisupervised",
        "model_dipls_semisupervised",
        "model_lora",
        "auto_model",
    }
    assert rows["auto_model"]["family"] == "model"
    # The mean of the better half of the candidates (those cross-validated), named in the record.
    members = rows["auto_model"]["chosen"].removeprefix("mean of ").split(", ")
    assert set(members) <= set(MODEL_CANDIDATES) and len(members) == len(MODEL_CANDIDATES) // 2
    # Every few-shot row, the model's included, gets CV+ intervals from refits without each fold
    # of its 10 transfer samples: finite (10 scores suffice at 90 %).
    for r in rows.values():
        assert r["interval"] == "cv+"
        assert 0 < r["interval_half_width"] < float("inf")


def test_auto_model_refuses_instruments_on_their_own_axes():
    import numpy as np

    from caltransfer_jax.methods.registry import METHODS

    axis = np.linspace(4000.0, 9000.0, 50)
    context = {"settings": {}, "wavenumber": axis, "modality": "NIR", "seed": 0}
    METHODS["auto_model"].build(None, None, context | {"target_wavenumber": axis.copy()})
    with pytest.raises(ValueError, match="auto_model .* one axis"):
        METHODS["auto_model"].build(None, None, context | {"target_wavenumber": axis[:40]})
