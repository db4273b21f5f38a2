"""The benchmark command end to end on the `quick` variant, and its protocol checked from output.

Every assertion here reads only what the command wrote, so it would catch a runner that fitted
on test samples, ran a label-needing method at k = 0, or lost records.
"""

import json
import pathlib
import subprocess
import sys

import pytest

from caltransfer_jax.benchmark.protocol import Split, check_no_leak
from caltransfer_jax.methods import registry as methods

REPO = pathlib.Path(__file__).parents[1]
FIELDS = (
    "dataset source target property family method k selection split draw "
    "r2 rmsep rpd bias slope coverage"
).split()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bench")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "caltransfer_jax.benchmark",
            "--config=configs/benchmark.py:quick",
            f"--workdir={workdir}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    records = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
    splits = json.loads((workdir / "splits.json").read_text())
    sets = [json.loads(line) for line in (workdir / "transfer_sets.jsonl").read_text().splitlines()]
    return workdir, records, splits, sets


def test_outputs_exist(quick_run):
    workdir, records, _, _ = quick_run
    assert (workdir / "summary.md").read_text().startswith("# Transfer benchmark")
    assert (workdir / "plots" / "r2_vs_k_moisture.png").stat().st_size > 1000
    assert (workdir / "plots" / "rmsep_vs_k_moisture.png").stat().st_size > 1000
    assert (workdir / "plots" / "predicted_vs_reference_k10.png").stat().st_size > 1000
    for r in records:
        missing = [f for f in FIELDS if f not in r]
        assert not missing, missing


def test_no_test_sample_is_used_for_fitting_or_selection(quick_run):
    _, records, splits, sets = quick_run
    by_split = {s["index"]: s for s in splits}
    for s in splits:
        assert not set(s["pool"]) & set(s["test"])
        assert len(set(s["pool"]) | set(s["test"])) == 80  # corn: every sample, once
    index = {(t["source"], t["split"], t["k"], t["selection"], t["draw"]): t for t in sets}
    checked = 0
    for r in records:
        split = by_split[r["split"]]
        if r["k"] == 0 or r["family"] == "reference":
            continue
        tset = index[(r["source"], r["split"], r["k"], r["selection"], r["draw"])]
        assert len(tset["ids"]) == r["k"]
        assert set(tset["ids"]) <= set(split["pool"])
        assert not set(tset["ids"]) & set(split["test"])
        checked += 1
    assert checked > 0


def test_records_follow_the_protocol(quick_run):
    _, records, splits, _ = quick_run
    for r in records:
        if r["k"] == 0:
            # Only zero-shot methods and label-free references run without transfer samples.
            assert r["method"] in methods.MASTER_ON_MASTER or methods.METHODS[r["method"]].zero_shot
        if r["method"] == methods.FULL_RECALIBRATION:
            assert r["k"] == len(splits[r["split"]]["pool"])
        assert r["n_test"] == len(splits[r["split"]]["test"])
    # Every (k > 0, method) has the Kennard–Stone set and the configured random draws.
    counts = {}
    for r in records:
        if r["k"] > 0 and r["family"] == "classical":
            key = (r["method"], r["k"], r["selection"])
            counts[key] = counts.get(key, 0) + 1
    assert counts and all(
        n == (2 if sel == "kennard_stone" else 4) for (_, _, sel), n in counts.items()
    )


def test_reference_figures_are_sane(quick_run):
    _, records, _, _ = quick_run
    same = [r["r2"] for r in records if r["method"] == methods.MASTER_ON_MASTER]
    assert min(same) > 0.98  # m5 calibration on m5 spectra
    raw = [r["r2"] for r in records if r["method"] == "no_transfer"]
    assert max(raw) < 0  # m5 → mp6 moisture without correction fails badly


def test_leak_check_raises():
    split = Split(0, ("a", "b"), ("c",), "random")
    check_no_leak(split, ["a", "b"], "ok")
    with pytest.raises(AssertionError, match="test sample"):
        check_no_leak(split, ["a", "c"], "bad")


def test_report_draws_more_methods_than_the_palette_has_colours(tmp_path):
    from caltransfer_jax.benchmark import report

    records = [
        {
            "dataset": "toy", "source": "a", "target": "b", "property": "oil",
            "family": "classical", "method": f"method_{m:02d}", "k": k, "selection": "random",
            "split": 0, "draw": 0, "r2": 0.5 + 0.01 * m, "rmsep": 1.0, "coverage": 0.9,
            "interval_half_width": 1.0, "n_test": 5, "fit_seconds": 0.0, "guard": "",
        }
        for m in range(25)
        for k in (5, 10)
    ]  # fmt: skip
    report.write_report(records, tmp_path, title="toy")
    assert (tmp_path / "plots" / "r2_vs_k_oil.png").stat().st_size > 1000
    assert "method_24" in (tmp_path / "summary.md").read_text()
